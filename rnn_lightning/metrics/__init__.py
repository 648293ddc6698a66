"""torchmetrics ``Metric`` classes."""

from rnn_lightning.metrics.perplexity import Perplexity
from rnn_lightning.metrics.span_f1 import SpanF1

__all__ = ["Perplexity", "SpanF1"]
