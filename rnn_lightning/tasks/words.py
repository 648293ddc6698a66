"""Predicting from words (``tag``, ``classify``): word lists encoded as the DataModules' loaders encode them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from rnn_lightning.data.batching import HOST_KEYS, pad_batch
from rnn_lightning.data.characters import encode_chars


def split_texts(texts: Any, arg: str, token_lists: bool = False) -> list[list[str]]:
    """Each text of the list ``texts`` split on whitespace (taken as is if already a token list, where
    ``token_lists``); a TypeError naming ``arg`` for a bare string (which would be read one character per text) or
    for items of another type."""
    _check_list(texts, arg, "strings (or lists of string tokens)" if token_lists else "strings")
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


def check_texts(texts: Any, arg: str) -> list[str]:
    """The list ``texts`` of strings, taken as they are (a language model scores whole lines); a TypeError naming
    ``arg`` as :func:`split_texts` raises."""
    _check_list(texts, arg, "strings")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"`{arg}[{i}]` must be a string, got {type(text).__name__} {text!r:.60}.")
    return texts


def _check_list(texts: Any, arg: str, kinds: str) -> None:
    if isinstance(texts, (str, bytes, dict)) or not isinstance(texts, Iterable):  # a list, a datasets Column...
        raise TypeError(
            f"`{arg}` must be a list of {kinds}, got {type(texts).__name__} {texts!r:.60}. Wrap a single text in a "
            f"list: [text]."
        )


class PredictsFromWords:
    """Mixin for a task with a ``tokenizer`` (:class:`~rnn_lightning.tasks.tokenizer.TokenizerInCheckpoint`) and a
    ``predict_batch``: runs it on word lists, with the vocabularies the model was trained with, and as the
    ``predict_step`` of ``Trainer.predict``.

    ``prediction_options`` holds the keyword arguments ``predict_step`` passes to ``predict_batch`` (``scores``,
    ``top_k``); :class:`~rnn_lightning.callbacks.WritePredictions` sets them for a predict run, so the file holds
    what ``tag()`` / ``classify()`` return with the same options.
    """

    prediction_options: dict[str, Any] = {}  # never mutated: replaced as a whole

    def predict_batch(self, batch: dict[str, torch.Tensor], *, scores: bool = False, top_k: int | None = None) -> list:
        """Hook: one prediction per sequence of ``batch``; with ``scores`` (or ``top_k``) a record with confidences."""
        raise NotImplementedError

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list:
        """:meth:`predict_batch` with ``prediction_options``."""
        return self.predict_batch(batch, **self.prediction_options)

    def char_vocabulary(self) -> list[str] | None:
        """Hook: the character vocabulary when the model reads each word's characters (``None``: words only)."""
        return None

    def reads_words(self) -> bool:
        """Hook: whether the model reads the words themselves (a batch's ``"words"``, e.g. for string embeddings)."""
        return False

    def encode_words(self, token_lists: list[list[str]], arg: str) -> dict[str, torch.Tensor]:
        """Word lists -> a batch on the model's device: ids ``tokens`` (B, T), ``lengths`` (B,, on the CPU),
        ``chars`` (B, T, L) with ``char_lengths`` (B, T, on the CPU) when the model reads characters, and the
        ``words`` when it reads them. ``arg`` names the argument the lists came from, for errors."""
        if self.tokenizer is None:
            raise RuntimeError(
                f"this {type(self).__name__} has no tokenizer: train it with one of rnn_lightning's DataModules or "
                "load it from a checkpoint saved by one."
            )
        empty = [i for i, tokens in enumerate(token_lists) if not tokens]
        if empty:
            raise ValueError(f"`{arg}` at positions {empty} are empty: each needs at least one token.")
        vocab, unk = self.tokenizer.get_vocab(), self.tokenizer.token_to_id("<unk>")
        char_vocab = self.char_vocabulary()
        items = [
            {"tokens": [vocab.get(w, unk) for w in words],
             **({"chars": encode_chars(words, char_vocab)} if char_vocab is not None else {}),
             **({"words": words} if self.reads_words() else {})}
            for words in token_lists
        ]
        batch = pad_batch(items, self.tokenizer.token_to_id("<pad>"))  # as the DataModules' loaders pad
        return {key: value if key in HOST_KEYS else value.to(self.device) for key, value in batch.items()}

    @torch.no_grad()
    def predict_words(self, token_lists: list[list[str]], arg: str, **options: Any) -> list:
        """:meth:`predict_batch` on word lists with ``options``, in eval mode (restored afterwards): what
        ``tag``/``classify`` return."""
        if not token_lists:
            return []  # no text, no prediction
        batch = self.encode_words(token_lists, arg)
        was_training = self.training
        self.eval()
        try:
            return self.predict_batch(batch, **options)
        finally:
            self.train(was_training)
