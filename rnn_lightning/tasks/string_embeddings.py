"""Contextual string embeddings from LanguageModel checkpoints: the two character models read once, then carried by the
model that uses them (their settings and vocabularies in its hyperparameters, their weights in its state), so its own
checkpoint works with no language-model files."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, TypedDict

import torch
from tokenizers import Tokenizer

from rnn_lightning.nn.string_embeddings import ContextualStringEmbeddings, char_index
from rnn_lightning.tasks.checkpoints import check_task
from rnn_lightning.tasks.common import RecurrentTask
from rnn_lightning.tasks.language_model import LanguageModel, language_model_net

_ADVICE = ("Give `lm_checkpoints` the checkpoints of a forward and a backward character LanguageModel, e.g. "
           "[checkpoints/wikitext2_char_lstm_forward/last.ckpt, checkpoints/wikitext2_char_lstm_backward/last.ckpt].")


class LanguageModelSettings(TypedDict):
    """One character language model as a task keeps it in its hyperparameters.

    Typed to the letter because LightningCLI parses a checkpoint's hyperparameters back into the model's arguments
    (``rnn-lightning test --ckpt_path``): under ``Any`` a character of the vocabulary such as ``?``, ``~`` or ``1``
    is read as YAML (a mapping key, null, a number), while a ``list[str]`` keeps it a string.
    """

    hparams: dict[str, Any]  # the LanguageModel's constructor arguments (numbers, flags, cell and direction names)
    vocab: list[str]  # its tokens in id order


def read_language_models(
    paths: list[str],
) -> tuple[dict[str, LanguageModelSettings], dict[str, dict[str, torch.Tensor]]]:
    """The forward and backward language models at ``paths`` (in either order): their settings ``{direction:
    {"hparams", "vocab"}}`` (plain values, for a model's hyperparameters) and their network weights ``{direction:
    state_dict}``. Errors name ``lm_checkpoints`` and say what to give."""
    if isinstance(paths, str) or not isinstance(paths, list | tuple) or len(paths) != 2:
        raise ValueError(f"`lm_checkpoints` must list two checkpoints, a forward and a backward character language "
                         f"model, got {paths!r}. {_ADVICE}")
    settings, weights = {}, {}
    for i, path in enumerate(paths):
        arg = f"`lm_checkpoints[{i}]`"
        check_task(LanguageModel, path, base=RecurrentTask, arg=arg, advice=_ADVICE)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
        direction = hparams.get("direction", "forward")
        if direction in settings:
            raise ValueError(f"`lm_checkpoints` holds two {direction} language models ({paths[0]!r}, {paths[1]!r}): "
                             "string embeddings read each sentence both ways. Train the other with the DataModule's "
                             f"`direction: {'backward' if direction == 'forward' else 'forward'}`. {_ADVICE}")
        if "tokenizer" not in checkpoint:
            raise ValueError(f"{arg} {str(path)!r} carries no tokenizer, so its character ids cannot be known. Train "
                             "it with a LanguageModelingDataModule (`tokenizer: char`), which stores its tokenizer.")
        vocab = Tokenizer.from_str(checkpoint["tokenizer"]).get_vocab()
        settings[direction] = {"hparams": hparams, "vocab": sorted(vocab, key=vocab.__getitem__)}
        weights[direction] = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items()
                              if k.startswith("net.")}
        char_index(settings[direction]["vocab"], language_model_net(hparams), f"the vocabulary of {arg} {str(path)!r}")
    return settings, weights


def string_embeddings(settings: dict[str, Any], *, trainable: bool = False, cache: bool = False,
                      weights: dict[str, dict[str, torch.Tensor]] | None = None) -> ContextualStringEmbeddings:
    """The string embeddings of :func:`read_language_models`' ``settings``, with those ``weights`` (``None``: freshly
    initialised, for a checkpoint's weights to be loaded over)."""
    nets = {}
    for direction in ("forward", "backward"):
        nets[direction] = language_model_net(settings[direction]["hparams"])
        if weights is not None:
            nets[direction].load_state_dict(weights[direction])  # strict: the same network
    return ContextualStringEmbeddings(nets["forward"], nets["backward"], forward_vocab=settings["forward"]["vocab"],
                                      backward_vocab=settings["backward"]["vocab"], trainable=trainable,
                                      cache=cache)


def task_string_embeddings(hparams: MutableMapping[str, Any]) -> ContextualStringEmbeddings | None:
    """The string embeddings a task's hyperparameters ask for (``lm_checkpoints``, ``string_embeddings_trainable``,
    ``string_embeddings_cache``, ``lm_settings``): none without LMs; a new model's read from the checkpoints, whose
    settings it records as ``hparams["lm_settings"]``; a saved model's built from its ``lm_settings`` (its state
    dict holds the weights)."""
    settings, weights = hparams.get("lm_settings"), None
    if settings is None and hparams.get("lm_checkpoints") is None:
        return None
    if settings is None:
        settings, weights = read_language_models(hparams["lm_checkpoints"])
        hparams["lm_settings"] = settings
    return string_embeddings(settings, trainable=hparams.get("string_embeddings_trainable", False),
                             cache=hparams.get("string_embeddings_cache", False), weights=weights)
