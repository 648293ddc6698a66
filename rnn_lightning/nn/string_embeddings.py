"""Contextual string embeddings (Akbik et al. 2018, flair's ``FlairEmbeddings``): each word of a sentence as the states
of a forward and a backward character language model that read the whole sentence.

The sentence is its words joined by single spaces, read as the language models read a line of their training text:
``<bos>`` then the characters (the forward model left to right, the backward model right to left, as its
``direction="backward"`` DataModule served it). A word is the forward model's output after its last character (it has
read the sentence up to the end of the word) joined to the backward model's output after its first character (it has
read the sentence from its end back to the start of the word): flair's offsets with ``with_whitespace=False``, the
paper's definition. Flair frames the sentence with ``"\\n"`` and ``" "`` instead; ``<bos>`` is the start symbol our
character models were trained with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from rnn_lightning.constants import BOS, EOS, PAD, UNK
from rnn_lightning.nn.checks import check_flag
from rnn_lightning.nn.language_model import RNNLanguageModelNet

SPECIAL = (PAD, UNK, BOS, EOS)


def char_index(vocab: Sequence[str], lm: RNNLanguageModelNet, what: str) -> dict[str, int]:
    """``vocab`` (the tokens by id) as a lookup table, refused unless it is a character vocabulary of ``lm``'s size;
    errors call it ``what`` (e.g. the argument's name)."""
    if isinstance(vocab, str) or not all(isinstance(token, str) for token in vocab):
        raise TypeError(f"{what} must be a list of tokens (strings) in id order, got {vocab!r:.80}.")
    if len(vocab) != lm.vocab_size:
        raise ValueError(f"{what} has {len(vocab)} tokens but its language model predicts {lm.vocab_size}: give the "
                         "vocabulary the model was trained with (its tokenizer's, in id order).")
    words = [token for token in vocab if token not in SPECIAL and len(token) != 1]
    if words:
        raise ValueError(
            f"{what} is not a character vocabulary: it holds {words[:3]} ({len(words)} entries longer than one "
            "character), a word-level language model's. String embeddings read each sentence character by character: "
            "give language models trained with `tokenizer: char`."
        )
    missing = [token for token in (PAD, UNK, BOS, " ") if token not in vocab]
    if missing:
        raise ValueError(f"{what} lacks {missing}: a character language model of rnn_lightning has <pad>, <unk>, "
                         "<bos>, and the space its words are joined with. Train it on text with spaces.")
    return {token: i for i, token in enumerate(vocab)}


class ContextualStringEmbeddings(nn.Module):
    """Sentences (word lists) -> per-word features (B, W, H_fwd + H_bwd) from a forward and a backward character LM.

    Each language model runs once over the batch of sentence strings (right-padded; a left-to-right model's outputs
    never see the padding), and each word's two states are gathered from those runs (see the module's docstring).

    Args:
        forward_lm: the character language model that reads left to right.
        backward_lm: the one that reads right to left (trained with ``direction="backward"``).
        forward_vocab: ``forward_lm``'s tokens in id order (its tokenizer's vocabulary); characters it lacks read as
            ``<unk>``.
        backward_vocab: ``backward_lm``'s tokens in id order.
        trainable: fine-tune the language models with the model that reads the features; ``False`` (frozen): no
            gradient reaches them, and they stay in eval mode (no dropout) whatever mode the model is in.
        cache: keep each sentence's features once computed (frozen models only: they never change), so later epochs
            run the language models only on sentences not seen yet (as flair's embedding storage does). The cache
            grows with the distinct sentences read (``output_dim`` floats per word) and is emptied when weights
            are loaded or the module moves to another device or dtype.

    Example:
        >>> from rnn_lightning.nn import EncoderConfig
        >>> vocab = ["<pad>", "<unk>", "<bos>", "<eos>", " ", "a", "b"]
        >>> lm = lambda: RNNLanguageModelNet(7, encoder=EncoderConfig(embedding_dim=4, hidden_size=5))
        >>> strings = ContextualStringEmbeddings(lm(), lm(), forward_vocab=vocab, backward_vocab=vocab)
        >>> tuple(strings([["ab", "a"], ["b"]]).shape), strings.output_dim
        ((2, 2, 10), 10)
    """

    def __init__(
        self,
        forward_lm: RNNLanguageModelNet,
        backward_lm: RNNLanguageModelNet,
        *,
        forward_vocab: Sequence[str],
        backward_vocab: Sequence[str],
        trainable: bool = False,
        cache: bool = False,
    ) -> None:
        super().__init__()
        for arg, lm in (("forward_lm", forward_lm), ("backward_lm", backward_lm)):
            if not isinstance(lm, RNNLanguageModelNet):
                raise TypeError(f"`{arg}` must be an RNNLanguageModelNet (a LanguageModel's `net`), got "
                                f"{type(lm).__name__}.")
        self.forward_lm, self.backward_lm = forward_lm, backward_lm
        self.trainable = check_flag("trainable", trainable)
        if check_flag("cache", cache) and trainable:
            raise ValueError("`cache=True` keeps features of frozen language models, but `trainable=True` changes them "
                             "at every step: give one of the two.")
        self.cache: dict[tuple[str, ...], Tensor] | None = {} if cache else None
        self._cached_as: tuple[torch.device, torch.dtype] | None = None  # the models' device and dtype it was made with
        self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.clear_cache())
        self.indexes = (char_index(forward_vocab, forward_lm, "`forward_vocab`"),
                        char_index(backward_vocab, backward_lm, "`backward_vocab`"))
        self.output_dim = forward_lm.config.output_dim + backward_lm.config.output_dim
        if not trainable:
            self.requires_grad_(False)
            self.train(False)

    def clear_cache(self) -> None:
        """Forget the cached features (e.g. after changing the language models' weights by hand)."""
        if self.cache is not None:
            self.cache.clear()

    def train(self, mode: bool = True) -> ContextualStringEmbeddings:
        """Frozen language models stay in eval mode (their dropout off) when the model around them trains."""
        return super().train(mode and self.trainable)

    def encode(self, sentences: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The sentences as the two models read them: forward ids (B, S) and each word's forward position (B, W),
        backward ids (B, S) and positions (B, W), and the words' mask (B, W); on the models' device.

        A sentence of n characters is ``<bos>`` then its n characters (reversed for the backward model), padded with
        ``<pad>``; word i, at characters [a, e), is read at position e by the forward model and n - a by the backward
        model (padded words at 0, masked)."""
        num_words = max((len(words) for words in sentences), default=0)
        rows = ([], [])  # per model: each sentence's ids
        positions = torch.zeros(2, len(sentences), num_words, dtype=torch.long)  # (2, B, W)
        for b, words in enumerate(sentences):
            text = " ".join(words)
            for model, (index, flip) in enumerate(zip(self.indexes, (False, True), strict=True)):
                unk = index[UNK]
                chars = text[::-1] if flip else text
                rows[model].append([index[BOS], *(index.get(c, unk) for c in chars)])
            start = 0
            for i, word in enumerate(words):
                positions[0, b, i] = start + len(word)  # after the word's last character
                positions[1, b, i] = len(text) - start  # (reading backwards) after its first character
                start += len(word) + 1
        device = self.forward_lm.decoder.weight.device
        ids = [_pad(rows[model], index[PAD]).to(device) for model, index in enumerate(self.indexes)]
        lengths = torch.tensor([len(words) for words in sentences])
        mask = torch.arange(num_words) < lengths[:, None]  # (B, W)
        return ids[0], positions[0].to(device), ids[1], positions[1].to(device), mask.to(device)

    def forward(self, sentences: Sequence[Sequence[str]]) -> Tensor:
        """Word lists (B of them) -> features (B, W, H_fwd + H_bwd), W the longest sentence; zeros at padded words."""
        if self.cache is None:
            return self.compute(sentences)
        weight = self.forward_lm.decoder.weight
        if self._cached_as != (weight.device, weight.dtype):  # moved or cast: features change with the models
            self.clear_cache()
            self._cached_as = (weight.device, weight.dtype)
        keys = [tuple(words) for words in sentences]
        new = list(dict.fromkeys(key for key in keys if key not in self.cache))  # distinct, in order
        if new:
            for key, features in zip(new, self.compute(new), strict=True):  # features (W_new, H)
                self.cache[key] = features[: len(key)].clone()  # its own words only, not the padded batch
        if not keys:
            return self.compute(sentences)  # (0, 0, H)
        return pad_sequence([self.cache[key] for key in keys], batch_first=True)  # (B, W, H_fwd + H_bwd), zeros

    def compute(self, sentences: Sequence[Sequence[str]]) -> Tensor:
        """The features of :meth:`forward`, always computed by running the two language models."""
        forward_ids, forward_at, backward_ids, backward_at, mask = self.encode(sentences)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            features = [_gather(lm.features(ids)[0], at)  # (B, S, H) -> (B, W, H)
                        for lm, ids, at in ((self.forward_lm, forward_ids, forward_at),
                                            (self.backward_lm, backward_ids, backward_at))]
        return torch.cat(features, dim=-1) * mask[..., None]  # (B, W, H_fwd + H_bwd)


def _pad(rows: list[list[int]], pad_id: int) -> Tensor:
    """Id lists -> (B, S) right-padded with ``pad_id``."""
    out = torch.full((len(rows), max(map(len, rows), default=1)), pad_id, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(row)
    return out


def _gather(states: Tensor, at: Tensor) -> Tensor:
    """states (B, S, H), positions (B, W) -> the states at those positions (B, W, H)."""
    return states.gather(1, at[..., None].expand(-1, -1, states.shape[-1]))
