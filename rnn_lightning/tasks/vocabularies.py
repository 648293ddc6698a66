"""A checkpoint's label set and character vocabulary must be the model's: its output rows and character ids mean
them. (The word vocabulary travels with the tokenizer: see :mod:`rnn_lightning.tasks.tokenizer`.)"""

from __future__ import annotations

from typing import Any


def check_label_count(labels: list[str] | None, num_labels: int) -> None:
    """Raise unless ``labels`` (if given) names ``num_labels`` labels."""
    if labels is not None and len(labels) != num_labels:
        raise ValueError(f"`labels` names {len(labels)} labels but `num_labels` is {num_labels}; they must agree.")


def _saved(checkpoint: dict[str, Any], name: str) -> list[str] | None:
    return checkpoint.get("hyper_parameters", {}).get(name)


def check_labels(checkpoint: dict[str, Any], labels: list[str] | None) -> None:
    """Raise unless the checkpoint's ``labels`` hyperparameter is ``labels`` (either missing: nothing to compare)."""
    saved = _saved(checkpoint, "labels")
    if saved is not None and labels is not None and list(saved) != list(labels):
        raise ValueError(
            f"the checkpoint's labels {list(saved)} differ from this model's {list(labels)} (from the DataModule): "
            "its output rows would mean other labels. Use the data the checkpoint was trained with, or pass its "
            "label list as the DataModule's `labels`."
        )


def check_char_vocab(checkpoint: dict[str, Any], char_vocab: list[str] | None) -> None:
    """Raise unless the checkpoint's ``char_vocab`` hyperparameter is ``char_vocab`` (either missing: nothing to
    compare)."""
    saved = _saved(checkpoint, "char_vocab")
    if saved is not None and char_vocab is not None and list(saved) != list(char_vocab):
        raise ValueError(
            f"the checkpoint's character vocabulary ({len(saved)} characters) differs from this model's "
            f"({len(char_vocab)}, from the DataModule's train words): its character ids would mean other characters. "
            "Use the train split the checkpoint was trained with."
        )
