"""Pretrained word vectors: rows filled from GloVe / word2vec text files, the rest untouched, errors, a tagger fit."""

from __future__ import annotations

import gzip

import pytest
import torch
from conftest import trainer
from datasets import DatasetDict
from test_tagging import rule_corpus

from rnn_lightning import SequenceClassifier, SequenceTagger, TaggingDataModule
from rnn_lightning.nn.pretrained import load_word_vectors

VOCAB = {"<pad>": 0, "<unk>": 1, "paris": 2, "Paris": 3, "Rome": 4, "dog": 5, "zzz": 6}


def _write(path, lines, gz=False):
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["glove", "word2vec_header", "gzip"])
def test_vectors_fill_their_rows_exact_case_first_then_lower_case(tmp_path, fmt):
    lines = ["paris 1 2 3", "rome 4 5 6", "dog 7 8 9", "Paris 10 11 12", "cat 0 0 1"]
    if fmt == "word2vec_header":
        lines = ["5 3", *lines]
    path = _write(tmp_path / ("v.txt.gz" if fmt == "gzip" else "v.txt"), lines, gz=fmt == "gzip")
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(7, 3, padding_idx=0)
    before = embedding.weight.detach().clone()
    coverage = load_word_vectors(embedding, VOCAB, path)
    w = embedding.weight.detach()
    assert w[2].tolist() == [1, 2, 3] and w[3].tolist() == [10, 11, 12]  # each case its own vector
    assert w[4].tolist() == [4, 5, 6]  # "Rome" is in the file only as "rome"
    assert w[5].tolist() == [7, 8, 9]
    assert torch.equal(w[[0, 1, 6]], before[[0, 1, 6]])  # padding, <unk> and unlisted words keep their init
    assert (coverage.found, coverage.lowercased, coverage.vocab_size) == (4, 1, 6)
    assert "4 of 6 vocabulary words (66.7%)" in str(coverage)


def test_bad_vector_files_are_named_with_the_fix(tmp_path):
    embedding = torch.nn.Embedding(7, 3, padding_idx=0)
    with pytest.raises(FileNotFoundError, match="`pretrained_embeddings`: no file at .*GloVe"):
        load_word_vectors(embedding, VOCAB, tmp_path / "missing.txt")
    path = _write(tmp_path / "v50.txt", ["paris " + " ".join(["0.5"] * 50)])
    with pytest.raises(ValueError, match="line 1 of v50.txt has 50 numbers .* is 3. Set `embedding_dim: 50`"):
        load_word_vectors(embedding, VOCAB, path)


def test_a_tagger_starts_from_the_vectors_and_a_resumed_or_loaded_one_does_not_reread_them(tmp_path):
    data = DatasetDict(train=rule_corpus(100, 0), validation=rule_corpus(20, 1))
    dm = TaggingDataModule(dataset=data, tag_scheme="IOB2")
    vocab = dm.tokenizer.get_vocab()
    path = _write(tmp_path / "v.txt", ["ann 1 1 1 1", "PARIS 2 2 2 2", "rome 3 3 3 3"])
    sgd = lambda p: torch.optim.SGD(p, lr=0.0)  # noqa: E731
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=4,
                           hidden_size=4, pretrained_embeddings=str(path), optimizer=sgd)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, dm)  # lr 0: the embeddings stay as loaded
    table = model.net.body.embedding.weight.detach()
    assert table[vocab["ann"]].tolist() == [1, 1, 1, 1] and table[vocab["rome"]].tolist() == [3, 3, 3, 3]
    t.save_checkpoint(tmp_path / "a.ckpt")
    path.unlink()  # neither resuming nor loading needs the file again: the checkpoint holds the vectors
    resumed = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                             embedding_dim=4,
                             hidden_size=4, pretrained_embeddings=str(path), optimizer=sgd)
    trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(resumed, dm, ckpt_path=tmp_path / "a.ckpt")
    assert torch.equal(resumed.net.body.embedding.weight.detach(), table)
    loaded = SequenceTagger.load_from_checkpoint(tmp_path / "a.ckpt")
    assert torch.equal(loaded.net.body.embedding.weight, table)


def test_the_classifier_takes_them_too_and_needs_a_vocabulary(tmp_path):
    path = _write(tmp_path / "v.txt", ["good 1 1"])
    model = SequenceClassifier(vocab_size=5, num_labels=2, embedding_dim=2, hidden_size=2,
                               pretrained_embeddings=str(path))
    data = torch.utils.data.DataLoader([{"tokens": torch.tensor([2, 3]), "lengths": torch.tensor(2),
                                         "label": torch.tensor(1)}], batch_size=1)
    with pytest.raises(RuntimeError, match="needs the vocabulary: train with one of rnn_lightning's DataModules"):
        trainer(tmp_path, max_steps=1).fit(model, data)


def test_vocab_from_vectors_adds_the_evaluation_words_the_file_lists(tmp_path):
    from datasets import Dataset

    from rnn_lightning import TextClassificationDataModule

    path = _write(tmp_path / "v.txt", ["2 3", "zorblax 1 2 3", "lyon 4 5 6", "unused 7 8 9", "ann 0 0 1"])
    rows = lambda sentences: Dataset.from_dict({"tokens": sentences, "tags": [["O"] * len(s) for s in sentences]})  # noqa: E731
    data = DatasetDict(train=rows([["ann", "sees", "bob"]]), validation=rows([["Zorblax", "sees", "quux"]]),
                       test=rows([["Lyon", "zorblax", "ann"]]))
    plain = TaggingDataModule(dataset=data)
    extended = TaggingDataModule(dataset=data, vocab_from_vectors=str(path))
    vocab = extended.tokenizer.get_vocab()
    assert {w: i for w, i in vocab.items() if i < plain.vocab_size} == plain.tokenizer.get_vocab()  # train ids kept
    assert sorted(set(vocab) - set(plain.tokenizer.get_vocab())) == ["Lyon", "Zorblax", "zorblax"]  # not quux, unused
    extended.setup("test")
    ids = next(iter(extended.test_dataloader()))["tokens"][0].tolist()
    assert ids == [vocab["Lyon"], vocab["zorblax"], vocab["ann"]]
    classification = TextClassificationDataModule(
        dataset=DatasetDict(train=Dataset.from_dict({"sentence": ["ann sees"], "label": [0]}),
                            test=Dataset.from_dict({"sentence": ["zorblax sees"], "label": [0]})),
        vocab_from_vectors=str(path))
    assert "zorblax" in classification.tokenizer.get_vocab()
    with pytest.raises(ValueError, match=r"`vocab_from_vectors` extends the vocabulary .*Use tokenizer='word'"):
        TaggingDataModule(dataset=data, tokenizer=str(tmp_path / "tokenizer.json"), vocab_from_vectors=str(path))
    with pytest.raises(FileNotFoundError, match="`vocab_from_vectors`: no file at"):
        TaggingDataModule(dataset=data, vocab_from_vectors=str(tmp_path / "missing.txt")).tokenizer  # noqa: B018


def test_test_words_unseen_in_training_are_tagged_through_their_pretrained_vectors(tmp_path):
    """Names and other words carry their class in their vectors; test uses only words training never saw. With
    their vocabulary entries the tagger reads the vectors; without, every test word is <unk>."""
    import random

    from datasets import Dataset

    rng = random.Random(0)
    names = {split: [f"{split}name{i}" for i in range(30)] for split in ("train", "test")}
    others = {split: [f"{split}word{i}" for i in range(30)] for split in ("train", "test")}

    def corpus(split: str, n: int) -> Dataset:
        sentences = [[rng.choice(names[split] + others[split]) for _ in range(rng.randint(2, 8))] for _ in range(n)]
        tags = [["B-PER" if "name" in w else "O" for w in s] for s in sentences]
        return Dataset.from_dict({"tokens": sentences, "tags": tags})

    noise = lambda: " ".join(f"{rng.gauss(0, 0.1):.3f}" for _ in range(6))  # noqa: E731
    lines = [f"{w} 1 0 {noise()}" for w in names["train"] + names["test"]]
    lines += [f"{w} 0 1 {noise()}" for w in others["train"] + others["test"]]
    path = _write(tmp_path / "v.txt", lines)
    data = DatasetDict(train=corpus("train", 400), validation=corpus("test", 50), test=corpus("test", 100))
    accuracy = {}
    for extend in (False, True):
        torch.manual_seed(0)
        dm = TaggingDataModule(dataset=data, tag_scheme="IOB2", vocab_from_vectors=str(path) if extend else None)
        model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                               embedding_dim=8,
                               hidden_size=8, dropout=0.0, pretrained_embeddings=str(path),
                               optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
        t = trainer(tmp_path, max_epochs=3)
        t.fit(model, dm)
        accuracy[extend] = t.test(model, dm, verbose=False)[0]["test/acc"]
    assert accuracy[True] > 0.95 and accuracy[False] < 0.8, accuracy
