"""Train a few windows on, and evaluate the whole of, a 10M-token split; print peak memory per token.

Run by tests/test_long_input.py in a fresh process so that its peak resident memory is this job's alone.
"""

import json
import resource
import sys

import lightning as L

from rnn_lightning import LanguageModel, MarkovCorpusDataModule


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(tokens: int) -> None:
    base = peak_mb()  # libraries imported
    data = MarkovCorpusDataModule(num_words=200, train_tokens=tokens, validation_tokens=tokens, test_tokens=1000,
                                  batch_size=32, eval_batch_size=32, bptt=35)
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, embedding_dim=16, hidden_size=16, num_layers=1,
                          dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0)
    quiet = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False)
    L.Trainer(max_steps=5, limit_val_batches=0, **quiet).fit(model, data)  # a few windows of training
    (metrics,) = L.Trainer(**quiet).validate(model, data, verbose=False)  # the whole 10M-token split
    print(json.dumps({"tokens": tokens, "val_ppl": metrics["val/ppl"], "peak_mb": peak_mb(), "base_mb": base,
                      "source_ppl": data.source.perplexity()}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
