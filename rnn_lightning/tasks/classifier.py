"""SequenceClassifier: one label per text from a pooled RNN summary (final state, mean, max or all three)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from rnn_lightning.nn.checks import check_flag
from rnn_lightning.nn.classifier import SequenceClassifierNet
from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.encoder import Cell, Connection
from rnn_lightning.nn.pooling import Pooling
from rnn_lightning.tasks.confidences import Classification
from rnn_lightning.tasks.labeled import LabeledSequenceTask
from rnn_lightning.tasks.lm_init import LanguageModelInit
from rnn_lightning.tasks.optimizers import default_optimizer
from rnn_lightning.tasks.string_embeddings import LanguageModelSettings, task_string_embeddings
from rnn_lightning.tasks.words import split_texts


class SequenceClassifier(LabeledSequenceTask):
    """Text classification (sentiment, topic) with cross-entropy over the batch's texts.

    Logs ``train/loss`` and, for validation and test, ``loss``, ``acc`` (accuracy) and ``f1_macro``, each summed
    over all processes with every text counted once.

    Args:
        vocab_size: number of token ids (linked from the DataModule by the CLI).
        num_labels: number of classes (linked).
        pad_id: padding id (linked).
        labels: class names in id order (linked); stored in the checkpoint, used by :meth:`classify`.
        unk_id: ``<unk>`` id (linked).
        embedding_dim: token embedding size.
        hidden_size: recurrent state size per direction.
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        bidirectional: read each text in both directions.
        dropout: dropout on embeddings, between layers and before the classifier.
        connection: how stacked layers join: ``"none"``, ``"residual"``, ``"dense"`` or ``"highway"``.
        pretrained_embeddings: a GloVe / word2vec / fastText text file whose vectors initialise the word embeddings
            (see :class:`~rnn_lightning.tasks.pretrained.PretrainedEmbeddings`).
        word_dropout: in training, replace each token by ``<unk>`` with this probability.
        forget_bias: initial forget-gate bias of an LSTM (``None``: torch's); 1 or more for long-range memory.
        pooling: ``"final"`` state (each direction's), ``"mean"`` / ``"max"`` over all steps' states, or ``"concat"``:
            the three side by side (ULMFiT's concat pooling).
        lm_checkpoints: a forward and a backward character :class:`~rnn_lightning.LanguageModel` checkpoint: their
            contextual string embeddings join each word's embedding, as :class:`~rnn_lightning.SequenceTagger`'s
            (the DataModule's ``serve_words: true``; the checkpoint then carries the LMs).
        string_embeddings_trainable: fine-tune the language models (``False``: frozen).
        string_embeddings_cache: keep each sentence's string embeddings once computed (frozen language models
            only), as :class:`~rnn_lightning.SequenceTagger`'s.
        lm_settings: filled in from ``lm_checkpoints`` and saved in the checkpoint (leave it ``None``).
        init_from_lm: a word :class:`~rnn_lightning.LanguageModel` checkpoint whose embedding and recurrent weights a
            fresh ``fit`` starts from (ULMFiT, Howard & Ruder 2018): the same ``cell``, sizes, ``num_layers`` and
            ``connection``, ``bidirectional: false``. Embedding rows are copied by word; the words the LM lacks keep
            their random rows and are reported (:attr:`lm_missing_words`). Copied once; the classifier's checkpoint
            then holds the weights (no LM file needed to load it). Not saved as a hyperparameter.
        discriminative_lr: train each layer group (embedding, each recurrent layer, the head) at the rate of the group
            above divided by this (ULMFiT: 2.6): the head at the optimizer's lr, the layer below at lr / 2.6, ...
            ``None``: one rate.
        optimizer: optimizer factory (YAML ``class_path`` + ``init_args``); default Adam lr 1e-3.
        lr_scheduler: optional LR scheduler factory; ``ReduceLROnPlateau`` watches ``val/loss``.

    The encoder settings (``embedding_dim`` to ``forget_bias``, ``pad_id``, ``unk_id``) are those of
    :class:`~rnn_lightning.nn.EncoderConfig`, documented there.

    Example:
        >>> model = SequenceClassifier(vocab_size=20, num_labels=2, pooling="mean")
        >>> tuple(model(torch.randint(1, 20, (3, 7)), torch.tensor([7, 2, 4])).shape)
        (3, 2)
    """

    pipeline_tag = "text-classification"

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        *,
        pad_id: int = 0,
        labels: list[str] | None = None,
        unk_id: int = 1,
        embedding_dim: int = 100,
        hidden_size: int = 150,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
        connection: Connection = "none",
        pretrained_embeddings: str | None = None,
        word_dropout: float = 0.0,
        forget_bias: float | None = None,
        pooling: Pooling = "final",
        lm_checkpoints: list[str] | None = None,
        string_embeddings_trainable: bool = False,
        string_embeddings_cache: bool = False,
        lm_settings: dict[str, LanguageModelSettings] | None = None,
        init_from_lm: str | None = None,
        discriminative_lr: float | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(num_labels=num_labels, labels=labels, char_vocab=None,
                         pretrained_embeddings=pretrained_embeddings, optimizer=optimizer, lr_scheduler=lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "char_vocab", "init_from_lm"])  # char_vocab:
        # the base's, not ours; init_from_lm: its weights are in the checkpoint, a loaded model needs no LM file
        if init_from_lm is not None and pretrained_embeddings is not None:
            raise ValueError("`init_from_lm` and `pretrained_embeddings` both fill the word embeddings: give one.")
        self.lm_init = LanguageModelInit(init_from_lm)
        encoder = EncoderConfig.from_settings(self.hparams)
        self.net = SequenceClassifierNet(vocab_size, num_labels, encoder=encoder, pooling=pooling,
                                         strings=task_string_embeddings(self.hparams))
        self.metrics = torch.nn.ModuleDict({
            stage: torch.nn.ModuleDict({
                "loss": MeanMetric(),
                "acc": MulticlassAccuracy(num_labels, average="micro"),
                "f1_macro": MulticlassF1Score(num_labels, average="macro"),
            })
            for stage in ("val", "test")
        })

    @property
    def lm_missing_words(self) -> list[str] | None:
        """The vocabulary words ``init_from_lm``'s language model lacks (``None`` until it is copied)."""
        return self.lm_init.missing

    def on_fit_start(self) -> None:
        super().on_fit_start()
        resumed = self.trainer.ckpt_path is not None  # the checkpoint holds the trained weights
        self.lm_init.fill(self.net.body, tokenizer=self.tokenizer, resumed=resumed)

    def _weights_loaded(self) -> None:
        super()._weights_loaded()
        self.lm_init.loaded = True  # saved weights are trained: a later fit must not overwrite them with the LM's

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.lm_init.loaded = True  # the checkpoint's weights are this classifier's: never the LM's again

    def forward(self, tokens: Tensor, lengths: Tensor, words: list[list[str]] | None = None) -> Tensor:
        """tokens (B, T), lengths (B,), words (B lists of strings) with ``lm_checkpoints`` -> logits (B, C)."""
        return self.net(tokens, lengths, words=words)

    def _logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self(batch["tokens"], batch["lengths"], batch.get("words"))

    def word_embedding(self) -> torch.nn.Embedding:
        return self.net.body.embedding

    def last_step_losses(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) each text's loss: it reads the last step with ``pooling="final"`` (and each direction's last step
        when bidirectional), every step with ``"mean"`` / ``"max"``."""
        return F.cross_entropy(self._logits(batch).float(), batch["label"], reduction="none")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self._logits(batch).float(), batch["label"])
        self.log_train_loss(loss, batch_size=len(batch["label"]))
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        logits, target = self._logits(batch).float(), batch["label"]
        metrics = self.metrics[stage]
        metrics["loss"].update(F.cross_entropy(logits, target), weight=len(target))
        metrics["acc"].update(logits, target)
        metrics["f1_macro"].update(logits, target)

    def _eval_end(self, stage: str) -> None:
        metrics = self.metrics[stage]
        self.log_dict({f"{stage}/{name}": metric.compute() for name, metric in metrics.items()}, prog_bar=True)
        for metric in metrics.values():
            metric.reset()

    def predict_batch(
        self, batch: dict[str, Tensor], *, scores: bool = False, top_k: int | None = None
    ) -> list[str] | list[Classification]:
        """The predicted class name of each text of the batch; with ``scores`` each text's
        :class:`~rnn_lightning.tasks.confidences.Classification`: its class and every class's softmax probability."""
        if top_k is not None:
            raise ValueError(
                f"`top_k={top_k}` asks for the k best tag paths of a SequenceTagger with a CRF; a SequenceClassifier "
                "gives every class's probability instead: drop `top_k` and pass `scores=True`."
            )
        logits = self._logits(batch)  # (B, C)
        names = [self.labels[i] if self.labels is not None else str(i) for i in range(logits.shape[-1])]
        predicted = [names[i] for i in logits.argmax(-1).tolist()]
        if not scores:
            return predicted
        probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1).tolist()  # (B, C)
        return [Classification(label, dict(zip(names, row))) for label, row in zip(predicted, probs)]

    def classify(self, texts: list[str], *, return_probabilities: bool = False) -> list[str] | list[Classification]:
        """Classify whitespace-tokenized texts; returns one class name per text, or with ``return_probabilities`` a
        :class:`~rnn_lightning.tasks.confidences.Classification` (class and ``{label: probability}``) per text."""
        scores = check_flag("return_probabilities", return_probabilities)
        return self.predict_words(split_texts(texts, "texts"), "texts", scores=scores)
