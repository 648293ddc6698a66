"""Long-range dependency tasks (recall, adding, copy): the generated data has its stated properties, is seeded,
refuses bad arguments, and the existing tasks train on it through the real Trainer and the CLI."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
import torch
from conftest import trainer

from rnn_lightning import AddingDataModule, CopyDataModule, RecallDataModule, SequenceClassifier, SequenceTagger
from rnn_lightning.cli import FitReport, main
from rnn_lightning.data.long_range import adding, copy, recall

SMALL = dict(train_size=300, validation_size=40, test_size=40)


def words_of(dm, batch) -> list[list[str]]:
    """The words of each padded row, read back through the DataModule's own tokenizer."""
    return [[dm.tokenizer.id_to_token(i) for i in row[:n]]
            for row, n in zip(batch["tokens"].tolist(), batch["lengths"].tolist())]


def every_batch(dm, split: str) -> list[dict]:
    dm.setup("fit" if split != "test" else "test")
    loader = {"train": dm.train_dataloader, "validation": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return list(loader)


@pytest.mark.parametrize("distance", [5, 37])
def test_recall_key_alone_determines_the_label_exactly_distance_steps_before_the_end(distance):
    dm = RecallDataModule(distance, num_classes=5, num_distractors=7, **SMALL)
    assert dm.labels == ["0", "1", "2", "3", "4"] and dm.chance_accuracy == pytest.approx(1 / 5)
    seen = set()
    for batch in every_batch(dm, "validation"):
        for words, label in zip(words_of(dm, batch), batch["label"].tolist()):
            keys = [t for t, w in enumerate(words) if w.startswith("k")]
            assert keys == [len(words) - 1 - distance]  # one key, `distance` steps before the last step
            assert words[keys[0]] == f"k{dm.labels[label]}"
            assert all(w[0] == "d" and 0 <= int(w[1:]) < 7 for w in words[1:])
            seen.add(label)
    assert seen == set(range(5))


def test_adding_target_is_the_sum_of_the_two_marked_values_one_per_half():
    length = 11
    dm = AddingDataModule(length, levels=4, **SMALL)
    assert dm.labels == [str(s) for s in range(7)] and dm.chance_accuracy == 0.25
    for batch in every_batch(dm, "train"):
        for words, label in zip(words_of(dm, batch), batch["label"].tolist()):
            assert len(words) == length
            marked = [t for t, w in enumerate(words) if w[0] == "m"]
            assert len(marked) == 2 and marked[0] < length // 2 <= marked[1]
            assert int(dm.labels[label]) == sum(int(words[t][1:]) for t in marked)


def test_copy_targets_are_the_symbols_delay_plus_length_steps_later():
    delay, length = 9, 4
    dm = CopyDataModule(delay, copy_length=length, num_symbols=3, **SMALL)
    assert dm.labels == ["_", "s1", "s2", "s3"]
    assert dm.chance_accuracy == pytest.approx((delay + length + length / 3) / (delay + 2 * length))
    for batch in every_batch(dm, "test"):
        for words, tags in zip(words_of(dm, batch), batch["tags"].tolist()):
            tags = [dm.labels[i] for i in tags]
            assert len(words) == len(tags) == delay + 2 * length
            assert all(w in ("s1", "s2", "s3") for w in words[:length])
            assert words[length:] == ["_"] * (delay - 1) + [":"] + ["_"] * length
            for t in range(length):  # symbol t is due delay + length steps after it was read
                assert tags[t + delay + length] == words[t]
            assert tags[: delay + length] == ["_"] * (delay + length)


@pytest.mark.parametrize("make", [
    lambda seed: RecallDataModule(6, seed=seed, **SMALL),
    lambda seed: AddingDataModule(6, seed=seed, **SMALL),
    lambda seed: CopyDataModule(6, seed=seed, **SMALL),
])
def test_same_seed_same_data_other_seed_or_split_other_data(make):
    a, b, c = make(0).raw, make(0).raw, make(1).raw
    for split in ("train", "validation", "test"):
        assert a[split].to_dict() == b[split].to_dict()
        assert a[split].to_dict() != c[split].to_dict()
    column = a["train"].column_names[0]
    assert a["train"][:40][column] != a["validation"][:][column]


def test_generators_are_plain_numpy_with_the_stated_shapes():
    rng = np.random.default_rng(0)
    tokens, labels = recall(50, distance=8, num_classes=3, num_distractors=4, rng=rng)
    assert tokens.shape == (50, 9) and np.array_equal(tokens[:, 0], labels) and (tokens[:, 1:] >= 3).all()
    tokens, sums = adding(50, length=6, levels=5, rng=rng)
    assert tokens.shape == (50, 6) and np.array_equal(np.where(tokens >= 5, tokens - 5, 0).sum(1), sums)
    inputs, targets = copy(50, delay=3, copy_length=2, num_symbols=4, rng=rng)
    assert inputs.shape == targets.shape == (50, 7) and np.array_equal(targets[:, 5:], inputs[:, :2])


@pytest.mark.parametrize("make, match", [
    (lambda: RecallDataModule(0), r"`distance` must be a positive integer, got 0\."),
    (lambda: RecallDataModule(5, num_classes=1), r"`num_classes` must be at least 2"),
    (lambda: RecallDataModule(5, num_distractors=2.5), r"`num_distractors` must be a positive integer, got 2\.5"),
    (lambda: RecallDataModule(5, train_size=0), r"`train_size` must be a positive integer, got 0\."),
    (lambda: AddingDataModule(1), r"`length` and `levels` must be at least 2 .* got length=1"),
    (lambda: AddingDataModule(8, levels=True), r"`levels` must be a positive integer, got True"),
    (lambda: CopyDataModule(-3), r"`delay` must be a positive integer, got -3\."),
    (lambda: CopyDataModule(5, copy_length=0), r"`copy_length` must be a positive integer"),
    (lambda: CopyDataModule(5, test_size=None), r"`test_size` must be a positive integer, got None"),
])
def test_bad_arguments_are_refused_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_lstm_learns_recall_at_a_short_distance(tmp_path):
    """A unidirectional LSTM reads the key from its final state: far above chance within a few epochs."""
    torch.manual_seed(0)
    dm = RecallDataModule(5, num_classes=4, num_distractors=8, train_size=1000, validation_size=200, test_size=50,
                          batch_size=32)
    model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=16,
                               hidden_size=32, bidirectional=False, dropout=0.0, pooling="final",
                               optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    t = trainer(tmp_path, max_epochs=4)
    t.fit(model, dm)
    assert t.validate(model, dm, verbose=False)[0]["val/acc"] > 0.95  # chance: 0.25


@pytest.mark.parametrize("task", ["adding", "copy"])
def test_adding_and_copy_train_through_the_trainer(tmp_path, task):
    torch.manual_seed(0)
    if task == "adding":
        dm = AddingDataModule(8, levels=3, **SMALL)
        model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=8,
                                   hidden_size=8, bidirectional=False, dropout=0.0)
    else:
        dm = CopyDataModule(4, copy_length=3, num_symbols=3, **SMALL)
        model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=8,
                               hidden_size=8, bidirectional=False, dropout=0.0)
    t = trainer(tmp_path, max_steps=5, limit_val_batches=1)
    before = [p.detach().clone() for p in model.parameters()]
    t.fit(model, dm)
    assert t.global_step == 5 and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert 0.0 <= t.validate(model, dm, verbose=False)[0]["val/acc"] <= 1.0


def test_cli_links_the_generated_task_to_the_model_and_reports_chance(tmp_path):
    assert isinstance(RecallDataModule(5, **SMALL), FitReport)
    out, old = io.StringIO(), os.getcwd()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(out):
            main(["fit", "--model", "rnn_lightning.SequenceClassifier", "--data", "rnn_lightning.RecallDataModule",
                  "--data.init_args.distance", "7", "--data.init_args.num_classes", "3", "--data.init_args.train_size",
                  "64", "--data.init_args.validation_size", "16", "--data.init_args.test_size", "16",
                  "--model.init_args.hidden_size", "8", "--model.init_args.embedding_dim", "8",
                  "--model.init_args.bidirectional", "false", "--trainer.fast_dev_run", "true",
                  "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])
    finally:
        os.chdir(old)
    assert "accuracy without memory on this task: 0.3333" in out.getvalue()
