"""GenerateSamples: sample text from the language model at the end of each validation."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from rnn_lightning.nn.sampling import check_sampling


class GenerateSamples(L.Callback):
    """After each validation, print samples and log them to W&B as a table (epoch, step, prompt, sample).

    Sampling uses its own seeded generator, so it leaves the training random streams untouched.

    Args:
        prompts: texts to continue; ``None`` (YAML ``null``) means one fresh line from ``<bos>``.
        max_new_tokens: most tokens per sample.
        temperature: softmax temperature.
        top_k: sample among the k most likely tokens.
        top_p: nucleus sampling mass.
        seed: seed of the sampling generator.
        stop_at_eos: stop each sample at the end of its line; ``False`` samples over several lines.
    """

    def __init__(
        self,
        prompts: list[str | None] | None = None,
        *,
        max_new_tokens: int = 30,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        stop_at_eos: bool = True,
    ) -> None:
        check_sampling(max_new_tokens, temperature, top_k, top_p)  # at construction, not after the first epoch
        if prompts is not None and (isinstance(prompts, str) or not isinstance(prompts, list | tuple)
                                    or not all(p is None or isinstance(p, str) for p in prompts)):
            raise TypeError(f"`prompts` must be a list of prompts (strings, or None to start from <bos>), got "
                            f"{type(prompts).__name__} {prompts!r:.60}. Wrap a single prompt in a list: ['the'].")
        self.prompts = list(prompts) if prompts else [None]
        self.kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           stop_at_eos=stop_at_eos)
        self.seed = seed
        self.rows: list[list] = []

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "tokenizer", None) is None:
            return
        for prompt in self.prompts:
            text = pl_module.generate(prompt, seed=self.seed, **self.kwargs)
            self.rows.append([trainer.current_epoch, trainer.global_step, prompt or "", text])
            print(f"[sample epoch {trainer.current_epoch}] {prompt or '<bos>'} -> {text}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(key="samples", columns=["epoch", "step", "prompt", "sample"], data=self.rows)
