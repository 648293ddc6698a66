"""Bad input across every public entry point (issue 12): what each gets now, as a markdown table.

Each case runs in a forked child process with a time limit, so a hang is reported as ``HANGS`` instead of blocking
the run. The verdict:

- ``clear``: an error (or the CLI's ``error:`` line and exit status 2, without a traceback) raised by rnn_lightning
  whose message names what the case says it must (the argument, the file);
- ``unclear``: an error from inside another library, a CLI traceback, or a message that does not name them;
- ``HANGS``: still running at the time limit;
- ``accepted silently``: the call returned (the command exited 0) without an error;
- ``correct (by design)``: the few cases where returning is right, and the result passes the case's check.

The small files, data and checkpoints the cases read are written to a temporary folder first (a few tiny models
trained a few steps with the real Trainer).

Usage:
    python benchmarks/bad_inputs.py [--out DIR] [--only SUBSTRING] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
if __package__ in (None, ""):  # run as `python benchmarks/bad_inputs.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAME = "bad_inputs"
VERDICTS = ("clear", "correct (by design)", "unclear", "HANGS", "accepted silently")
TIMEOUT_S = 60
PACKAGE = Path(__file__).resolve().parent.parent / "rnn_lightning"
WORDS = "the cat sat on the mat and the dog ate the hat"


@dataclass(frozen=True)
class Case:
    name: str  # the bad input, as a user would describe it
    entry: str  # the public entry point it goes through
    run: Callable[[Any], Any]  # run(ctx) makes the call
    names: tuple[str, ...]  # what the message must name (argument, file), case-insensitive
    accept: Callable[[Any], bool] | None = None  # where returning is right: the check its result must pass


CASES: list[Case] = []


def case(name: str, entry: str, *names: str, accept: Callable[[Any], bool] | None = None):
    def add(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        CASES.append(Case(name, entry, fn, names, accept))
        return fn

    return add


# -- the fixtures: tiny files, data and checkpoints ----------------------------------------------------------------
class Context:
    """Paths of the tiny files the cases read, and models trained a few steps (inherited by each forked case)."""

    def __init__(self, root: Path) -> None:
        import lightning as L
        import torch

        from rnn_lightning import (
            LanguageModel,
            LanguageModelingDataModule,
            SequenceClassifier,
            SequenceTagger,
            TaggingDataModule,
            TextClassificationDataModule,
        )

        self.root = root
        self.text = self.write("train.txt", (WORDS + "\n") * 40)
        self.valid = self.write("valid.txt", (WORDS + "\n") * 10)
        self.conll = self.write("train.conll", "EU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC\n\n" * 20)
        self.write("cli.conll", "EU NNP B-ORG\nrejects VBZ\n")  # a token line without a tag
        self.write("latin1.txt", "caf\xe9 au lait\n".encode("latin-1"))
        self.tsv = self.write("train.tsv", "sentence\tlabel\n" + "".join(f"{WORDS}\t{i % 2}\n" for i in range(40)))
        torch.manual_seed(0)

        def fit(model: Any, data: Any, name: str) -> Path:
            trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                default_root_dir=root)
            trainer.fit(model, data)
            trainer.save_checkpoint(root / name)
            return root / name

        self.lm_data = LanguageModelingDataModule(path="text", data_files={"train": str(self.text),
                                                                            "validation": str(self.valid)},
                                                  batch_size=2, eval_batch_size=2, bptt=5,
                                                  cache_dir=str(root / "cache"))
        self.lm = LanguageModel(self.lm_data.vocab_size, pad_id=self.lm_data.pad_id, embedding_dim=8, hidden_size=8,
                                num_layers=1)
        self.lm_ckpt = fit(self.lm, self.lm_data, "lm.ckpt")
        self.tag_data = TaggingDataModule(path="conll", data_files={"train": str(self.conll),
                                                                    "validation": str(self.conll)},
                                          tag_scheme="IOB2", batch_size=4, cache_dir=str(root / "cache"))
        self.tagger = SequenceTagger(self.tag_data.vocab_size, self.tag_data.num_labels, pad_id=self.tag_data.pad_id,
                                     labels=self.tag_data.labels, span_scheme="IOB2", embedding_dim=8,
                                     hidden_size=8, crf=True)
        self.tagger_ckpt = fit(self.tagger, self.tag_data, "tagger.ckpt")
        self.cls_data = TextClassificationDataModule(path="csv", csv_delimiter="\t",
                                                     data_files={"train": str(self.tsv), "validation": str(self.tsv)},
                                                     batch_size=8, cache_dir=str(root / "cache"))
        self.classifier = SequenceClassifier(self.cls_data.vocab_size, self.cls_data.num_labels,
                                             pad_id=self.cls_data.pad_id, labels=self.cls_data.labels,
                                             embedding_dim=8, hidden_size=8)
        self.cls_ckpt = fit(self.classifier, self.cls_data, "classifier.ckpt")
        self.garbage_ckpt = self.write("garbage.ckpt", b"this is not a checkpoint")
        self.empty_ckpt = self.write("empty.ckpt", b"")
        self.cut_ckpt = self.write("cut.ckpt", self.lm_ckpt.read_bytes()[: self.lm_ckpt.stat().st_size // 2])
        self.plain_pt = root / "plain.pt"
        torch.save({"weights": torch.zeros(2)}, self.plain_pt)

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def lm_files(self, train: Path, **kwargs: Any) -> Any:
        from rnn_lightning import LanguageModelingDataModule

        kwargs = {"batch_size": 2, "eval_batch_size": 2, "bptt": 5, "cache_dir": str(self.root / "c2"), **kwargs}
        return LanguageModelingDataModule(path="text", data_files={"train": str(train), "validation": str(self.valid)},
                                          **kwargs)

    def tagging(self, text: str | bytes, fmt: str = "conll", **kwargs: Any) -> Any:
        from rnn_lightning import TaggingDataModule

        path = self.write(f"bad.{fmt}", text)
        return TaggingDataModule(path=fmt, data_files={"train": str(path), "validation": str(path)},
                                 cache_dir=str(self.root / "c3"), **kwargs)

    def classification(self, text: str | bytes, *, suffix: str = "tsv", **kwargs: Any) -> Any:
        from rnn_lightning import TextClassificationDataModule

        path = self.write(f"bad.{suffix}", text)
        kwargs = {"path": "csv", "csv_delimiter": "\t", **kwargs}
        return TextClassificationDataModule(data_files={"train": str(path), "validation": str(path)},
                                            cache_dir=str(self.root / "c4"), **kwargs)

    def trainer(self, **kwargs: Any) -> Any:
        import lightning as L

        return L.Trainer(**{**dict(accelerator="cpu", logger=False, enable_checkpointing=False,
                                   enable_progress_bar=False, enable_model_summary=False,
                                   default_root_dir=self.root), **kwargs})


def cli(*argv: str) -> Callable[[Context], Any]:
    """A case that runs ``rnn-lightning ARGV`` (``rnn_lightning.cli.main``); ``{root}`` etc. filled from ctx."""
    def run(ctx: Context) -> Any:
        from rnn_lightning.cli import main

        args = [a.format(root=ctx.root, lm=ctx.lm_ckpt, tagger=ctx.tagger_ckpt, cls=ctx.cls_ckpt, text=ctx.text,
                         valid=ctx.valid) for a in argv]
        main(args)

    run.cli = True
    return run


LM_FIT = ["fit", "--model=rnn_lightning.LanguageModel", "--data=rnn_lightning.LanguageModelingDataModule",
          "--data.init_args.path=text", "--data.init_args.batch_size=2", "--data.init_args.bptt=5",
          "--model.init_args.embedding_dim=8", "--model.init_args.hidden_size=8", "--model.init_args.num_layers=1",
          "--trainer.accelerator=cpu", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
          "--trainer.default_root_dir={root}/runs", "--data.init_args.cache_dir={root}/c5"]
LM_FILES = "--data.init_args.data_files={{'train': '{text}', 'validation': '{valid}'}}"


# -- LanguageModelingDataModule ------------------------------------------------------------------------------------
@case("data file that does not exist", "LanguageModelingDataModule", "missing.txt")
def _(ctx):
    return ctx.lm_files(ctx.root / "missing.txt").vocab_size


@case("non-UTF-8 (latin-1) text file", "LanguageModelingDataModule", "latin1.txt")
def _(ctx):
    return ctx.lm_files(ctx.write("latin1.txt", "caf\xe9 au lait\n".encode("latin-1"))).vocab_size


@case("empty validation file", "LanguageModelingDataModule.setup", "validation")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    empty = ctx.write("empty.txt", "")
    dm = LanguageModelingDataModule(path="text", data_files={"train": str(ctx.text), "validation": str(empty)},
                                    cache_dir=str(ctx.root / "c6"))
    dm.setup("validate")


@case("a train split of blank lines only (no real token)", "LanguageModelingDataModule.setup", "train")
def _(ctx):
    ctx.lm_files(ctx.write("blank.txt", "\n   \n\t\n" * 50)).setup("fit")


@case("bptt=0", "LanguageModelingDataModule", "bptt")
def _(ctx):
    ctx.lm_files(ctx.text, bptt=0)


@case("batch_size=-1", "LanguageModelingDataModule", "batch_size")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    LanguageModelingDataModule(path="text", data_files=str(ctx.text), batch_size=-1)


@case("corpus shorter than one window per stream", "LanguageModelingDataModule.setup", "bptt")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    tiny = ctx.write("tiny.txt", "a b c\n")
    LanguageModelingDataModule(path="text", data_files={"train": str(tiny), "validation": str(tiny)},
                               batch_size=4, bptt=10, cache_dir=str(ctx.root / "c7")).setup("fit")


@case("text_column that is not a column", "LanguageModelingDataModule", "text_column")
def _(ctx):
    return ctx.lm_files(ctx.text, text_column="sentence").vocab_size


@case("holdout naming a split the corpus has", "LanguageModelingDataModule", "holdout")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    return LanguageModelingDataModule(path="text", data_files=str(ctx.text), holdout={"train": 0.1},
                                      cache_dir=str(ctx.root / "c8")).raw


@case("holdout fractions summing past 1", "LanguageModelingDataModule", "holdout")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    return LanguageModelingDataModule(path="text", data_files=str(ctx.text), holdout={"validation": 0.7, "test": 0.6},
                                      cache_dir=str(ctx.root / "c8")).raw


@case("tokenizer that is neither word, char nor a file", "LanguageModelingDataModule", "tokenizer")
def _(ctx):
    return ctx.lm_files(ctx.text, tokenizer="bpe").vocab_size


@case("direction='sideways'", "LanguageModelingDataModule", "direction")
def _(ctx):
    ctx.lm_files(ctx.text, direction="sideways")


@case("max_vocab_size=1", "LanguageModelingDataModule", "max_vocab_size")
def _(ctx):
    return ctx.lm_files(ctx.text, max_vocab_size=1).vocab_size


@case("neither path nor dataset", "LanguageModelingDataModule", "path", "dataset")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    return LanguageModelingDataModule().vocab_size


@case("dataset that is a list, not a DatasetDict", "LanguageModelingDataModule", "dataset")
def _(ctx):
    from rnn_lightning import LanguageModelingDataModule

    return LanguageModelingDataModule(dataset=["the cat sat"] * 10).vocab_size


# -- TaggingDataModule ---------------------------------------------------------------------------------------------
WORD_U = "1\tok\tok\tDET\tDT\t_\t0\troot\t_\t_\n"


@case("CoNLL token line without a tag", "TaggingDataModule", "bad.conll", "line 2")
def _(ctx):
    ctx.tagging("EU NNP B-ORG\nrejects VBZ\n").setup("fit")


@case("CoNLL tab- and space-separated lines mixed", "TaggingDataModule", "bad.conll", "line 2")
def _(ctx):
    ctx.tagging("EU\tNNP\tB-ORG\nrejects VBZ O\n").setup("fit")


@case("non-UTF-8 CoNLL file", "TaggingDataModule", "bad.conll", "utf-8")
def _(ctx):
    ctx.tagging("ok X O\ncaf\xe9 X O\n".encode("latin-1")).setup("fit")


@case("CoNLL file with no sentences", "TaggingDataModule", "bad.conll", "no sentences")
def _(ctx):
    ctx.tagging("-DOCSTART- -X- O O\n\n\n").setup("fit")


@case("CoNLL-U with a bad ID", "TaggingDataModule", "bad.conllu", "line 2", "ID")
def _(ctx):
    ctx.tagging(WORD_U + "two\tb\tb\tX\tX\t_\t0\tdep\t_\t_\n", "conllu").setup("fit")


@case("CoNLL file read as CoNLL-U", "TaggingDataModule", "bad.conllu", "conll")
def _(ctx):
    ctx.tagging("EU NNP B-ORG\n", "conllu").setup("fit")


@case("tag_column past the last column", "TaggingDataModule", "tag_column")
def _(ctx):
    ctx.tagging("EU NNP B-ORG\n", tag_column=7).setup("fit")


@case("tag_scheme='IOB3'", "TaggingDataModule", "tag_scheme")
def _(ctx):
    from rnn_lightning import TaggingDataModule

    TaggingDataModule(path="conll", data_files=str(ctx.conll), tag_scheme="IOB3")


@case("tags breaking the declared IOB2 scheme", "TaggingDataModule.setup", "IOB2")
def _(ctx):
    ctx.tagging("EU NNP I-ORG\nrejects VBZ O\n\n", tag_scheme="IOB2").setup("fit")


@case("labels that miss a tag of the data", "TaggingDataModule.setup", "labels", "B-ORG")
def _(ctx):
    ctx.tagging("EU NNP B-ORG\nrejects VBZ O\n\n", labels=["O"]).setup("fit")


@case("max_length=0", "TaggingDataModule", "max_length")
def _(ctx):
    ctx.tagging("EU NNP B-ORG\n\n", max_length=0)


@case("train_scheme without tag_scheme", "TaggingDataModule", "train_scheme")
def _(ctx):
    ctx.tagging("EU NNP B-ORG\n\n", train_scheme="IOBES").setup("fit")


@case("tag_field='feats' for CoNLL-U", "TaggingDataModule", "tag_field")
def _(ctx):
    ctx.tagging(WORD_U, "conllu", tag_field="feats").setup("fit")


# -- TextClassificationDataModule ------------------------------------------------------------------------------------
@case("label column mixing integers and names", "TextClassificationDataModule", "label")
def _(ctx):
    rows = "".join(f"{WORDS}\t{label}\n" for label in ["0", "1", "positive", "negative"] * 5)
    return ctx.classification("sentence\tlabel\n" + rows).labels


@case("label column mixing integers and floats", "TextClassificationDataModule", "label")
def _(ctx):
    rows = "".join(f"{WORDS}\t{label}\n" for label in ["0", "1", "0.5", "1"] * 5)
    return ctx.classification("sentence\tlabel\n" + rows).labels


@case("a row whose text is empty", "TextClassificationDataModule.setup", "row")
def _(ctx):
    ctx.classification("sentence\tlabel\n" + f"{WORDS}\t0\n" * 5 + " \t1\n").setup("fit")


@case("label_column that is not a column", "TextClassificationDataModule", "label_column")
def _(ctx):
    return ctx.classification(ctx.tsv.read_text(), label_column="polarity").labels


@case("non-UTF-8 TSV", "TextClassificationDataModule", "bad.tsv")
def _(ctx):
    return ctx.classification("sentence\tlabel\ncaf\xe9\t0\n".encode("latin-1")).labels


@case("a label in validation that train lacks", "TextClassificationDataModule.setup", "validation")
def _(ctx):
    from rnn_lightning import TextClassificationDataModule

    other = ctx.write("other.tsv", "sentence\tlabel\n" + f"{WORDS}\t7\n")
    TextClassificationDataModule(path="csv", csv_delimiter="\t",
                                 data_files={"train": str(ctx.tsv), "validation": str(other)},
                                 cache_dir=str(ctx.root / "c9")).setup("validate")


@case("labels with a duplicate", "TextClassificationDataModule", "labels")
def _(ctx):
    return ctx.classification(ctx.tsv.read_text(), labels=["0", "1", "1"]).labels


@case("a comma file read as TSV (one column)", "TextClassificationDataModule", "label")
def _(ctx):
    return ctx.classification("sentence,label\n" + f"{WORDS},0\n" * 10).labels


# -- task constructors --------------------------------------------------------------------------------------------
@case("vocab_size=1", "LanguageModel", "vocab_size")
def _(ctx):
    from rnn_lightning import LanguageModel

    LanguageModel(1)


@case("dropout_between=1.0", "LanguageModel", "dropout")
def _(ctx):
    from rnn_lightning import LanguageModel

    LanguageModel(10, dropout_between=1.0)


@case("cell='lstmm'", "LanguageModel", "cell")
def _(ctx):
    from rnn_lightning import LanguageModel

    LanguageModel(10, cell="lstmm")


@case("embedding_dim=0", "LanguageModel", "embedding_dim")
def _(ctx):
    from rnn_lightning import LanguageModel

    LanguageModel(10, embedding_dim=0)


@case("adaptive_softmax_cutoffs past the vocabulary", "LanguageModel", "adaptive_softmax_cutoffs")
def _(ctx):
    from rnn_lightning import LanguageModel

    LanguageModel(10, adaptive_softmax_cutoffs=[50])


@case("init_from a checkpoint that does not exist", "LanguageModel + Trainer.fit", "init_from", "nope.ckpt")
def _(ctx):
    from rnn_lightning import LanguageModel

    model = LanguageModel(ctx.lm_data.vocab_size, pad_id=ctx.lm_data.pad_id, embedding_dim=8, hidden_size=8,
                          num_layers=1, init_from=str(ctx.root / "nope.ckpt"))
    ctx.trainer(max_steps=1, limit_val_batches=0).fit(model, ctx.lm_data)


@case("num_labels=1", "SequenceTagger", "num_labels")
def _(ctx):
    from rnn_lightning import SequenceTagger

    SequenceTagger(10, 1)


@case("labels whose length differs from num_labels", "SequenceTagger", "labels", "num_labels")
def _(ctx):
    from rnn_lightning import SequenceTagger

    SequenceTagger(10, 3, labels=["O", "B-X"])


@case("span_scheme='XYZ'", "SequenceTagger", "span_scheme")
def _(ctx):
    from rnn_lightning import SequenceTagger

    SequenceTagger(10, 3, labels=["O", "B-X", "I-X"], span_scheme="XYZ")


@case("pooling='avg'", "SequenceClassifier", "pooling")
def _(ctx):
    from rnn_lightning import SequenceClassifier

    SequenceClassifier(10, 2, pooling="avg")


def _fit_classifier(ctx, **kwargs):
    from rnn_lightning import SequenceClassifier

    data = ctx.cls_data
    model = SequenceClassifier(data.vocab_size, data.num_labels, pad_id=data.pad_id, labels=data.labels,
                               embedding_dim=8, hidden_size=8, **kwargs)
    ctx.trainer(max_steps=1, limit_val_batches=0).fit(model, data)


@case("pretrained_embeddings file that does not exist", "SequenceClassifier + Trainer.fit", "pretrained_embeddings",
      "glove.missing.txt")
def _(ctx):
    _fit_classifier(ctx, pretrained_embeddings=str(ctx.root / "glove.missing.txt"))


@case("pretrained_embeddings of another dimension", "SequenceClassifier + Trainer.fit", "glove.3d.txt")
def _(ctx):
    _fit_classifier(ctx, pretrained_embeddings=str(ctx.write("glove.3d.txt", "the 0.1 0.2 0.3\ncat 0.3 0.2 0.1\n")))


@case("init_from_lm that is a tagger checkpoint", "SequenceClassifier + Trainer.fit", "init_from_lm", "tagger.ckpt")
def _(ctx):
    _fit_classifier(ctx, init_from_lm=str(ctx.tagger_ckpt))


# -- task methods -------------------------------------------------------------------------------------------------
@case("tag('a b c'): a string, not a list", "SequenceTagger.tag", "sentences")
def _(ctx):
    return ctx.tagger.tag("EU rejects")


@case("tag with a non-string token", "SequenceTagger.tag", "sentences[0]")
def _(ctx):
    return ctx.tagger.tag([["EU", 2]])


@case("tag(top_k=0)", "SequenceTagger.tag", "top_k")
def _(ctx):
    return ctx.tagger.tag(["EU rejects"], top_k=0)


@case("classify('a b'): a string, not a list", "SequenceClassifier.classify", "texts")
def _(ctx):
    return ctx.classifier.classify("the cat")


@case("classify an empty text", "SequenceClassifier.classify", "texts")
def _(ctx):
    return ctx.classifier.classify(["the cat", ""])


@case("classify([None])", "SequenceClassifier.classify", "texts[0]")
def _(ctx):
    return ctx.classifier.classify([None])


@case("generate(max_new_tokens=0)", "LanguageModel.generate", "max_new_tokens")
def _(ctx):
    return ctx.lm.generate(max_new_tokens=0)


@case("generate(top_k=0)", "LanguageModel.generate", "top_k")
def _(ctx):
    return ctx.lm.generate(top_k=0)


@case("generate(temperature=0)", "LanguageModel.generate", "temperature")
def _(ctx):
    return ctx.lm.generate(temperature=0.0)


@case("generate(top_p=1.5)", "LanguageModel.generate", "top_p")
def _(ctx):
    return ctx.lm.generate(top_p=1.5)


@case("generate(prompt=['a', 'b'])", "LanguageModel.generate", "prompt")
def _(ctx):
    return ctx.lm.generate(["the", "cat"])


@case("generate on a model without a tokenizer", "LanguageModel.generate", "tokenizer")
def _(ctx):
    from rnn_lightning import LanguageModel

    return LanguageModel(10, embedding_dim=4, hidden_size=4, num_layers=1).generate("the")


@case("generate_ids with an id past the vocabulary", "LanguageModel.generate_ids", "context")
def _(ctx):
    return ctx.lm.generate_ids([10_000], max_new_tokens=2)


@case("score('a b'): a string, not a list", "LanguageModel.score", "texts")
def _(ctx):
    return ctx.lm.score("the cat")


@case("score(batch_size=0)", "LanguageModel.score", "batch_size")
def _(ctx):
    return ctx.lm.score(["the cat"], batch_size=0)


@case("export into a path that is a file", "export", "directory")
def _(ctx):
    from rnn_lightning.export import export

    return export(ctx.lm, ctx.text)


@case("export(formats='pdf')", "export", "formats")
def _(ctx):
    from rnn_lightning.export import export

    return export(ctx.lm, ctx.root / "exported", formats="pdf")


@case("export(opset=3)", "export", "opset")
def _(ctx):
    from rnn_lightning.export import export

    return export(ctx.lm, ctx.root / "exported3", formats="onnx", opset=3)


@case("save_pretrained into a path that is a file", "LanguageModel.save_pretrained", "save_directory")
def _(ctx):
    return ctx.lm.save_pretrained(ctx.text)


@case("save_pretrained(metrics='ppl 3')", "LanguageModel.save_pretrained", "metrics")
def _(ctx):
    return ctx.lm.save_pretrained(ctx.root / "hub1", metrics="ppl 3")


@case("from_pretrained of a folder that does not exist", "LanguageModel.from_pretrained", "nope")
def _(ctx):
    from rnn_lightning import LanguageModel

    return LanguageModel.from_pretrained(ctx.root / "nope", local_files_only=True)


@case("from_pretrained of an empty folder", "LanguageModel.from_pretrained", "emptyhub")
def _(ctx):
    from rnn_lightning import LanguageModel

    (ctx.root / "emptyhub").mkdir()
    return LanguageModel.from_pretrained(ctx.root / "emptyhub")


@case("from_pretrained with corrupt weights", "LanguageModel.from_pretrained", "model.safetensors")
def _(ctx):
    from rnn_lightning import LanguageModel

    folder = ctx.lm.save_pretrained(ctx.root / "hub2")
    (Path(folder) / "model.safetensors").write_bytes(b"garbage")
    return LanguageModel.from_pretrained(folder)


@case("from_pretrained of a classifier folder as a tagger", "SequenceTagger.from_pretrained", "SequenceClassifier")
def _(ctx):
    from rnn_lightning import SequenceTagger

    folder = ctx.classifier.save_pretrained(ctx.root / "hub3")
    return SequenceTagger.from_pretrained(folder)


@case("load_pretrained of a folder that does not exist", "load_pretrained", "nope")
def _(ctx):
    from rnn_lightning import load_pretrained

    return load_pretrained(ctx.root / "nope", local_files_only=True)


# -- checkpoints and resuming ---------------------------------------------------------------------------------------
@case("checkpoint that is garbage bytes", "LanguageModel.load_from_checkpoint", "garbage.ckpt")
def _(ctx):
    from rnn_lightning import LanguageModel

    return LanguageModel.load_from_checkpoint(ctx.garbage_ckpt)


@case("checkpoint that is truncated", "LanguageModel.load_from_checkpoint", "cut.ckpt")
def _(ctx):
    from rnn_lightning import LanguageModel

    return LanguageModel.load_from_checkpoint(ctx.cut_ckpt)


@case("checkpoint that is an empty file", "SequenceTagger.load_from_checkpoint", "empty.ckpt")
def _(ctx):
    from rnn_lightning import SequenceTagger

    return SequenceTagger.load_from_checkpoint(ctx.empty_ckpt)


@case("a torch.save file, not a Lightning checkpoint", "LanguageModel.load_from_checkpoint", "plain.pt")
def _(ctx):
    from rnn_lightning import LanguageModel

    return LanguageModel.load_from_checkpoint(ctx.plain_pt)


@case("another task's checkpoint", "SequenceClassifier.load_from_checkpoint", "lm.ckpt", "LanguageModel")
def _(ctx):
    from rnn_lightning import SequenceClassifier

    return SequenceClassifier.load_from_checkpoint(ctx.lm_ckpt)


@case("Trainer.fit(ckpt_path=) of another task's checkpoint", "Trainer.fit + LanguageModel", "tagger.ckpt")
def _(ctx):
    from rnn_lightning import LanguageModel

    model = LanguageModel(ctx.lm_data.vocab_size, pad_id=ctx.lm_data.pad_id, embedding_dim=8, hidden_size=8,
                          num_layers=1)
    ctx.trainer(max_steps=3).fit(model, ctx.lm_data, ckpt_path=ctx.tagger_ckpt)


@case("resume mid-epoch with another batch_size", "Trainer.fit + LanguageModelingDataModule", "batch_size")
def _(ctx):
    from rnn_lightning import LanguageModel, LanguageModelingDataModule

    data = LanguageModelingDataModule(path="text", data_files={"train": str(ctx.text), "validation": str(ctx.valid)},
                                      batch_size=3, eval_batch_size=2, bptt=5, cache_dir=str(ctx.root / "cache"))
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, embedding_dim=8, hidden_size=8, num_layers=1)
    ctx.trainer(max_steps=4).fit(model, data, ckpt_path=ctx.lm_ckpt)


@case("resume with a model of another size", "Trainer.fit + LanguageModel", "lm.ckpt")
def _(ctx):
    from rnn_lightning import LanguageModel

    model = LanguageModel(ctx.lm_data.vocab_size, pad_id=ctx.lm_data.pad_id, embedding_dim=8, hidden_size=16,
                          num_layers=1)
    ctx.trainer(max_steps=4).fit(model, ctx.lm_data, ckpt_path=ctx.lm_ckpt)


@case("resume with another vocabulary", "Trainer.fit + LanguageModel", "vocabulary")
def _(ctx):
    from rnn_lightning import LanguageModel

    other = ctx.lm_files(ctx.write("other.txt", ("a b c d e f g h i j k l\n") * 40))
    model = LanguageModel(other.vocab_size, pad_id=other.pad_id, embedding_dim=8, hidden_size=8, num_layers=1)
    ctx.trainer(max_steps=4).fit(model, other, ckpt_path=ctx.lm_ckpt)


@case("resume a tagger with other labels", "Trainer.fit + SequenceTagger", "labels")
def _(ctx):
    from rnn_lightning import SequenceTagger

    data = ctx.tagging("EU NNP B-PER\nrejects VBZ O\nGerman JJ B-LOC\n\n" * 20, tag_scheme="IOB2", batch_size=4)
    model = SequenceTagger(data.vocab_size, data.num_labels, pad_id=data.pad_id, labels=data.labels,
                           span_scheme="IOB2", embedding_dim=8, hidden_size=8, crf=True)
    ctx.trainer(max_steps=4).fit(model, data, ckpt_path=ctx.tagger_ckpt)


@case("SGD at lr 1e6 without clipping (saturating divergence)", "Trainer.fit + LanguageModel", "step", "lr")
def _(ctx):
    import torch

    from rnn_lightning import LanguageModel

    torch.manual_seed(0)
    model = LanguageModel(ctx.lm_data.vocab_size, pad_id=ctx.lm_data.pad_id, embedding_dim=8, hidden_size=8,
                          num_layers=1, optimizer=lambda p: torch.optim.SGD(p, lr=1e6))
    ctx.trainer(max_steps=100, limit_val_batches=0, log_every_n_steps=1).fit(model, ctx.lm_data)


# -- metrics, CRF ---------------------------------------------------------------------------------------------------
@case("Perplexity.update with a negative count", "Perplexity", "count")
def _(ctx):
    from rnn_lightning import Perplexity

    Perplexity().update(nll_sum=1.0, count=-3)


@case("Perplexity.update with a negative NLL sum", "Perplexity", "nll_sum")
def _(ctx):
    from rnn_lightning import Perplexity

    Perplexity().update(nll_sum=-1.0, count=2)


@case("Perplexity.update with a float count", "Perplexity", "count")
def _(ctx):
    from rnn_lightning import Perplexity

    Perplexity().update(nll_sum=1.0, count=2.5)


@case("Perplexity.update with a NaN NLL sum", "Perplexity", accept=lambda ppl: math.isnan(ppl))
def _(ctx):  # a NaN loss is a broken model's output, shown as NaN (as torch and torchmetrics do), not hidden
    from rnn_lightning import Perplexity

    metric = Perplexity()
    metric.update(nll_sum=float("nan"), count=2)
    metric.update(nll_sum=2.0, count=2)
    return float(metric.compute())


@case("SpanF1('B-X'): a string for labels", "SpanF1", "labels")
def _(ctx):
    from rnn_lightning import SpanF1

    SpanF1("B-X")


@case("SpanF1 preds past the label set", "SpanF1.update", "preds")
def _(ctx):
    import torch

    from rnn_lightning import SpanF1

    SpanF1(["O", "B-X", "I-X"]).update(torch.tensor([[5, 0]]), torch.tensor([[0, 0]]))


@case("SpanF1 preds and target of different shapes", "SpanF1.update", "preds", "target")
def _(ctx):
    import torch

    from rnn_lightning import SpanF1

    SpanF1(["O", "B-X", "I-X"]).update(torch.tensor([[1, 0, 0]]), torch.tensor([[0, 0]]))


@case("SpanF1(average='mean')", "SpanF1", "average")
def _(ctx):
    from rnn_lightning import SpanF1

    SpanF1(["O", "B-X", "I-X"], average="mean")


@case("CRF(num_tags=0)", "CRF", "num_tags")
def _(ctx):
    from rnn_lightning.nn import CRF

    CRF(0)


@case("CRF emissions with the wrong number of tags", "CRF.forward", "emissions")
def _(ctx):
    import torch

    from rnn_lightning.nn import CRF

    CRF(3)(torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.long))


@case("CRF tags past num_tags", "CRF.forward", "tags")
def _(ctx):
    import torch

    from rnn_lightning.nn import CRF

    CRF(3)(torch.zeros(2, 4, 3), torch.full((2, 4), 7))


@case("CRF mask whose first step is off", "CRF.forward", "mask")
def _(ctx):
    import torch

    from rnn_lightning.nn import CRF

    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    CRF(3)(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long), mask)


@case("CRF allowed_transitions of the wrong shape", "CRF", "allowed_transitions")
def _(ctx):
    import torch

    from rnn_lightning.nn import CRF

    CRF(3, torch.ones(2, 2, dtype=torch.bool))


# -- callbacks ------------------------------------------------------------------------------------------------------
@case("GenerateSamples(max_new_tokens=0)", "GenerateSamples", "max_new_tokens")
def _(ctx):
    from rnn_lightning import GenerateSamples

    GenerateSamples(max_new_tokens=0)


@case("GenerateSamples(prompts='the'): a string, not a list", "GenerateSamples", "prompts")
def _(ctx):
    from rnn_lightning import GenerateSamples

    GenerateSamples(prompts="the")


@case("WritePredictions(top_k=0)", "WritePredictions", "top_k")
def _(ctx):
    from rnn_lightning import WritePredictions

    WritePredictions(str(ctx.root / "p.jsonl"), top_k=0)


@case("WritePredictions into a path that is a folder", "WritePredictions + Trainer.predict", "path")
def _(ctx):
    from rnn_lightning import WritePredictions

    ctx.cls_data.setup("validate")
    ctx.trainer(callbacks=[WritePredictions(str(ctx.root))]).predict(ctx.classifier, ctx.cls_data.val_dataloader())


@case("GradientFlowMonitor(every_n_steps=0)", "GradientFlowMonitor", "every_n_steps")
def _(ctx):
    from rnn_lightning import GradientFlowMonitor

    GradientFlowMonitor(every_n_steps=0)


@case("NTASGD(nonmono=0)", "NTASGD", "nonmono")
def _(ctx):
    from rnn_lightning import NTASGD

    NTASGD(nonmono=0)


@case("NTASGD monitoring a metric nobody logs", "NTASGD + Trainer.fit", "monitor", "val/nothing")
def _(ctx):
    import torch

    from rnn_lightning import NTASGD, LanguageModel

    model = LanguageModel(ctx.lm_data.vocab_size, pad_id=ctx.lm_data.pad_id, embedding_dim=8, hidden_size=8,
                          num_layers=1, optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    ctx.trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                callbacks=[NTASGD(monitor="val/nothing")]).fit(model, ctx.lm_data)


# -- the command line -----------------------------------------------------------------------------------------------
case("fit: a CoNLL line without a tag", "CLI fit", "cli.conll", "line 2")(cli(
    "fit", "-c", "recipes/tagging/conll2003_ner_bilstm.yaml", "-c", "recipes/data/conll2003_local.yaml",
    "--trainer.fast_dev_run=true", "--data.init_args.cache_dir={root}/c10",
    "--data.init_args.data_files={{'train': '{root}/cli.conll', 'validation': '{root}/cli.conll'}}"))
case("fit: a non-UTF-8 text file", "CLI fit", "latin1.txt")(cli(
    *LM_FIT, "--trainer.fast_dev_run=true",
    "--data.init_args.data_files={{'train': '{root}/latin1.txt', 'validation': '{valid}'}}"))
case("fit: bptt=0", "CLI fit", "bptt")(cli(*LM_FIT, LM_FILES, "--data.init_args.bptt=0"))
case("fit: --ckpt_path of garbage bytes", "CLI fit", "garbage.ckpt")(cli(
    *LM_FIT, LM_FILES, "--trainer.max_steps=3", "--ckpt_path={root}/garbage.ckpt"))
case("fit: --ckpt_path that does not exist", "CLI fit", "nope.ckpt")(cli(
    *LM_FIT, LM_FILES, "--trainer.max_steps=3", "--ckpt_path={root}/nope.ckpt"))
case("fit: resume with another batch_size", "CLI fit", "batch_size")(cli(
    *LM_FIT, LM_FILES, "--trainer.max_steps=4", "--data.init_args.batch_size=3", "--ckpt_path={lm}"))
case("fit: SGD at lr 1e6 without clipping", "CLI fit", "step", "lr")(cli(
    *LM_FIT, LM_FILES, "--trainer.max_steps=100", "--trainer.log_every_n_steps=1", "--trainer.limit_val_batches=0",
    "--model.init_args.optimizer=torch.optim.SGD", "--model.init_args.optimizer.lr=1e6"))
case("test: --ckpt_path of a tagger for a language model", "CLI test", "tagger.ckpt")(cli(
    "test", *LM_FIT[1:], LM_FILES, "--ckpt_path={tagger}"))
case("generate: truncated checkpoint", "CLI generate", "cut.ckpt")(cli("generate", "--ckpt_path={root}/cut.ckpt"))
case("generate: a classifier checkpoint", "CLI generate", "classifier.ckpt")(cli("generate", "--ckpt_path={cls}"))
case("generate: --num_samples 0", "CLI generate", "num_samples")(cli("generate", "--ckpt_path={lm}",
                                                                      "--num_samples", "0"))
case("generate: --top_k 0", "CLI generate", "top_k")(cli("generate", "--ckpt_path={lm}", "--top_k", "0"))
case("generate: --temperature -1", "CLI generate", "temperature")(cli("generate", "--ckpt_path={lm}",
                                                                       "--temperature", "-1"))
case("generate: --max_new_tokens 0", "CLI generate", "max_new_tokens")(cli("generate", "--ckpt_path={lm}",
                                                                            "--max_new_tokens", "0"))
case("score: a file that does not exist", "CLI score", "nope.txt")(cli("score", "--ckpt_path={lm}",
                                                                       "{root}/nope.txt"))
case("score: a non-UTF-8 file", "CLI score", "latin1.txt")(cli("score", "--ckpt_path={lm}", "{root}/latin1.txt"))
case("score: --batch_size 0", "CLI score", "batch_size")(cli("score", "--ckpt_path={lm}", "--batch_size", "0",
                                                             "{text}"))
case("score: a tagger checkpoint", "CLI score", "tagger.ckpt")(cli("score", "--ckpt_path={tagger}", "{text}"))
case("score: --output into a path that is a file's child", "CLI score", "output")(cli(
    "score", "--ckpt_path={lm}", "--output", "{text}/scores.jsonl", "{text}"))
case("export: --output that is a file", "CLI export", "output")(cli("export", "--ckpt_path={lm}",
                                                                    "--output", "{text}"))
case("export: --ckpt_path of garbage bytes", "CLI export", "garbage.ckpt")(cli(
    "export", "--ckpt_path={root}/garbage.ckpt", "--output", "{root}/exp1"))
case("export: --format pdf", "CLI export", "format")(cli("export", "--ckpt_path={lm}", "--output", "{root}/exp2",
                                                         "--format", "pdf"))
case("export: a torch.save file", "CLI export", "plain.pt")(cli("export", "--ckpt_path={root}/plain.pt",
                                                                "--output", "{root}/exp3"))


# -- running one case ---------------------------------------------------------------------------------------------
def _innermost_file(err: BaseException) -> str:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename if tb is not None else ""


def _ours(err: BaseException) -> bool:
    return Path(_innermost_file(err)).resolve().is_relative_to(PACKAGE)


def _child(item: Case, ctx: Context, conn: Any) -> None:
    import logging

    logging.disable(logging.WARNING)  # Lightning's banner lines; the verdict reads the error and the warnings
    stderr, report = io.StringIO(), {}
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            result = item.run(ctx)
            report = {"outcome": "returned", "result": repr(result)[:100],
                      "correct": item.accept is not None and bool(item.accept(result))}
        except SystemExit as exit_:
            report = {"outcome": "exit", "code": exit_.code}
        except BaseException as err:  # noqa: B036 (everything the call raises is reported)
            report = {"outcome": "raised", "type": type(err).__name__, "message": str(err), "ours": _ours(err),
                      "where": _innermost_file(err), "traceback": traceback.format_exc()[-3000:]}
    report["stderr"] = stderr.getvalue()[-4000:]
    report["warnings"] = [str(w.message) for w in caught if "rnn_lightning" in (w.filename or "")
                          or Path(w.filename or "/").resolve().is_relative_to(PACKAGE)]
    conn.send(report)
    conn.close()


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def verdict(item: Case, report: dict[str, Any]) -> tuple[str, str]:
    """(what it gets now, verdict) of a case's report."""
    is_cli = getattr(item.run, "cli", False)
    if report["outcome"] == "timeout":
        return f"still running after {report['limit']} s", "HANGS"
    if report["outcome"] == "returned":
        if report["correct"]:
            return f"returns {report['result']}", "correct (by design)"
        warned = "; ".join(report["warnings"])
        return ("returned" + (f" (warned: {warned})" if warned else "")), "accepted silently"
    if report["outcome"] == "exit":
        line = last_line(report["stderr"])
        got = f"CLI: {line} (exit {report['code']})"
        clear = report["code"] == 2 and "error:" in line and "Traceback" not in report["stderr"]
    else:
        line = last_line(report["message"])
        got = f"{'CLI traceback: ' if is_cli else ''}{report['type']}: {line}"
        clear = not is_cli and report["ours"]
    named = all(name.lower() in line.lower() for name in item.names)
    return got, "clear" if clear and named else "unclear"


def run_case(item: Case, ctx: Context, limit: float) -> dict[str, Any]:
    fork = multiprocessing.get_context("fork")
    receive, send = fork.Pipe(duplex=False)
    process = fork.Process(target=_child, args=(item, ctx, send), daemon=True)
    process.start()
    send.close()
    report = {"outcome": "timeout", "limit": limit}
    if receive.poll(limit):
        try:
            report = receive.recv()
        except EOFError:
            report = {"outcome": "raised", "type": "crash", "message": f"child died (exit {process.exitcode})",
                      "ours": False}
    process.join(5)
    if process.is_alive():
        process.kill()
        process.join()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="write bad_inputs.json (the table's rows) to this folder")
    parser.add_argument("--only", default=None, help="run only the cases whose name or entry point holds this")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per case before it HANGS")
    args = parser.parse_args(argv)
    os.chdir(Path(__file__).resolve().parent.parent)  # the CLI cases name recipes/ relative to the repository
    cases = [c for c in CASES if args.only is None or args.only in c.name or args.only in c.entry]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        logging.disable(logging.WARNING)
        with contextlib.redirect_stderr(io.StringIO()):
            ctx = Context(Path(tmp))
        for i, item in enumerate(cases, 1):
            report = run_case(item, ctx, args.timeout)
            got, ruling = verdict(item, report)
            got = got.replace(tmp, "TMP").replace("|", "\\|").replace("\n", " ")
            rows.append({"#": i, "case": item.name, "entry point": item.entry,
                         "what it gets now": got if len(got) <= 160 else got[:157] + "...", "verdict": ruling})
            print(f"[{i}/{len(cases)}] {ruling}: {item.name}", file=sys.stderr, flush=True)
            if ruling != "clear":  # what to look at
                print((report.get("traceback") or report.get("stderr", "")).replace(tmp, "TMP"), file=sys.stderr)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    print(f"\n{len(rows)} bad inputs across {len({r['entry point'] for r in rows})} entry points: "
          + ", ".join(f"{n} {v}" for v, n in counts.items()))
    print("\n| # | case | entry point | what it gets now | verdict |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['#']} | {r['case']} | {r['entry point']} | {r['what it gets now']} | {r['verdict']} |")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"{NAME}.json").write_text(json.dumps({"counts": counts, "rows": rows}, indent=2))
    return 0 if counts["clear"] + counts["correct (by design)"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
