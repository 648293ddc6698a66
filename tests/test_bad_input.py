"""Bad input gets a clear error naming the argument, the expected and the received value, and the fix."""

import math
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModel, LanguageModelingDataModule, TaggingDataModule
from rnn_lightning.cli import TRACEBACK_ENV, main

pytestmark = pytest.mark.usefixtures("deadline")  # a hang fails the test (tests/conftest.py)


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


# -- malformed CoNLL / CoNLL-U files, through the DataModule and the CLI: an error naming file, line and fix --
ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"conll": ["-c", str(ROOT / "recipes/tagging/conll2003_ner_bilstm.yaml"),
                     "-c", str(ROOT / "recipes/data/conll2003_local.yaml")],
           "conllu": ["-c", str(ROOT / "recipes/tagging/ud_ewt_upos_bilstm.yaml"),
                      "-c", str(ROOT / "recipes/data/ud_ewt_local.yaml")]}
WORD = "1\tok\tok\tDET\tDT\t_\t0\troot\t_\t_\n"  # a well-formed CoNLL-U word line


# (format, file bytes (None: no file, DIR: a folder), DataModule arguments, the message: file and line, what
# arrived, the fix)
DIR = "a directory"
MALFORMED = {
    "missing file": ("conll", None, {}, r"`data_files\['train'\]` '.*bad\.txt' does not exist: expected a CoNLL/"
                                         r"CoNLL-U file \(resolved to .*\)\. Check the path\.$"),
    "a directory": ("conllu", DIR, {}, r"`data_files\['train'\]` '.*bad\.txt' is a directory: .* Check the path\.$"),
    "empty file": ("conll", b"", {}, r"the 'train' split is empty \(0 rows\): `data_files` '.*bad\.txt' is an empty "
                                      r"file\. Give it a non-empty file, or .* `holdout`\.$"),
    "token line without a tag": ("conll", b"EU NNP B-ORG\nrejects VBZ\n", {},
                                 r"bad\.txt', line 2: expected 3 whitespace-separated columns .* got 2; the line is "
                                 r"'rejects VBZ'\. Every token line needs the same columns; fix or remove this line\."),
    "tab and space columns mixed": ("conll", b"EU\tNNP\tB-ORG\nrejects VBZ O\n", {},
                                    r"bad\.txt', line 2: expected 3 tab-separated columns .* got 1; the line is "
                                    r"'rejects VBZ O'\. Every token line"),
    "latin-1 CoNLL": ("conll", "ok X O\ncaf\xe9 X O\n".encode("latin-1"), {},
                      r"bad\.txt' is not valid UTF-8: byte offset 10 \(line 2\) holds b'\\xe9 X ' .* "
                      r"`iconv -f latin1 -t utf-8 .*bad\.txt > bad\.utf8\.txt`\.$"),
    "latin-1 CoNLL-U": ("conllu", (WORD + "2\tcaf\xe9\t_\tX\tX\t_\t0\tdep\t_\t_\n").encode("latin-1"), {},
                        rf"bad\.txt' is not valid UTF-8: byte offset {len(WORD) + 5} \(line 2\) holds b'\\xe9\\t_\\t' "
                        r".* Re-encode the file as UTF-8"),
    "UTF-16 file": ("conll", "ok X O\n".encode("utf-16"), {},
                    r"bad\.txt' is not valid UTF-8: byte offset 0 \(line 1\) .* It starts with a UTF-16 byte-order "
                    r"mark\. Re-encode the file as UTF-8, e.g. `iconv -f utf-16 -t utf-8"),
    "CoNLL without sentences": ("conll", b"-DOCSTART- -X- O O\n\n\n", {},
                                r"bad\.txt' has no sentences: it holds only blank lines and -DOCSTART- lines\. "
                                r"Expected token lines"),
    "CoNLL-U without sentences": ("conllu", b"# sent_id = 1\n\n", {},
                                  r"bad\.txt' has no sentences: it holds only blank lines and # comments"),
    "bad CoNLL-U ID": ("conllu", (WORD + "two\tb\tb\tX\tX\t_\t0\tdep\t_\t_\n").encode(), {},
                       r"bad\.txt', line 2: the ID column must be an integer.* got 'two'; the line is "
                       r"'two\\tb.*'\. Fix the ID of this line\."),
    "CoNLL-U IDs out of order": ("conllu", (WORD + WORD).encode(), {},
                                 r"line 2: expected word ID 2 .* got 1; .* add the blank line that ends the previous"),
    "CoNLL-U line with 9 columns": ("conllu", WORD.rsplit("\t", 1)[0].encode() + b"\n", {},
                                    r"line 1: expected 10 tab-separated columns \(ID FORM .*\), got 9"),
    "CoNLL file read as CoNLL-U": ("conllu", b"EU NNP B-ORG\n", {},
                                   r"line 1: expected 10 tab-separated columns .* got 1; .* read it with "
                                   r"format='conll'\.$"),
    "CoNLL-U file read as CoNLL": ("conll", ("# sent_id = 1\n" + WORD).encode(), {},
                                   r"line 1: this looks like a CoNLL-U file .* the line is '# sent_id = 1'\. Read it "
                                   r"with format='conllu' \(TaggingDataModule: path='conllu'\)\.$"),
    "CoNLL-U words read as CoNLL": ("conll", WORD.encode(), {}, r"line 1: this looks like a CoNLL-U file"),
    "no XPOS in the treebank": ("conllu", WORD.replace("DT", "_").encode(), {"tag_field": "xpos"},
                                r"line 1: the XPOS column \(the tag\) is '_', unspecified; .* pick the other tag "
                                r"field \(tag_field='upos' or 'xpos'\)"),
    "a word without UPOS": ("conllu", WORD.replace("DET", "_").encode(), {},
                            r"line 1: the UPOS column \(the tag\) is '_', unspecified; .* Tag every word"),
    "tag_column past the last column": ("conll", b"EU NNP B-ORG\n", {"tag_column": 5},
                                        r"line 1: tag_column=5 and token_column=0 need at least 6 columns, the line "
                                        r"has 3; .* Pick columns that exist \(0\.\.2, or -1 for the last\)\."),
    "a file with a token column only": ("conll", b"EU\nrejects\n", {},
                                        r"line 1: tag_column=-1 and token_column=0 name the same column of 1; .* "
                                        r"point them at different ones\."),
}


def _bad_file(tmp_path, case):
    fmt, raw, kwargs, match = MALFORMED[case]
    path = tmp_path / "bad.txt"
    if raw == DIR:
        path.mkdir()
    elif raw is not None:
        path.write_bytes(raw)
    return fmt, path, kwargs, match


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_file_through_the_datamodule(tmp_path, case):
    fmt, path, kwargs, match = _bad_file(tmp_path, case)
    dm = TaggingDataModule(path=fmt, data_files={"train": str(path), "validation": str(path)},
                           cache_dir=str(tmp_path / "cache"), **kwargs)
    with pytest.raises(ValueError, match=match) as info:
        dm.prepare_data()
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=match):  # nothing cached: setup meets the same error
        dm.setup("fit")


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_file_through_the_cli(tmp_path, capsys, monkeypatch, case):
    fmt, path, kwargs, match = _bad_file(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    options = [f"--data.init_args.{k}={v}" for k, v in kwargs.items()]
    with pytest.raises(SystemExit) as info:
        main(["fit", *RECIPES[fmt], "--trainer.fast_dev_run=true", f"--data.init_args.cache_dir={tmp_path / 'c'}",
              f"--data.init_args.data_files={{'train': '{path}', 'validation': '{path}'}}", *options])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2] == f"(bad input: set {TRACEBACK_ENV}=1 to see the traceback)"
    assert err[-1].startswith("error: ") and re.search(match, err[-1].removeprefix("error: "))
    assert "Traceback" not in "\n".join(err)



def test_a_malformed_files_error_has_a_finite_chain(tmp_path):
    """The loop itself is gone (not only survived by the CLI's walker): following ``__cause__ or __context__``, as
    a naive walker does, ends."""
    fmt, path, kwargs, match = _bad_file(tmp_path, "token line without a tag")
    dm = TaggingDataModule(path=fmt, data_files={"train": str(path)}, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=match) as info:
        dm.prepare_data()
    err, steps = info.value, 0
    while err is not None and steps < 100:
        err, steps = err.__cause__ or err.__context__, steps + 1
    assert err is None, "the exception chain loops"


# -- the rest of the surface: each through the DataModule a user builds --
def test_a_data_file_that_does_not_exist_is_named(tmp_path):
    (tmp_path / "train.txt").write_text("a b c\n" * 20)
    files = {"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valdi.txt")}
    dm = LanguageModelingDataModule(path="text", data_files=files, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"^`data_files\['validation'\]` '.*valdi\.txt' does not exist: expected a "
                                         r"file of the corpus \(resolved to .*\)\. Check the path\.$") as info:
        _ = dm.vocab_size
    assert isinstance(info.value, FileNotFoundError)  # what `datasets` raised before, for code that catches it


@pytest.mark.parametrize("text, kwargs, match", [
    ("\n   \n\t\n" * 30, {}, r"the 'train' split holds no word \(data_files\['train'\] = '.*blank\.txt'\): its 90 "
                            r"rows of `text_column` 'text' are blank, so the vocabulary is the special tokens alone"),
    ("\n" * 60, {"tokenizer": "char"}, r"the 'train' split holds no character"),
    ("a b c d\n" * 5, {"min_frequency": 10},
     r"holds no word seen `min_frequency`=10 times .* or lower `min_frequency`"),
], ids=["blank lines", "empty lines, characters", "no word frequent enough"])
def test_a_train_split_without_a_real_token_is_refused(tmp_path, text, kwargs, match):
    """Every line would be <bos> <eos>: a model would train on line ends alone (it did, without a word)."""
    (tmp_path / "blank.txt").write_text(text)
    (tmp_path / "valid.txt").write_text("a b\n" * 5)
    dm = LanguageModelingDataModule(path="text", data_files={"train": str(tmp_path / "blank.txt"),
                                                             "validation": str(tmp_path / "valid.txt")},
                                    cache_dir=str(tmp_path / "cache"), batch_size=2, bptt=3, **kwargs)
    with pytest.raises(ValueError, match=match):
        dm.setup("fit")


def _classification(tmp_path, labels):
    from rnn_lightning import TextClassificationDataModule

    path = tmp_path / "rows.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"a b c\t{label}\n" for label in labels))
    return TextClassificationDataModule(path="csv", csv_delimiter="\t", cache_dir=str(tmp_path / "cache"),
                                        data_files={"train": str(path), "validation": str(path)})


@pytest.mark.parametrize("labels, match", [
    (["0", "1", "positive", "negative"], r"`label` of the 'train' split mixes whole numbers \['0', '1'\] and names "
                                         r"\['negative', 'positive'\]: .* map 0/1 to 'negative'/'positive'"),
    (["0", "1", "0.5"], r"mixes whole numbers \['0', '1'\] and fractional numbers \['0.5'\]"),
])
def test_a_label_column_mixing_kinds_is_refused(tmp_path, labels, match):
    """'1' and 'positive' in one column became two classes of one meaning."""
    with pytest.raises(ValueError, match=match):
        _ = _classification(tmp_path, labels * 3).labels


@pytest.mark.parametrize("labels, expected", [(["1.0", "0.0"], ["0", "1"]), (["pos", "neg"], ["neg", "pos"]),
                                              (["2", "10"], ["10", "2"]), (["1.5", "2.5"], ["1.5", "2.5"])])
def test_a_label_column_of_one_kind_keeps_its_labels(tmp_path, labels, expected):
    assert _classification(tmp_path, labels * 3).labels == expected  # a float column's 1.0 reads as '1'


def test_embedding_dim_is_named_as_the_user_wrote_it():
    with pytest.raises(ValueError, match=r"^`embedding_dim` must be a positive integer, got 0\.$"):
        LanguageModel(10, embedding_dim=0)


def test_a_classifier_with_no_input_feature_names_embedding_dim():
    from rnn_lightning import SequenceClassifier

    with pytest.raises(ValueError, match=r"^`embedding_dim` is 0 and no character or string features are on, so the "
                                         r"encoder would read nothing\. .* give `lm_checkpoints`"):
        SequenceClassifier(10, 2, embedding_dim=0)
    with pytest.raises(ValueError, match=r"^`embedding_dim` must be a non-negative integer .* got -1\.$"):
        SequenceClassifier(10, 2, embedding_dim=-1)
