"""A task's ``pretrained_embeddings``: word vectors copied into its embedding table when a fresh fit starts."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_info
from tokenizers import Tokenizer
from torch import nn

from rnn_lightning.nn.pretrained import load_word_vectors


class PretrainedEmbeddings:
    """The vectors file ``path`` (GloVe / word2vec / fastText text, ``.gz`` too; ``None``: none), loaded once.

    Each vocabulary word the file lists takes its vector (a word missing in its own case takes its lower case's);
    the file's dimension must be the model's ``embedding_dim``. A resumed fit skips the file: the checkpoint holds
    the trained embeddings.
    """

    def __init__(self, path: str | None) -> None:
        self.path, self.loaded = path, False

    def fill(self, embedding: nn.Embedding, *, tokenizer: Tokenizer | None, resumed: bool) -> None:
        """Copy the vectors into ``embedding``, whose rows are ``tokenizer``'s ids, unless done or ``resumed``."""
        if not self.path or self.loaded or resumed:
            return
        if tokenizer is None:
            raise RuntimeError(
                "`pretrained_embeddings` maps vectors to vocabulary rows, so it needs the vocabulary: train with one "
                "of rnn_lightning's DataModules (or set `model.tokenizer`)."
            )
        coverage = load_word_vectors(embedding, tokenizer.get_vocab(), self.path)
        rank_zero_info(f"pretrained embeddings from {self.path}: {coverage}")
        self.loaded = True
