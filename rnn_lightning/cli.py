"""The ``rnn-lightning`` command: LightningCLI (fit / validate / test / predict) plus ``generate``.

    rnn-lightning fit -c recipes/quickstart.yaml
    rnn-lightning generate --ckpt_path last.ckpt --prompt "the" --max_new_tokens 40
"""

from __future__ import annotations

import argparse
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI

from rnn_lightning.tasks import LanguageModel
from rnn_lightning.tasks.common import RecurrentTask

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
)


class RNNLightningCLI(LightningCLI):
    """LightningCLI whose model receives vocabulary size, pad id, and label set and scheme from the DataModule."""

    def add_arguments_to_parser(self, parser) -> None:
        for source, target in LINKS:
            parser.link_arguments(source, target, apply_on="instantiate")

    def before_fit(self) -> None:
        """A ``fast_dev_run`` smoke test writes no checkpoint. (Lightning 2.6's ``ModelCheckpoint(save_last=True)``
        saves ``last.ckpt`` when training ends even then: beside a real run's checkpoints, where ``--ckpt_path last``
        would pick up the one-step model.)"""
        if self.trainer.fast_dev_run:
            for callback in self.trainer.checkpoint_callbacks:
                callback.save_last = False

    def after_fit(self) -> None:
        """Print the final validation metrics (perplexity: also the source's, for a synthetic corpus) and a sample."""
        trainer, model, data = self.trainer, self.model, self.datamodule
        if not trainer.is_global_zero:
            return
        if "val/ppl" not in trainer.callback_metrics:
            final = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            if final:
                print("validation: " + ", ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in sorted(final.items())))
            return
        print(f"validation perplexity: {float(trainer.callback_metrics['val/ppl']):.3f}")
        reference = getattr(data, "reference_perplexity", None)
        if callable(reference):
            print(f"source perplexity on the same validation tokens: {reference('validation'):.3f} "
                  f"(entropy rate: {data.source.perplexity():.3f})")
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
    model = LanguageModel.load_from_checkpoint(args.ckpt_path, map_location=args.device)
    samples = []
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        text = model.generate(args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                              args.greedy, seed, stop_at_eos=not args.multiline)
        samples.append(text)
        print(f"{args.prompt} {text}" if args.prompt else text)
    return samples


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``rnn-lightning`` console script."""
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] == "generate":
        generate(argv[1:])
        return
    RNNLightningCLI(
        RecurrentTask,  # any rnn_lightning task, or a subclass of one
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
