"""The ``rnn-lightning`` command: LightningCLI (fit / validate / test / predict) plus ``generate``, ``score`` and
``export``.

    rnn-lightning fit -c recipes/quickstart.yaml
    rnn-lightning generate --ckpt_path last.ckpt --prompt "the" --max_new_tokens 40
    rnn-lightning score --ckpt_path last.ckpt sentences.txt --output scores.jsonl
    rnn-lightning export --ckpt_path last.ckpt --output exported/

Bad input (a ``ValueError``/``TypeError`` that rnn_lightning raises itself, such as a malformed CoNLL line, or the
``FloatingPointError`` of a run stopped because it diverged) ends the command with ``error: <message>`` on stderr and
exit status 2, without a traceback; set the environment
variable ``RNN_LIGHTNING_TRACEBACK=1`` to see the traceback. Any other exception (a bug) prints its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import lightning as L
from lightning.pytorch.cli import LightningCLI

from rnn_lightning.callbacks.predictions import json_line
from rnn_lightning.data.corpus import exception_chain, reencode_hint
from rnn_lightning.export import DEFAULT_OPSET, FORMATS, export
from rnn_lightning.nn.checks import check_output_file, check_output_folder
from rnn_lightning.tasks import LanguageModel, SequenceClassifier, SequenceTagger
from rnn_lightning.tasks.checkpoints import check_task, imported_class, read_hyperparameters
from rnn_lightning.tasks.common import RecurrentTask
from rnn_lightning.tasks.scoring import TextScore

# DataModule attribute -> task argument. A link whose source or target the chosen classes lack is skipped
# (a LanguageModel has no labels, a classifier no character vocabulary).
LINKS = (
    ("data.vocab_size", "model.init_args.vocab_size"),
    ("data.pad_id", "model.init_args.pad_id"),
    ("data.unk_id", "model.init_args.unk_id"),
    ("data.num_labels", "model.init_args.num_labels"),
    ("data.labels", "model.init_args.labels"),
    ("data.scheme", "model.init_args.span_scheme"),
    ("data.char_vocab", "model.init_args.char_vocab"),
    ("data.direction", "model.init_args.direction"),
)


TRACEBACK_ENV = "RNN_LIGHTNING_TRACEBACK"  # set to 1: bad-input errors show their traceback too
_PACKAGE = Path(__file__).resolve().parent  # rnn_lightning/


@runtime_checkable
class FitReport(Protocol):
    """A DataModule that has something to say after training defines ``fit_report``: ``rnn-lightning fit`` prints
    its lines below the final validation metrics (``MarkovCorpusDataModule``: the source's own perplexity)."""

    def fit_report(self) -> list[str]: ...


class RNNLightningCLI(LightningCLI):
    """LightningCLI whose model receives vocabulary size, pad id, and label set and scheme from the DataModule."""

    def add_arguments_to_parser(self, parser) -> None:
        for source, target in LINKS:
            parser.link_arguments(source, target, apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """Parse, then refuse a ``--ckpt_path`` that names no checkpoint, or one of another task than the recipe's
        model, before Lightning reads the checkpoint (it would fail with a traceback, or after loading the data)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else {}
        ckpt = config.get("ckpt_path")
        if isinstance(ckpt, str) and ckpt not in ("last", "best", "hpc") and not ckpt.startswith("registry"):
            model = imported_class((config.get("model") or {}).get("class_path") or "")
            check_ckpt_path(ckpt, model, weights_only=config.get("weights_only"))

    def before_fit(self) -> None:
        """A ``fast_dev_run`` smoke test writes no checkpoint. (Lightning 2.6's ``ModelCheckpoint(save_last=True)``
        saves ``last.ckpt`` when training ends even then: beside a real run's checkpoints, where ``--ckpt_path last``
        would pick up the one-step model.)"""
        if self.trainer.fast_dev_run:
            for callback in self.trainer.checkpoint_callbacks:
                callback.save_last = False

    def after_fit(self) -> None:
        """Print the final validation metrics, the DataModule's ``fit_report`` (see ``FitReport``) and a sample."""
        trainer, model, data = self.trainer, self.model, self.datamodule
        if not trainer.is_global_zero:
            return
        if "val/ppl" in trainer.callback_metrics:
            print(f"validation perplexity: {float(trainer.callback_metrics['val/ppl']):.3f}")
        else:
            final = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            if final:
                print("validation: " + ", ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in sorted(final.items())))
        if isinstance(data, FitReport):
            print("\n".join(data.fit_report()))
        if isinstance(model, LanguageModel) and model.tokenizer is not None:
            print(f"sample: {model.generate(max_new_tokens=40, seed=0)}")


def generate(argv: list[str] | None = None) -> list[str]:
    """``rnn-lightning generate``: sample text from a checkpoint alone (it carries its tokenizer)."""
    parser = argparse.ArgumentParser(prog="rnn-lightning generate", description=generate.__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `rnn-lightning fit`")
    parser.add_argument("--prompt", default=None, help="text to continue (default: start from <bos>)")
    parser.add_argument("--max_new_tokens", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--multiline", action="store_true", help="go on past <eos> over several lines")
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error(f"--num_samples must be >= 1, got {args.num_samples}: that asks for no sample. Pass e.g. 3.")
    check_ckpt_path(args.ckpt_path, LanguageModel)
    model = LanguageModel.load_from_checkpoint(args.ckpt_path, map_location=args.device)
    samples = []
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        text = model.generate(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, greedy=args.greedy, seed=seed,
                              stop_at_eos=not args.multiline)
        samples.append(text)
        if not args.prompt:
            print(text)
        else:  # a backward model writes what precedes the prompt
            print(f"{text} {args.prompt}" if model.hparams.direction == "backward" else f"{args.prompt} {text}")
    return samples


def score(argv: list[str] | None = None) -> list[TextScore]:
    """``rnn-lightning score``: each line of a text file scored by a language model checkpoint, one JSON line each
    (``text``, ``tokens``, ``log_probs``, ``total_log_prob``, ``num_tokens``, ``perplexity``)."""
    parser = argparse.ArgumentParser(prog="rnn-lightning score", description=score.__doc__)
    parser.add_argument("file", help="UTF-8 text file, one line to score per line (read as the `text` builder does)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `rnn-lightning fit`")
    parser.add_argument("--carry_state", action="store_true",
                        help="read the lines in order as one text, as the DataModule's stream (default: each alone)")
    parser.add_argument("--batch_size", type=int, default=16, help="lines per forward pass")
    parser.add_argument("--output", default=None, help="JSON lines file to write (default: standard output)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    path = Path(args.file)
    if not path.is_file():
        parser.error(f"FILE {args.file!r} {'is a folder' if path.is_dir() else 'does not exist'}: give a text file "
                     "with one line to score per line.")
    try:  # text mode splits lines as the `text` builder of `datasets` does: on \n, \r\n and \r
        with path.open(encoding="utf-8") as f:
            lines = [line.removesuffix("\n") for line in f]
    except UnicodeDecodeError as err:
        parser.error(f"FILE {args.file!r} is not valid UTF-8 (byte offset {err.start}). {reencode_hint(path)}")
    if args.output is not None:  # before the checkpoint is loaded
        check_output_file(args.output, "`--output`", contents="the scores")
    check_ckpt_path(args.ckpt_path, LanguageModel)
    model = LanguageModel.load_from_checkpoint(args.ckpt_path, map_location=args.device)
    scores = model.score(lines, carry_state=args.carry_state, batch_size=args.batch_size)
    records = "".join(json_line({"text": text, **dataclasses.asdict(s)}) for text, s in zip(lines, scores))
    if args.output is None:
        sys.stdout.write(records)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(records, encoding="utf-8")
    return scores


def export_checkpoint(argv: list[str] | None = None) -> dict:
    """``rnn-lightning export``: write a checkpoint's model as TorchScript and ONNX, with its tokenizer, labels and a
    manifest (``export.json``) beside them (see :func:`rnn_lightning.export.export`)."""
    parser = argparse.ArgumentParser(prog="rnn-lightning export", description=export_checkpoint.__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `rnn-lightning fit`")
    parser.add_argument("--output", required=True, help="folder to write the exported files into")
    parser.add_argument("--format", choices=FORMATS, default=None, help="one format only (default: both)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    args = parser.parse_args(argv)
    check_output_folder(args.output, "`--output`")  # before the checkpoint is loaded
    model = checkpoint_task(args.ckpt_path).load_from_checkpoint(args.ckpt_path, map_location="cpu")
    manifest = export(model, args.output, formats=args.format or FORMATS, opset=args.opset)
    print(f"wrote {', '.join(sorted(manifest['files'].values()))} and export.json to {args.output}")
    return manifest


def checkpoint_task(ckpt_path: str) -> type[RecurrentTask]:
    """The task (tagger, classifier or language model) whose checkpoint ``ckpt_path`` is; a ``ValueError`` naming
    ``--ckpt_path`` for a file that is no checkpoint or one of no rnn_lightning task."""
    tasks = (SequenceTagger, SequenceClassifier, LanguageModel)
    hparams = read_hyperparameters(ckpt_path, arg="`--ckpt_path`") or {}
    for task in tasks:
        try:
            check_task(task, ckpt_path, base=RecurrentTask, arg="`--ckpt_path`")
        except ValueError:
            continue
        if "vocab_size" in hparams:
            return task
    raise ValueError(
        f"`--ckpt_path` {ckpt_path!r} is a Lightning checkpoint of no rnn_lightning task (a SequenceTagger, "
        f"SequenceClassifier or LanguageModel; its class: {hparams.get('_class_path') or 'not recorded'}). Point "
        "`--ckpt_path` at a checkpoint written by `rnn-lightning fit` with one of those tasks."
    )


def check_ckpt_path(ckpt_path: str, task: type | None, *, weights_only: bool | None = None) -> None:
    """Refuse a ``--ckpt_path`` that names no checkpoint, or one of another task than ``task`` (the rules and messages
    of :mod:`rnn_lightning.tasks.checkpoints`, naming the command's argument and advice)."""
    if task is None:  # a model class not imported here: only the file is checked
        read_hyperparameters(ckpt_path, arg="`--ckpt_path`", weights_only=weights_only)
        return
    check_task(task, ckpt_path, base=RecurrentTask, arg="`--ckpt_path`", weights_only=weights_only,
               advice=f"Point `--ckpt_path` at a {task.__name__} checkpoint, or use the recipe the checkpoint was "
                      "trained with.")


def bad_input(err: BaseException) -> BaseException | None:
    """The bad-input error rnn_lightning itself raised in ``err``'s chain (``err`` or what it wraps, e.g. a
    jsonargparse error around a DataModule's ``ValueError``): a ``ValueError``/``TypeError``, or the divergence stop's
    ``FloatingPointError`` (settings that cannot train), whose innermost frame is rnn_lightning code. ``None`` for
    anything else (one raised inside torch or Lightning is a bug to show)."""
    for cause in exception_chain(err):
        if isinstance(cause, (ValueError, TypeError, FloatingPointError)) and cause.__traceback__ is not None:
            tb = cause.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            if Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE):
                return cause
    return None


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``rnn-lightning`` console script."""
    argv = sys.argv[1:] if args is None else args
    # on a checkpoint alone, beside LightningCLI's subcommands
    commands = {"generate": generate, "score": score, "export": export_checkpoint}
    try:
        if argv and argv[0] in commands:
            commands[argv[0]](argv[1:])
            return
        RNNLightningCLI(
            RecurrentTask,  # any rnn_lightning task, or a subclass of one
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except Exception as err:
        ours = bad_input(err)
        if ours is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"(bad input: set {TRACEBACK_ENV}=1 to see the traceback)\nerror: {ours}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
