"""LightningDataModules over HF ``datasets``, tokenization and token streams."""

from rnn_lightning.data.classification import TextClassificationDataModule
from rnn_lightning.data.conll import load_tagging_files, read_conll, read_conllu
from rnn_lightning.data.language_modeling import LanguageModelingDataModule
from rnn_lightning.data.long_range_datamodules import AddingDataModule, CopyDataModule, RecallDataModule
from rnn_lightning.data.markov_datamodule import MarkovCorpusDataModule
from rnn_lightning.data.tagging import TaggingDataModule

__all__ = [
    "AddingDataModule", "CopyDataModule", "RecallDataModule",  # long-range tasks
    "LanguageModelingDataModule",
    "MarkovCorpusDataModule",
    "TaggingDataModule",
    "TextClassificationDataModule",
    "load_tagging_files",
    "read_conll",
    "read_conllu",
]
