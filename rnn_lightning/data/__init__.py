"""LightningDataModules over HF ``datasets``, tokenization and token streams."""

from rnn_lightning.data.language_modeling import LanguageModelingDataModule
from rnn_lightning.data.markov_datamodule import MarkovCorpusDataModule

__all__ = ["LanguageModelingDataModule", "MarkovCorpusDataModule"]
