"""Train on (in ``max_length`` pieces) and evaluate (whole) one long tagged document; print peak memory.

Run by tests/test_long_input.py in a fresh process so that its peak resident memory is this job's alone.
"""

import json
import random
import resource
import sys

import lightning as L
from datasets import Dataset, DatasetDict

from rnn_lightning import SequenceTagger, TaggingDataModule


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(tokens: int, crf: bool) -> None:
    rng = random.Random(0)
    words = [f"w{rng.randrange(5000)}" for _ in range(tokens)]
    tags = ["B-X" if w.endswith("7") else "O" for w in words]
    doc = Dataset.from_dict({"tokens": [words], "tags": [tags]})
    data = TaggingDataModule(dataset=DatasetDict(train=doc, validation=doc), tag_scheme="IOB2", max_length=1000,
                             batch_size=8)
    data.setup("fit")
    base = peak_mb()  # libraries imported, corpus built
    # the recipe's network size (UD / CoNLL recipes): 100-d embeddings, BiLSTM 2 x 100
    model = SequenceTagger(data.vocab_size, data.num_labels, pad_id=data.pad_id, labels=data.labels,
                           span_scheme=data.scheme, crf=crf)
    quiet = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False)
    L.Trainer(max_steps=3, limit_val_batches=0, **quiet).fit(model, data)  # 3 steps of 8 pieces x 1000 tokens
    after_train = peak_mb()
    (metrics,) = L.Trainer(**quiet).validate(model, data, verbose=False)  # the whole document at once
    print(json.dumps({"tokens": tokens, "crf": crf, "base_mb": base, "train_peak_mb": after_train,
                      "peak_mb": peak_mb(), "val_acc": metrics["val/acc"]}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] == "crf")
