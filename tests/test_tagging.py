"""TaggingDataModule + SequenceTagger: encoding, errors, learning a tagging rule, checkpoints, real data."""

from __future__ import annotations

import math
import random

import lightning as L
import pytest
import torch
from conftest import trainer
from corpora import CORPORA
from datasets import Dataset, DatasetDict

from rnn_lightning import SequenceTagger, TaggingDataModule
from rnn_lightning.functional.tag_schemes import tag_spans
from rnn_lightning.tasks.optimizers import can_fuse, default_optimizer

SHARED = CORPORA
WORDS = ["ann", "bob", "sees", "likes", "the", "dog", "in", "paris", "rome", "today"]
NAMES, PLACES = {"ann", "bob"}, {"paris", "rome"}


def rule_tags(tokens: list[str]) -> list[str]:
    """A tagging rule with spans: names are PER, 'in' + place is a two-word LOC span, the rest O (IOB2)."""
    tags = []
    for i, w in enumerate(tokens):
        if w in NAMES:
            tags.append("B-PER")
        elif w == "in" and i + 1 < len(tokens) and tokens[i + 1] in PLACES:
            tags.append("B-LOC")
        elif w in PLACES and i > 0 and tokens[i - 1] == "in":
            tags.append("I-LOC")
        else:
            tags.append("O")
    return tags


def rule_corpus(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    rows = [[rng.choice(WORDS) for _ in range(rng.randint(1, 12))] for _ in range(n)]
    return Dataset.from_dict({"tokens": rows, "tags": [rule_tags(r) for r in rows]})


@pytest.fixture
def rule_data():
    return DatasetDict(train=rule_corpus(600, 0), validation=rule_corpus(101, 1), test=rule_corpus(57, 2))


def test_batches_hold_ids_tags_and_lengths(rule_data):
    dm = TaggingDataModule(dataset=rule_data, tag_scheme="IOB2", batch_size=8, eval_batch_size=5)
    assert dm.labels == ["B-LOC", "B-PER", "I-LOC", "O"]
    dm.setup("fit")
    vocab = dm.tokenizer.get_vocab()
    seen = 0
    for batch in dm.val_dataloader():
        for row in range(len(batch["lengths"])):
            n = int(batch["lengths"][row])
            source = rule_data["validation"][seen]
            assert batch["tokens"][row, :n].tolist() == [vocab[w] for w in source["tokens"]]
            assert [dm.labels[i] for i in batch["tags"][row, :n]] == source["tags"]
            assert (batch["tags"][row, n:] == -100).all() and (batch["tokens"][row, n:] == dm.pad_id).all()
            seen += 1
    assert seen == 101  # every sentence once, in order


def test_train_scheme_reencodes_tags_with_the_same_spans(rule_data):
    dm = TaggingDataModule(dataset=rule_data, tag_scheme="IOB2", train_scheme="IOBES")
    assert set(dm.labels) == {"B-LOC", "E-LOC", "O", "S-PER"}
    data = dm.sequences("validation")
    for i, source in enumerate(rule_data["validation"]):
        tags = [dm.labels[t] for t in data[i]["tags"]]
        assert tag_spans(tags, "IOBES") == tag_spans(source["tags"], "IOB2")


def test_long_sentences_are_cut_for_training_only(rule_data):
    dm = TaggingDataModule(dataset=rule_data, max_length=4)
    lengths = [len(dm.sequences("train")[i]["tokens"]) for i in range(len(dm.sequences("train")))]
    assert max(lengths) == 4 and sum(lengths) == sum(len(t) for t in rule_data["train"]["tokens"])
    assert len(dm.sequences("validation")) == 101


def test_unseen_label_in_validation_is_an_error(rule_data):
    rows = rule_corpus(20, 3).to_dict()
    rows["tags"][4] = ["B-ORG"] * len(rows["tags"][4])
    data = DatasetDict(train=rule_data["train"], validation=Dataset.from_dict(rows))
    dm = TaggingDataModule(dataset=data)
    with pytest.raises(ValueError, match=r"'validation' split has labels that are not in the label set .*'B-ORG'"):
        dm.setup("fit")
    # listing every label fixes it
    TaggingDataModule(dataset=data, labels=["B-LOC", "B-ORG", "B-PER", "I-LOC", "O"]).setup("fit")


def test_tags_breaking_the_declared_scheme_are_an_error(rule_data):
    rows = rule_corpus(20, 3).to_dict()
    rows["tokens"][7], rows["tags"][7] = ["x", "y", "z"], ["O", "I-LOC", "O"]  # I- without B- in IOB2
    data = DatasetDict(train=Dataset.from_dict(rows), validation=rule_data["validation"])
    with pytest.raises(ValueError, match=r"train sentence 7.*not valid IOB2 at position 1"):
        TaggingDataModule(dataset=data, tag_scheme="IOB2").setup("fit")
    with pytest.raises(ValueError, match=r"train sentence 7.*not valid IOB2 at position 1"):  # before re-encoding
        TaggingDataModule(dataset=data, tag_scheme="IOB2", train_scheme="IOBES").labels  # noqa: B018
    TaggingDataModule(dataset=data, tag_scheme="IOB1").setup("fit")  # the same tags are valid IOB1


def test_token_and_tag_counts_must_match(rule_data):
    rows = rule_corpus(20, 3).to_dict()
    rows["tags"][5] = rows["tags"][5] + ["O"]
    with pytest.raises(ValueError, match=r"train sentence 5 has \d+ tokens in `tokens` but \d+ tags in `tags`"):
        TaggingDataModule(dataset=DatasetDict(train=Dataset.from_dict(rows), validation=rule_data["validation"])
                          ).setup("fit")


def test_missing_column_and_split_name_what_exists(rule_data):
    with pytest.raises(ValueError, match=r"`tags_column` 'ner_tags' is not a column .* \['tokens', 'tags'\]"):
        TaggingDataModule(dataset=rule_data, tags_column="ner_tags").labels  # noqa: B018 (the lazy property loads and checks the split)
    with pytest.raises(ValueError, match=r"no 'test' split \(it has \['train', 'validation'\]\)"):
        TaggingDataModule(dataset=DatasetDict(train=rule_data["train"], validation=rule_data["validation"])
                          ).setup("test")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`tag_scheme` must be one of"):
        TaggingDataModule(path="conll", tag_scheme="BIO")
    with pytest.raises(ValueError, match="`train_scheme='IOBES'` converts spans"):
        TaggingDataModule(path="conll", train_scheme="IOBES")
    with pytest.raises(ValueError, match="`max_length` must be a positive integer"):
        TaggingDataModule(path="conll", max_length=0)
    with pytest.raises(ValueError, match="`labels` names 2 labels but `num_labels` is 3"):
        SequenceTagger(vocab_size=10, num_labels=3, labels=["O", "B-X"])


@pytest.mark.parametrize("crf", [False, True])
def test_tagger_learns_a_span_rule(rule_data, tmp_path, crf):
    torch.manual_seed(0)
    dm = TaggingDataModule(dataset=rule_data, tag_scheme="IOB2", batch_size=16)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=16,
                           hidden_size=16, dropout=0.0, crf=crf,
                           optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    t = trainer(tmp_path, max_epochs=6, enable_checkpointing=True)
    t.fit(model, dm)
    test = t.test(model, dm)[0]
    assert test["test/acc"] > 0.99 and test["test/f1"] > 0.98
    # independent check of the logged metrics: tag the raw test sentences and count by hand
    source = rule_data["test"]
    predicted = model.tag(source["tokens"])
    gold = source["tags"]
    correct = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
    assert test["test/acc"] == pytest.approx(correct / sum(map(len, gold)), abs=1e-6)
    pred_spans = {(i, *s) for i, tags in enumerate(predicted) for s in tag_spans(tags, "IOB2")}
    gold_spans = {(i, *s) for i, tags in enumerate(gold) for s in tag_spans(tags, "IOB2")}
    hits = len(pred_spans & gold_spans)
    f1 = 2 * hits / (len(pred_spans) + len(gold_spans))
    assert test["test/f1"] == pytest.approx(f1, abs=1e-6)


def test_checkpoint_carries_labels_and_vocabulary_as_plain_data(rule_data, tmp_path):
    dm = TaggingDataModule(dataset=rule_data, tag_scheme="IOB2")
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=8,
                           hidden_size=8, crf=True)
    t = trainer(tmp_path, max_steps=3, limit_val_batches=1)
    t.fit(model, dm)
    path = tmp_path / "tagger.ckpt"
    t.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)  # no pickled objects
    assert raw["hyper_parameters"]["labels"] == dm.labels and isinstance(raw["tokenizer"], str)
    loaded = SequenceTagger.load_from_checkpoint(path)
    sentences = [["ann", "sees", "rome"], ["in", "paris", "unknownword"]]
    assert loaded.tag(sentences) == model.tag(sentences)
    with pytest.raises(ValueError, match="`sentences` at positions \\[1\\] are empty"):
        loaded.tag(["ann", ""])


def test_long_document_trains_in_pieces_and_evaluates_whole(tmp_path):
    """A 100,000-token 'sentence': training cuts it into max_length pieces, evaluation reads it whole."""
    rng = random.Random(0)
    doc = [rng.choice(WORDS) for _ in range(100_000)]
    data = DatasetDict(train=Dataset.from_dict({"tokens": [doc], "tags": [rule_tags(doc)]}),
                       validation=Dataset.from_dict({"tokens": [doc], "tags": [rule_tags(doc)]}))
    dm = TaggingDataModule(dataset=data, tag_scheme="IOB2", max_length=1000, batch_size=20)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=8,
                           hidden_size=8, dropout=0.0, optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, dm)
    assert len(dm.sequences("train")) == 100
    assert float(t.callback_metrics["val/acc"]) > 0.95  # all 100,000 tokens scored in one sequence


needs_shared = pytest.mark.skipif(not (SHARED / "conll2003").exists(), reason="conll2003/ not present")


@needs_shared
def test_conll2003_original_files_load_as_iob1_and_convert_to_iobes():
    files = {"train": str(SHARED / "conll2003" / "eng.train"), "validation": str(SHARED / "conll2003" / "eng.testa")}
    dm = TaggingDataModule(path="conll", data_files=files, tag_scheme="IOB1", train_scheme="IOBES")
    assert set(dm.labels) == {"O"} | {f"{p}-{t}" for p in "BIES" for t in ("PER", "ORG", "LOC", "MISC")}
    dm.setup("fit")
    assert len(dm.sequences("train")) == 14_041 and len(dm.sequences("train").ids) == 203_621


# IOB1 as CoNLL-2003 writes it: B-X after O and at the start of a sentence (eng.train has O B-MISC I-MISC).
IOB1_SENTENCES = [
    [("German", "B-MISC"), ("Cup", "I-MISC"), ("for", "O"), ("Ann", "I-PER")],
    [("the", "O"), ("World", "B-MISC"), ("Cup", "I-MISC"), ("ends", "O")],
    [("Ann", "I-PER"), ("Lee", "I-PER"), ("Bob", "B-PER"), ("runs", "O"), ("in", "O"), ("Rome", "I-LOC")],
    [("Rome", "B-LOC"), ("sees", "O"), ("Bob", "I-PER")],
]


class RecordLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
def test_iob1_crf_trains_on_conll_b_tags_without_conversion(tmp_path):
    """IOB1 data with B-X after O and first in a sentence, a CRF over IOB1 (no `train_scheme`): every gold path is
    allowed by the CRF's masks, so the loss is a likelihood of the usual size (a forbidden gold move scores -1e4,
    which made the loss ~1e3 per token before the CRF read IOB1 as the data check does)."""
    torch.manual_seed(0)
    blocks = ["\n".join(f"{word} NNP I-NP {tag}" for word, tag in sentence) for sentence in IOB1_SENTENCES * 8]
    (tmp_path / "eng.train").write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(blocks) + "\n")
    files = {"train": str(tmp_path / "eng.train"), "validation": str(tmp_path / "eng.train")}
    dm = TaggingDataModule(path="conll", data_files=files, tag_scheme="IOB1", batch_size=4,
                           cache_dir=str(tmp_path / "cache"))
    assert dm.scheme == "IOB1"
    model = SequenceTagger(vocab_size=dm.vocab_size, num_labels=dm.num_labels, pad_id=dm.pad_id, labels=dm.labels,
                           span_scheme=dm.scheme, embedding_dim=8, hidden_size=8, dropout=0.0, crf=True)
    record = RecordLosses()
    trainer(tmp_path, max_steps=6, limit_val_batches=1, callbacks=[record]).fit(model, dm)
    bound = 3 * math.log(dm.num_labels)  # an untrained tagger's loss per token is about log(num_labels)
    assert len(record.losses) == 6 and all(0 < loss < bound for loss in record.losses), record.losses
    crf = model.crf
    for batch in dm.train_dataloader():
        for tags in batch["tags"]:
            path = tags[tags != -100].tolist()
            assert crf.allowed_start[path[0]] and crf.allowed_end[path[-1]], [dm.labels[i] for i in path]
            assert all(crf.allowed_transitions[a, b] for a, b in zip(path, path[1:])), [dm.labels[i] for i in path]


def test_more_processes_than_evaluation_sentences_is_an_error(rule_data):
    import lightning as L

    small = DatasetDict(train=rule_data["train"], validation=rule_data["validation"].select(range(1)))
    dm = TaggingDataModule(dataset=small)
    dm.trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)  # not launched
    with pytest.raises(ValueError, match=r"'validation' split has 1 sequences, fewer than the 2 processes"):
        dm.val_dataloader()


@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
def test_checkpoint_with_other_labels_is_refused(rule_data, tmp_path):
    dm = TaggingDataModule(dataset=rule_data)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=8,
                           hidden_size=8)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=1)
    t.fit(model, dm)
    t.save_checkpoint(tmp_path / "a.ckpt")
    shuffled = list(reversed(dm.labels))  # same size, other ids: loading would silently mislabel
    other = TaggingDataModule(dataset=rule_data, labels=shuffled)
    fresh = SequenceTagger(other.vocab_size, other.num_labels, pad_id=other.pad_id, labels=other.labels,
                           embedding_dim=8,
                           hidden_size=8)
    with pytest.raises(ValueError, match=r"the checkpoint's labels \['B-LOC', .*\] differ from this model's \['O'"):
        trainer(tmp_path, limit_val_batches=1).validate(fresh, other, ckpt_path=tmp_path / "a.ckpt")


def test_cli_predict_writes_each_test_sentences_tags(tmp_path, monkeypatch):
    """`rnn-lightning fit` then `predict` with WritePredictions: one JSON line per test sentence, equal to tag()."""
    import json

    from test_distributed_tagging import write_conll

    from rnn_lightning.cli import main

    write_conll(tmp_path / "train.txt", 200, 0)
    sentences = write_conll(tmp_path / "test.txt", 23, 5)
    files = json.dumps({"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "test.txt"),
                        "test": str(tmp_path / "test.txt")})
    common = ["--model", "rnn_lightning.SequenceTagger", "--model.init_args.embedding_dim=8",
              "--model.init_args.hidden_size=8", "--data", "rnn_lightning.TaggingDataModule",
              "--data.init_args.path=conll", "--data.init_args.tag_scheme=IOB2", "--data.init_args.eval_batch_size=4",
              "--data.init_args.data_files", files, "--trainer.accelerator=cpu", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false"]
    monkeypatch.chdir(tmp_path)
    main(["fit", *common, "--trainer.max_epochs=2", "--trainer.callbacks+=rnn_lightning.TokensPerSecond",
          "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
          "--trainer.callbacks.dirpath=ckpt", "--trainer.callbacks.save_last=true"])
    main(["predict", *common, "--ckpt_path", "ckpt/last.ckpt", "--trainer.callbacks+=rnn_lightning.WritePredictions",
          "--trainer.callbacks.path=out/tags.jsonl"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "tags.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(23))
    model = SequenceTagger.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert [r["prediction"] for r in rows] == model.tag(sentences)


def test_default_optimizer_is_adam_fused_where_every_parameter_allows_it(rule_data, tmp_path):
    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert default_optimizer(iter(cpu)).defaults["fused"] is True  # a generator, as module.parameters() gives
    assert default_optimizer([torch.nn.Parameter(torch.zeros(3, device="meta"))]).defaults["fused"] is False
    assert not can_fuse([])
    # fused or not, the same training (the recipes say `fused: true`)
    weights = []
    for fused in (True, False):
        torch.manual_seed(0)
        dm = TaggingDataModule(dataset=rule_data, tag_scheme="IOB2", batch_size=16)
        model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                               embedding_dim=8,
                               hidden_size=8, optimizer=lambda p, fused=fused: torch.optim.Adam(p, fused=fused))
        trainer(tmp_path, max_steps=30, limit_val_batches=0).fit(model, dm)
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name], rtol=1e-5, atol=1e-6, msg=name)
