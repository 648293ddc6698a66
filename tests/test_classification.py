"""TextClassificationDataModule + SequenceClassifier, and the padded-batch encoder and pooling they rest on."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import trainer
from corpora import CORPORA
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from rnn_lightning import SequenceClassifier, TextClassificationDataModule
from rnn_lightning.nn import RecurrentEncoder, pool_states, pooled_size

SHARED = CORPORA
WORDS = ["good", "bad", "film", "plot", "the", "a", "very", "acting"]


def sentiment(words: list[str]) -> int:
    return int(words.count("good") > words.count("bad"))


def corpus(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    rows = [[rng.choice(WORDS) for _ in range(rng.randint(1, 15))] for _ in range(n)]
    rows = [r for r in rows if r.count("good") != r.count("bad")]
    return Dataset.from_dict({"sentence": [" ".join(r) for r in rows], "label": [sentiment(r) for r in rows]})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_padded_bidirectional_encoder_equals_each_sequence_alone(cell):
    torch.manual_seed(0)
    enc = RecurrentEncoder(5, 7, num_layers=2, cell=cell, bidirectional=True).double()
    lengths = torch.tensor([6, 1, 4, 6, 2])
    x = torch.randn(5, 6, 5, dtype=torch.float64)
    out, _ = enc(x, lengths=lengths)
    for row, n in enumerate(lengths.tolist()):
        alone, _ = enc(x[row : row + 1, :n])  # no padding at all
        torch.testing.assert_close(out[row, :n], alone[0], rtol=0, atol=1e-12)
        assert (out[row, n:] == 0).all()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooling_matches_a_loop_over_real_steps(bidirectional):
    torch.manual_seed(1)
    out = torch.randn(4, 7, 6, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 1, 5])
    for mode in ("final", "mean", "max", "concat"):
        pooled = pool_states(out, lengths, mode, bidirectional)
        assert pooled.shape == (4, pooled_size(mode, 6))
        for row, n in enumerate(lengths.tolist()):
            real = out[row, :n]  # (n, H)
            mean, maximum = real.mean(0), real.max(0).values
            # final: the forward half after the last word, the backward half after reading back to the first
            final = torch.cat([real[-1, :3], real[0, 3:]]) if bidirectional else real[-1]
            expected = {"final": final, "mean": mean, "max": maximum,
                        "concat": torch.cat([final, maximum, mean])}[mode]  # ULMFiT's order
            torch.testing.assert_close(pooled[row], expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        pool_states(out, lengths, "attention")


def test_final_pooling_is_each_directions_final_state():
    torch.manual_seed(2)
    enc = RecurrentEncoder(3, 4, cell="gru", bidirectional=True).double()
    lengths = torch.tensor([5, 2, 3])
    out, h_n = enc(torch.randn(3, 5, 3, dtype=torch.float64), lengths=lengths)
    torch.testing.assert_close(pool_states(out, lengths, "final", True), torch.cat([h_n[0], h_n[1]], -1))


def test_local_tsv_keeps_quotes_and_names_labels(tmp_path):
    (tmp_path / "train.tsv").write_text('sentence\tlabel\na "great" film \t1\nflat , dull\t0\n')
    (tmp_path / "dev.tsv").write_text('sentence\tlabel\n" great\t1\n')
    dm = TextClassificationDataModule(path="csv", csv_delimiter="\t",
                                      data_files={"train": str(tmp_path / "train.tsv"),
                                                  "validation": str(tmp_path / "dev.tsv")})
    assert dm.labels == ["0", "1"]
    assert set(dm.tokenizer.get_vocab()) >= {'"great"', "a", "film", ","}
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    unk = dm.tokenizer.token_to_id("<unk>")
    assert batch["tokens"].tolist() == [[unk, unk]]  # '"' and 'great' alone never occur in train


@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
def test_classification_errors():
    train = corpus(50, 0)
    with pytest.raises(ValueError, match=r"'validation' split has labels that are not in the label set \['0', '1'\]: "
                                         r"'2' \(1x\)"):
        bad = Dataset.from_dict({"sentence": ["a b"], "label": [2]})
        TextClassificationDataModule(dataset=DatasetDict(train=train, validation=bad)).setup("validate")
    with pytest.raises(ValueError, match=r"row 1 of the 'validation' split has no tokens"):
        empty = Dataset.from_dict({"sentence": ["a", "  "], "label": [0, 1]})
        TextClassificationDataModule(dataset=DatasetDict(train=train, validation=empty)).setup("validate")
    hidden = Dataset.from_dict({"sentence": ["a"], "label": [-1]},
                               features=Features({"sentence": Value("string"),
                                                  "label": ClassLabel(names=["negative", "positive"])}))
    named = train.cast_column("label", ClassLabel(names=["negative", "positive"]))
    dm = TextClassificationDataModule(dataset=DatasetDict(train=named, test=hidden))
    assert dm.labels == ["negative", "positive"]
    with pytest.raises(ValueError, match=r"the 'test' split has no labels"):
        dm.setup("test")
    with pytest.raises(ValueError, match=r"`text_column` 'text' is not a column .* \['sentence', 'label'\]"):
        TextClassificationDataModule(dataset=DatasetDict(train=train), text_column="text").labels  # noqa: B018 (the lazy property loads and checks the split)


@pytest.mark.parametrize("pooling", ["final", *(pytest.param(p, marks=pytest.mark.slow) for p in ("mean", "max",
                                                                                                 "concat"))])
def test_classifier_learns_which_word_dominates(tmp_path, pooling):
    torch.manual_seed(0)
    data = DatasetDict(train=corpus(1500, 0), validation=corpus(300, 1))
    dm = TextClassificationDataModule(dataset=data, batch_size=32)
    model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=16,
                               hidden_size=24, dropout=0.0, pooling=pooling,
                               optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    t = trainer(tmp_path, max_epochs=8)
    t.fit(model, dm)
    val = t.validate(model, dm)[0]
    predicted = model.classify(data["validation"]["sentence"])
    accuracy = sum(p == str(g) for p, g in zip(predicted, data["validation"]["label"])) / len(predicted)
    assert val["val/acc"] == pytest.approx(accuracy, abs=1e-6)  # the metric agrees with a count by hand
    assert accuracy > 0.93


@pytest.mark.skipif(not (SHARED / "sst2").exists(), reason="the corpora are not present (tests/corpora.py)")
def test_sst2_local_files_load_with_counts():
    files = {"train": str(SHARED / "sst2" / "train.tsv"), "validation": str(SHARED / "sst2" / "dev.tsv")}
    dm = TextClassificationDataModule(path="csv", csv_delimiter="\t", data_files=files)
    dm.setup("fit")
    assert dm.labels == ["0", "1"]
    assert len(dm.sequences("train")) == 67_349 and len(dm.sequences("validation")) == 872


def test_non_utf8_file_names_the_file_and_byte_offset(tmp_path):
    bad = tmp_path / "train.tsv"
    bad.write_bytes(b"sentence\tlabel\ngood film\t1\nna\xefve plot\t0\n")
    dm = TextClassificationDataModule(path="csv", csv_delimiter="\t", data_files={"train": str(bad)})
    offset = len(b"sentence\tlabel\ngood film\t1\nna")
    with pytest.raises(ValueError, match=rf"train.tsv' is not valid UTF-8: byte offset {offset} holds b'\\xefve"):
        dm.labels  # noqa: B018 (the lazy property loads the corpus)


def test_word_dropout_replaces_real_tokens_by_unk_in_training_only():
    from rnn_lightning.nn import EncoderConfig
    from rnn_lightning.nn.embedder import EmbedEncode

    torch.manual_seed(0)
    config = EncoderConfig(embedding_dim=4, hidden_size=4, bidirectional=True, pad_id=0, word_dropout=0.25, unk_id=1)
    body = EmbedEncode(50, encoder=config)
    seen = []
    body.embedding.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    tokens = torch.randint(2, 50, (64, 30))
    lengths = torch.randint(1, 31, (64,))
    tokens[torch.arange(30) >= lengths[:, None]] = 0  # right padding
    body.train()(tokens, lengths)
    replaced = (seen[-1] == 1) & (tokens != 1)
    real = tokens != 0
    assert not (replaced & ~real).any() and (seen[-1][~real] == 0).all()  # padding untouched
    assert replaced.sum() / real.sum() == pytest.approx(0.25, abs=0.03)
    body.eval()(tokens, lengths)
    assert torch.equal(seen[-1], tokens)
    with pytest.raises(ValueError, match=r"`word_dropout` must be a probability in \[0, 1\), got 1.0"):
        EncoderConfig(word_dropout=1.0)
