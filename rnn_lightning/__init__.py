"""rnn_lightning: recurrent networks (simple RNN, GRU, LSTM) as reusable PyTorch Lightning components."""

from rnn_lightning.callbacks import (
    NTASGD,
    GenerateSamples,
    GradientFlowMonitor,
    GradualUnfreezing,
    TokensPerSecond,
    WritePredictions,
)
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
from rnn_lightning.tasks.schedules import SlantedTriangularLR

__version__ = "0.1.0"
__all__ = [
    "AddingDataModule", "CopyDataModule", "RecallDataModule",  # long-range tasks
    "GenerateSamples",
    "GradientFlowMonitor",
    "GradualUnfreezing", "SlantedTriangularLR",  # ULMFiT
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
    "load_pretrained",  # the model hub
]
