"""rnn_lightning: recurrent networks (simple RNN, GRU, LSTM) as reusable PyTorch Lightning components."""

from rnn_lightning.callbacks import NTASGD, GenerateSamples, GradientFlowMonitor, TokensPerSecond, WritePredictions
from rnn_lightning.data import (
    AddingDataModule,
    CopyDataModule,
    LanguageModelingDataModule,
    MarkovCorpusDataModule,
    RecallDataModule,
    TaggingDataModule,
    TextClassificationDataModule,
)
from rnn_lightning.metrics import Perplexity, SpanF1
from rnn_lightning.tasks import LanguageModel, SequenceClassifier, SequenceTagger, load_pretrained

__version__ = "0.1.0"
__all__ = [
    "AddingDataModule", "CopyDataModule", "RecallDataModule",  # long-range tasks (issue 17)
    "GenerateSamples",
    "GradientFlowMonitor",
    "LanguageModel",
    "LanguageModelingDataModule",
    "MarkovCorpusDataModule",
    "NTASGD",
    "Perplexity",
    "SequenceClassifier",
    "SequenceTagger",
    "SpanF1",
    "TaggingDataModule",
    "TextClassificationDataModule",
    "TokensPerSecond",
    "WritePredictions",
    "load_pretrained",  # the model hub (issue 16)
]
