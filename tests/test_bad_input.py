"""Bad input gets a clear error naming the argument, the expected and the received value, and the fix."""

import math

import lightning as L
import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModel, LanguageModelingDataModule


def _lines(n, words="the cat sat on the mat"):
    return Dataset.from_dict({"text": [words] * n})


def test_empty_split_names_the_split_and_file(tmp_path):
    (tmp_path / "train.txt").write_text("a b c\n" * 20)
    (tmp_path / "valid.txt").write_text("")
    files = {"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valid.txt")}
    dm = LanguageModelingDataModule(path="text", data_files=files, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"the 'validation' split is empty \(0 rows\).*valid\.txt.*holdout"):
        dm.setup("validate")
    empty = DatasetDict(train=_lines(20), validation=Dataset.from_dict({"text": []}))
    with pytest.raises(ValueError, match=r"the 'validation' split is empty \(0 rows\)"):
        LanguageModelingDataModule(dataset=empty).setup("validate")


def test_non_utf8_file_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes("good line\ncaf\xe9 au lait\n".encode("latin-1"))
    dm = LanguageModelingDataModule(path="text", data_files={"train": str(path)}, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"train\.txt' is not valid UTF-8: byte offset 13 .*Re-encode"):
        _ = dm.vocab_size


def test_corpus_shorter_than_one_window_per_stream():
    data = DatasetDict(train=_lines(3), validation=_lines(3))
    dm = LanguageModelingDataModule(dataset=data, batch_size=4, bptt=10)
    with pytest.raises(ValueError, match=r"'train' split has 24 tokens.*batch_size \* devices \* \(bptt \+ 1\) = 44"):
        dm.setup("fit")


def test_missing_split_and_missing_column_list_what_exists():
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=_lines(200)))
    with pytest.raises(ValueError, match=r"no 'validation' split \(it has \['train'\]\)"):
        dm.setup("fit")
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=_lines(50)), text_column="sentence")
    with pytest.raises(ValueError, match=r"`text_column` 'sentence'.*columns are \['text'\]"):
        _ = dm.tokenizer


@pytest.mark.parametrize("kwargs, match", [
    (dict(bptt=0), "`bptt` must be a positive integer, got 0"),
    (dict(batch_size=-1), "`batch_size` must be a positive integer, got -1"),
    (dict(eval_batch_size=1.5), "`eval_batch_size` must be a positive integer, got 1.5"),
])
def test_datamodule_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LanguageModelingDataModule(dataset=DatasetDict(train=_lines(50), validation=_lines(5)), **kwargs)


@pytest.mark.parametrize("holdout", [{"train": 0.1}, {"validation": 1.2}, {"validation": 0.6, "test": 0.5}])
def test_bad_holdout_is_refused_when_the_corpus_loads(tmp_path, holdout):
    (tmp_path / "all.txt").write_text("a b c\n" * 20)
    dm = LanguageModelingDataModule(path="text", data_files=str(tmp_path / "all.txt"), holdout=holdout,
                                    cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"`holdout` must name splits the corpus lacks \(it has \['train'\]\)"):
        _ = dm.raw


def test_holdout_carves_contiguous_splits_off_the_end(tmp_path):
    (tmp_path / "all.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    dm = LanguageModelingDataModule(path="text", data_files=str(tmp_path / "all.txt"),
                                    holdout={"validation": 0.1, "test": 0.05}, cache_dir=str(tmp_path / "cache"))
    texts = {split: list(dm.raw[split]["text"]) for split in ("train", "validation", "test")}
    assert texts["train"] + texts["validation"] + texts["test"] == [f"line {i}" for i in range(100)]
    assert (len(texts["train"]), len(texts["validation"]), len(texts["test"])) == (85, 10, 5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_layers=0), "`num_layers` must be a positive integer, got 0"),
    (dict(dropout_between=1.0), r"`dropout` must be a probability in \[0, 1\), got 1.0"),
    (dict(dropout_output=-0.5), r"`dropout_output` must be a probability in \[0, 1\)"),
    (dict(vocab_size=1), "`vocab_size` must be an integer >= 2, got 1"),
    (dict(cell="lstmm"), "`cell` must be one of"),
])
def test_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LanguageModel(**{"vocab_size": 10, **kwargs})


def test_non_finite_loss_stops_before_the_update_naming_the_step(tmp_path, tiny_markov):
    class BlowsUpAtStep3(LanguageModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.global_step == 3 else loss

    model = BlowsUpAtStep3(tiny_markov.vocab_size, pad_id=tiny_markov.pad_id, embedding_dim=8, hidden_size=8,
                           num_layers=1)
    snapshots = []

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            snapshots.append({k: v.clone() for k, v in pl_module.state_dict().items()})

    t = trainer(tmp_path, max_steps=10, limit_val_batches=0, callbacks=[Snapshot()])
    with pytest.raises(FloatingPointError, match=r"not finite at step 3 .*Clip the gradient norm.*lower the"):
        t.fit(model, tiny_markov)
    assert len(snapshots) == 3  # steps 0, 1, 2 completed; step 3 stopped before its update
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[-1][name])  # weights untouched by the NaN step


def test_checkpoint_with_another_vocabulary_is_refused(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, tiny_markov)
    t.save_checkpoint(tmp_path / "a.ckpt")
    other = LanguageModelingDataModule(dataset=DatasetDict(
        train=Dataset.from_dict({"text": [" ".join(f"w{i}" for i in range(tiny_markov.vocab_size - 4))] * 30}),
        validation=_lines(20)), batch_size=4, bptt=7)
    assert other.vocab_size == tiny_markov.vocab_size  # same size, other words: a silent mix-up without the check
    fresh = tiny_lm(other)
    with pytest.raises(ValueError, match=r"checkpoint's vocabulary \(\d+ tokens\) differs.*same size but other ids"):
        trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(fresh, other, ckpt_path=tmp_path / "a.ckpt")
    assert math.isfinite(float(next(fresh.parameters()).sum()))
