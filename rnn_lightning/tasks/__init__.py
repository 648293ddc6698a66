"""LightningModules: one task per file."""

from rnn_lightning.tasks.classifier import SequenceClassifier
from rnn_lightning.tasks.hub import load_pretrained
from rnn_lightning.tasks.language_model import LanguageModel
from rnn_lightning.tasks.tagger import SequenceTagger

__all__ = ["LanguageModel", "SequenceClassifier", "SequenceTagger", "load_pretrained"]
