"""LabeledSequenceTask: the base of the tagger and the classifier, whose inputs are words and outputs labels."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from rnn_lightning.nn.transfer import layer_groups
from rnn_lightning.tasks.common import RecurrentTask
from rnn_lightning.tasks.pretrained import PretrainedEmbeddings
from rnn_lightning.tasks.vocabularies import check_char_vocab, check_label_count, check_labels
from rnn_lightning.tasks.words import PredictsFromWords


class LabeledSequenceTask(PredictsFromWords, RecurrentTask):
    """Word sequences in, labels out: the label set and character vocabulary stored in (and checked against) the
    checkpoint, optional pretrained word vectors, prediction from word lists, and words counted as tokens.

    Args:
        num_labels: number of labels.
        labels: label names in id order (or ``None``).
        char_vocab: the character vocabulary when the model reads characters (or ``None``).
        pretrained_embeddings: a word-vectors file for :meth:`word_embedding` (see :class:`PretrainedEmbeddings`).
        optimizer, lr_scheduler: see :class:`RecurrentTask`.

    Subclasses implement :meth:`word_embedding`.
    """

    def __init__(
        self,
        *,
        num_labels: int,
        labels: list[str] | None,
        char_vocab: list[str] | None,
        pretrained_embeddings: str | None,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler)
        check_label_count(labels, num_labels)
        self.labels, self.char_vocab = labels, char_vocab
        self.pretrained = PretrainedEmbeddings(pretrained_embeddings)

    def word_embedding(self) -> nn.Embedding:
        """Hook: the word embedding table that ``pretrained_embeddings`` fills."""
        raise NotImplementedError

    def recurrent_encoder(self) -> nn.Module:
        return self.net.body.encoder

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """ULMFiT's layer groups, bottom first: the input layer, each recurrent layer, the head (see
        :func:`~rnn_lightning.nn.transfer.layer_groups`)."""
        return layer_groups(self, self.net.body, self.net.body.encoder)  # the task: a tagger keeps its CRF here

    def char_vocabulary(self) -> list[str] | None:
        return self.char_vocab

    def reads_words(self) -> bool:
        return self.net.body.strings is not None

    def count_tokens(self, batch: dict[str, Tensor]) -> Tensor:
        """The words of the batch's sequences."""
        return batch["lengths"].sum()

    def _weights_loaded(self) -> None:
        self.pretrained.loaded = True  # the saved embeddings are trained: a fit must not overwrite them with vectors

    def on_fit_start(self) -> None:
        resumed = self.trainer.ckpt_path is not None  # the checkpoint holds the trained embeddings
        self.pretrained.fill(self.word_embedding(), tokenizer=self.tokenizer, resumed=resumed)

    def _check_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_labels(checkpoint, self.labels)
        check_char_vocab(checkpoint, self.char_vocab)
