"""The WikiText-2 path on a small slice of the real files: local text files -> streams -> a model that learns."""

import math
from collections import Counter

import pytest
from conftest import trainer
from corpora import CORPORA

from rnn_lightning import LanguageModel, LanguageModelingDataModule

WIKITEXT = CORPORA / "wikitext-2"
pytestmark = pytest.mark.skipif(not WIKITEXT.exists(), reason="wikitext-2/ not present (tests/corpora.py)")


def _slice(tmp_path, name, lines):
    path = tmp_path / name
    text = (WIKITEXT / name).read_text(encoding="utf-8").split("\n")[:lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return str(path), text


def _unigram_ppl(train_lines, eval_lines, vocab):
    """Float64 reference: add-one unigram model over the same vocabulary (<unk> for unseen words)."""
    counts = Counter(w if w in vocab else "<unk>" for line in train_lines for w in line.split() + ["<eos>"])
    total, size = sum(counts.values()), len(vocab)
    nll = n = 0
    for line in eval_lines:
        for w in line.split() + ["<eos>"]:
            nll -= math.log((counts[w if w in vocab else "<unk>"] + 1) / (total + size))
            n += 1
    return math.exp(nll / n)


@pytest.mark.slow
def test_lstm_on_a_wikitext2_slice_beats_a_unigram_model(tmp_path):
    train, train_lines = _slice(tmp_path, "train.txt", 1500)
    valid, valid_lines = _slice(tmp_path, "valid.txt", 300)
    data = LanguageModelingDataModule(path="text", data_files={"train": train, "validation": valid},
                                      batch_size=10, eval_batch_size=5, bptt=35, cache_dir=str(tmp_path / "cache"))
    assert data.token_ids("train").numel() == sum(len(line.split()) + 2 for line in train_lines)
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, embedding_dim=64, hidden_size=64, num_layers=1,
                          tie_weights=True, dropout_embedding=0.1, dropout_output=0.1)
    t = trainer(tmp_path, max_epochs=2, gradient_clip_val=0.25)
    (before,) = t.validate(model, data, verbose=False)
    t.fit(model, data)
    (after,) = t.validate(model, data, verbose=False)
    unigram = _unigram_ppl(train_lines, valid_lines, data.tokenizer.get_vocab())
    print(f"val ppl: untrained {before['val/ppl']:.0f}, trained {after['val/ppl']:.1f}, unigram {unigram:.1f}")
    assert before["val/ppl"] > data.vocab_size / 2  # an untrained model is near uniform
    assert after["val/ppl"] < unigram  # the LSTM uses context a unigram model cannot
