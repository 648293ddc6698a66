"""What every task shares: optimizer wiring, the training-loss and gradient-norm logs, the NaN stop, the tokenizer."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer

from rnn_lightning.data.batching import HOST_KEYS, pad_batch
from rnn_lightning.data.characters import encode_chars
from rnn_lightning.nn.pretrained import load_word_vectors
from rnn_lightning.tasks.checkpoints import check_task, unreadable
from rnn_lightning.tasks.finite_guard import FiniteGradientGuard
from rnn_lightning.tasks.resume import ExactResume


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """Adam, lr 1e-3, fused where every parameter allows it (see :func:`can_fuse`)."""
    params = list(params)
    return torch.optim.Adam(params, lr=1e-3, fused=can_fuse(params))


def can_fuse(params: list[torch.Tensor]) -> bool:
    """Whether ``fused=True`` suits these parameters (plain floating-point tensors on the CPU or a CUDA GPU).

    A fused Adam updates each tensor in one vectorised pass instead of a pass per operation (17% faster epochs on
    the UD EWT tagging recipe, 1 CPU thread).
    """
    return bool(params) and all(
        type(p) in (torch.Tensor, torch.nn.Parameter) and p.is_floating_point() and p.device.type in ("cpu", "cuda")
        for p in params
    )


def configure(module: L.LightningModule) -> Any:
    """``configure_optimizers`` from the task's ``optimizer`` / ``lr_scheduler`` factories (YAML-configurable)."""
    optimizer = module.optimizer(module.parameters())
    if module.lr_scheduler is None:
        return optimizer
    scheduler = module.lr_scheduler(optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}


def host_reads_are_free(tensor: torch.Tensor) -> bool:
    """Whether reading ``tensor`` on the host costs no wait for a device (it lives in CPU memory)."""
    return tensor.device.type == "cpu"


def logging_step(module: L.LightningModule) -> bool:
    """Whether this step's logged values reach the loggers (every ``log_every_n_steps``), as Lightning decides."""
    connector = getattr(module.trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True)) or bool(module.trainer.fast_dev_run)


def split_texts(texts: Any, arg: str, token_lists: bool = False) -> list[list[str]]:
    """Each text of the list ``texts`` split on whitespace (taken as is if already a token list, where
    ``token_lists``); a TypeError naming ``arg`` for a bare string (which would be read one character per text) or
    for items of another type."""
    kinds = "strings (or lists of string tokens)" if token_lists else "strings"
    if isinstance(texts, (str, bytes, dict)) or not isinstance(texts, Iterable):  # a list, a datasets Column...
        raise TypeError(
            f"`{arg}` must be a list of {kinds}, got {type(texts).__name__} {texts!r:.60}. Wrap a single text in a "
            f"list: [text]."
        )
    words = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            words.append(text.split())
        elif token_lists and isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text):
            words.append(list(text))
        else:
            kind = "a string or a list of string tokens" if token_lists else "a string"
            raise TypeError(f"`{arg}[{i}]` must be {kind}, got {type(text).__name__} {text!r:.60}.")
    return words


class TokenizerInCheckpoint:
    """Mixin: take the DataModule's tokenizer at setup, store it as JSON text in checkpoints, restore it on load."""

    tokenizer: Tokenizer | None = None

    def _take_tokenizer(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "tokenizer"):
            self.tokenizer = datamodule.tokenizer

    def _save_tokenizer(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_str()

    def _load_tokenizer(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizer" not in checkpoint:
            return
        saved = Tokenizer.from_str(checkpoint["tokenizer"])
        if self.tokenizer is not None and self.tokenizer.get_vocab() != saved.get_vocab():
            ours, theirs = self.tokenizer.get_vocab_size(), saved.get_vocab_size()
            raise ValueError(
                f"the checkpoint's vocabulary ({theirs} tokens) differs from the DataModule's ({ours} tokens"
                f"{', same size but other ids' if ours == theirs else ''}): its weights would read the wrong rows. "
                "Use the data settings the checkpoint was trained with (same corpus, tokenizer, min_frequency, "
                "max_vocab_size), or save the checkpoint's tokenizer "
                "(`Task.load_from_checkpoint(path).tokenizer.save('tokenizer.json')`) and pass that file "
                "as the DataModule's `tokenizer`."
            )
        self.tokenizer = saved


class RecurrentTask(ExactResume, TokenizerInCheckpoint, L.LightningModule):
    """Base of the tasks: optimizer factories, gradient-norm log and divergence stop, tokenizer in the checkpoint, exact
    resume.

    Subclasses set ``self.optimizer`` and ``self.lr_scheduler``, and log their training loss with ``log_train_loss``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_loss: torch.Tensor | None = None
        self._finite_guard = FiniteGradientGuard()
        self._pretrained_loaded = False

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, with clear errors for a file that is no checkpoint and for another
        task's checkpoint (see :mod:`rnn_lightning.tasks.checkpoints`)."""
        check_task(cls, checkpoint_path, base=RecurrentTask)
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except (EOFError, pickle.UnpicklingError, RuntimeError) as error:
            clear = unreadable(checkpoint_path, error)
            if clear is None:
                raise
            raise clear from error

    def log_train_loss(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Log ``train/loss`` (mean over processes) to the loggers and the progress bar.

        On CPU at every step. On a GPU only on the steps whose values reach the loggers (``log_every_n_steps``),
        as a host copy: Lightning reads every progress-bar value on the host at every step, which for a GPU value
        waits for the whole step, and each ``self.log`` costs host time that small GPU steps cannot hide.
        """
        self._last_loss = loss = loss.detach()
        distributed = self.trainer.world_size > 1
        if host_reads_are_free(loss):
            self.log("train/loss", loss, prog_bar=True, sync_dist=distributed, **kwargs)
        elif logging_step(self):
            if distributed:
                loss = self.trainer.strategy.reduce(loss, reduce_op="mean")
            self.log("train/loss", loss.cpu(), prog_bar=True, **kwargs)

    def configure_optimizers(self) -> Any:
        return configure(self)

    # -- evaluation: a subclass accumulates its metrics in _eval_step and logs and resets them in _eval_end --
    def _eval_step(self, batch: Any, stage: str) -> None:
        raise NotImplementedError

    def _eval_end(self, stage: str) -> None:
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as configured, stop on a non-finite gradient or a diverged loss, log ``train/grad_norm`` (pre-clip).

        Lightning calls this on every optimizer step, after the gradients are final (DDP-reduced, unscaled) and
        before the step. Clipping by norm already computes the total norm, so the norm costs no extra pass; it is
        logged only on the steps whose values reach the loggers (a logged value costs host time every step).
        """
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        one_pass = isinstance(self.trainer.strategy, (SingleDeviceStrategy, DDPStrategy))  # not sharded (FSDP...)
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and one_pass:
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)  # returns the pre-clip total norm
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        logged = logging_step(self)
        self._finite_guard.check(self, norm, self._last_loss, self.uniform_loss(), logged=logged)
        if logged:
            self.log("train/grad_norm", norm)

    def uniform_loss(self) -> float | None:
        """The training loss of a uniform guess, ``log(num_labels)`` nats (per text for a classifier, per token for a
        tagger): the yardstick of the divergence stop (see :mod:`rnn_lightning.tasks.finite_guard`). ``None`` where
        the task has no ``num_labels``: then only a non-finite loss counts as diverged."""
        classes = self.hparams.get("num_labels")
        return math.log(classes) if isinstance(classes, int) and classes >= 2 else None

    def setup(self, stage: str) -> None:
        self._take_tokenizer()

    def on_fit_start(self) -> None:
        """Fill the word embeddings from ``pretrained_embeddings`` (a task argument) at the start of a fresh fit."""
        path = getattr(self, "pretrained_embeddings", None)
        if not path or self._pretrained_loaded or self.trainer.ckpt_path is not None:  # resumed: in the checkpoint
            return
        if self.tokenizer is None:
            raise RuntimeError(
                "`pretrained_embeddings` maps vectors to vocabulary rows, so it needs the vocabulary: train with one "
                "of rnn_lightning's DataModules (or set `model.tokenizer`)."
            )
        coverage = load_word_vectors(self.net.body.embedding, self.tokenizer.get_vocab(), path)
        rank_zero_info(f"pretrained embeddings from {path}: {coverage}")
        self._pretrained_loaded = True

    def on_train_epoch_end(self) -> None:
        self._finite_guard.resolve()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._finite_guard.resolve()  # never save weights a non-finite gradient may have reached
        self._save_tokenizer(checkpoint)
        self._save_resume(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._load_tokenizer(checkpoint)
        self._take_resume(checkpoint)
        saved = checkpoint.get("hyper_parameters", {}).get("labels")
        ours = getattr(self, "labels", None)
        if saved is not None and ours is not None and list(saved) != list(ours):
            raise ValueError(
                f"the checkpoint's labels {list(saved)} differ from this model's {list(ours)} (from the DataModule): "
                "its output rows would mean other labels. Use the data the checkpoint was trained with, or pass its "
                "label list as the DataModule's `labels`."
            )
        saved = checkpoint.get("hyper_parameters", {}).get("char_vocab")
        ours = getattr(self, "char_vocab", None)
        if saved is not None and ours is not None and list(saved) != list(ours):
            raise ValueError(
                f"the checkpoint's character vocabulary ({len(saved)} characters) differs from this model's "
                f"({len(ours)}, from the DataModule's train words): its character ids would mean other characters. "
                "Use the train split the checkpoint was trained with."
            )

    def encode_words(self, token_lists: list[list[str]], arg: str) -> dict[str, torch.Tensor]:
        """Word lists -> a batch on the model's device: ids ``tokens`` (B, T), ``lengths`` (B,, on the CPU), and
        ``chars`` (B, T, L) with ``char_lengths`` (B, T, on the CPU) when the model has a character vocabulary;
        with the tokenizer and characters it was trained with."""
        if self.tokenizer is None:
            raise RuntimeError(
                f"this {type(self).__name__} has no tokenizer: train it with one of rnn_lightning's DataModules or "
                "load it from a checkpoint saved by one."
            )
        empty = [i for i, tokens in enumerate(token_lists) if not tokens]
        if empty:
            raise ValueError(f"`{arg}` at positions {empty} are empty: each needs at least one token.")
        vocab, unk = self.tokenizer.get_vocab(), self.tokenizer.token_to_id("<unk>")
        char_vocab = getattr(self, "char_vocab", None)
        items = [
            {"tokens": [vocab.get(w, unk) for w in words],
             **({"chars": encode_chars(words, char_vocab)} if char_vocab is not None else {})}
            for words in token_lists
        ]
        batch = pad_batch(items, self.tokenizer.token_to_id("<pad>"))  # as the DataModules' loaders pad
        return {key: value if key in HOST_KEYS else value.to(self.device) for key, value in batch.items()}

    @torch.no_grad()
    def predict_words(self, token_lists: list[list[str]], arg: str) -> Any:
        """``predict_step`` on word lists, in eval mode (restored afterwards): what ``tag``/``classify`` return."""
        if not token_lists:
            return []  # no text, no prediction
        batch = self.encode_words(token_lists, arg)
        was_training = self.training
        self.eval()
        try:
            return self.predict_step(batch, 0)
        finally:
            self.train(was_training)
