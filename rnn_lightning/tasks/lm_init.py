"""A classifier's ``init_from_lm``: its embedding and recurrent encoder start from a word LanguageModel's (ULMFiT,
Howard & Ruder 2018), copied once when a fresh fit starts; afterwards the classifier's own checkpoint holds them."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from tokenizers import Tokenizer

from rnn_lightning.data.tokenization import SPECIAL_TOKENS
from rnn_lightning.nn.embedder import EmbedEncode
from rnn_lightning.nn.transfer import copy_rows_by_word, load_encoder_weights
from rnn_lightning.tasks.checkpoints import check_task
from rnn_lightning.tasks.common import RecurrentTask
from rnn_lightning.tasks.language_model import LanguageModel, language_model_settings

_ADVICE = ("Give `init_from_lm` the checkpoint of a forward word LanguageModel (`tokenizer: word`), e.g. "
           "checkpoints/sst2_lm_finetune/best.ckpt from recipes/lm/sst2_lm_finetune.yaml.")
_SHARED = ("embedding_dim", "hidden_size", "num_layers", "cell", "connection")  # settings both must share


class LanguageModelInit:
    """The LM checkpoint ``path`` (``None``: none) whose weights start the classifier, read once.

    ``missing`` lists the classifier's words the LM's vocabulary lacks (their embedding rows keep their random
    initialisation), once filled; ``None`` before.
    """

    def __init__(self, path: str | None) -> None:
        self.path, self.loaded = path, False
        self.missing: list[str] | None = None

    def fill(self, body: EmbedEncode, *, tokenizer: Tokenizer | None, resumed: bool) -> None:
        """Copy the LM's embedding rows (by word: ``tokenizer`` names ``body``'s rows) and recurrent weights into
        ``body``, unless done or ``resumed`` (the checkpoint holds the trained weights)."""
        if not self.path or self.loaded or resumed:
            return
        if tokenizer is None:
            raise RuntimeError("`init_from_lm` maps the LM's embedding rows to the classifier's by word, so it needs "
                               "the classifier's vocabulary: train with one of rnn_lightning's DataModules (or set "
                               "`model.tokenizer`).")
        where = f"`init_from_lm` {str(self.path)!r}"
        check_task(LanguageModel, self.path, base=RecurrentTask, arg="`init_from_lm`", advice=_ADVICE)
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        lm = language_model_settings(checkpoint["hyper_parameters"])
        self._check_fits(lm, body, where)
        if "tokenizer" not in checkpoint:
            raise ValueError(f"{where} carries no tokenizer, so its rows' words are unknown. Train the LM with a "
                             "LanguageModelingDataModule, which stores its tokenizer in the checkpoint.")
        lm_vocab = Tokenizer.from_str(checkpoint["tokenizer"]).get_vocab()
        state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        try:
            load_encoder_weights(body.encoder, {k.removeprefix("encoder."): v for k, v in state.items()
                                                if k.startswith("encoder.")})
        except ValueError as error:
            raise ValueError(f"{where}: {error} Give the classifier the LM's {_SHARED}.") from error
        if all(len(token) == 1 for token in lm_vocab if token not in SPECIAL_TOKENS):
            raise ValueError(f"{where} is a character language model (every entry of its vocabulary is one "
                             f"character), whose rows cannot stand for words. {_ADVICE}")
        vocab = tokenizer.get_vocab()
        words = [w for w in vocab if w not in SPECIAL_TOKENS]
        if not any(w in lm_vocab for w in words):
            raise ValueError(f"{where} shares no word with the classifier's vocabulary ({len(words):,} words, e.g. "
                             f"{words[:3]}): it was trained on another language or tokenization. {_ADVICE}")
        pad = body.embedding.padding_idx
        self.missing = copy_rows_by_word(body.embedding.weight, vocab, state["embedding.weight"], lm_vocab,
                                         skip=set() if pad is None else {pad})
        if self.missing:
            rank_zero_warn(f"init_from_lm: {len(self.missing):,} of the classifier's {len(vocab):,} vocabulary words "
                           f"are not in the language model's vocabulary in any case (e.g. {self.missing[:5]}); their "
                           "embeddings keep their random initialisation.")
        self.loaded = True

    @staticmethod
    def _check_fits(lm: dict[str, Any], body: EmbedEncode, where: str) -> None:
        """Raise unless the LM's network can start ``body``'s: one reading direction, the same encoder."""
        config = body.config
        if lm["direction"] != "forward":
            raise ValueError(f"{where} is a {lm['direction']} language model, but the classifier reads each text "
                             f"left to right. {_ADVICE}")
        if config.bidirectional:
            raise ValueError("`init_from_lm` starts a unidirectional encoder (a language model reads one way), but "
                             "the classifier has `bidirectional: true`. Set `bidirectional: false`.")
        if lm["last_hidden_size"] not in (None, lm["hidden_size"]):
            raise ValueError(f"{where} has a last layer of size {lm['last_hidden_size']} (`last_hidden_size`) "
                             f"beside `hidden_size: {lm['hidden_size']}`, which the classifier's encoder cannot "
                             "hold. Train the LM without `last_hidden_size`.")
        if config.num_chars is not None or body.strings is not None:
            raise ValueError("`init_from_lm` feeds the word embeddings alone to the encoder, as the LM does: drop the "
                             "character features (`num_chars`, `lm_checkpoints`).")
        differ = {name: (getattr(config, name), lm[name]) for name in _SHARED if getattr(config, name) != lm[name]}
        if differ:
            fix = ", ".join(f"`{name}: {theirs}`" for name, (_, theirs) in differ.items())
            ours = ", ".join(f"{name}={value!r}" for name, (value, _) in differ.items())
            raise ValueError(f"{where} has another encoder than the classifier ({ours} here): set {fix} to match "
                             "the language model.")
