"""Gradual unfreezing (ULMFiT, Howard & Ruder 2018): the first epoch trains only the top layer group, each later epoch
one more group down, until the whole network trains; fine-tuning then forgets less of what a pretrained encoder knew."""

from __future__ import annotations

import lightning as L


class GradualUnfreezing(L.Callback):
    """In epoch ``e`` (from 0) only the top ``e + 1`` of the task's ``layer_groups()`` (bottom first: input layer,
    each recurrent layer, head) get gradients; the others are frozen (``requires_grad=False``, so the optimizer
    leaves them alone). Everything trains again once the fit ends.

    Combine with the task's ``discriminative_lr`` and :class:`~rnn_lightning.SlantedTriangularLR` for ULMFiT's
    classifier fine-tuning. Under DDP, frozen parameters get no gradient: use the strategy
    ``ddp_find_unused_parameters_true``.

    Example:
        >>> from rnn_lightning import SequenceClassifier
        >>> model, callback = SequenceClassifier(20, 2, num_layers=2), GradualUnfreezing()
        >>> callback.apply(model, epoch=0)
        >>> [all(p.requires_grad for p in group) for group in model.layer_groups()]
        [False, False, False, True]
    """

    def apply(self, pl_module: L.LightningModule, *, epoch: int) -> None:
        """Freeze ``pl_module``'s layer groups below the top ``epoch + 1``."""
        for depth, group in enumerate(reversed(pl_module.layer_groups())):
            for param in group:
                param.requires_grad_(depth <= epoch)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(pl_module, epoch=trainer.current_epoch)  # a run resumed mid-epoch skips the epoch-start hook

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(pl_module, epoch=trainer.current_epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for param in pl_module.parameters():
            param.requires_grad_(True)
