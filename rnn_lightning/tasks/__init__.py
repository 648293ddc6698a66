"""LightningModules: one task per file."""

from rnn_lightning.tasks.language_model import LanguageModel

__all__ = ["LanguageModel"]
