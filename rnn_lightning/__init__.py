"""rnn_lightning: recurrent networks (simple RNN, GRU, LSTM) as reusable PyTorch Lightning components."""

from rnn_lightning.callbacks import GenerateSamples, TokensPerSecond
from rnn_lightning.data import LanguageModelingDataModule, MarkovCorpusDataModule
from rnn_lightning.metrics import Perplexity
from rnn_lightning.tasks import LanguageModel

__version__ = "0.1.0"
__all__ = [
    "GenerateSamples",
    "LanguageModel",
    "LanguageModelingDataModule",
    "MarkovCorpusDataModule",
    "Perplexity",
    "TokensPerSecond",
]
