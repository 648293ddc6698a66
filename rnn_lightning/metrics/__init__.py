"""torchmetrics ``Metric`` classes."""

from rnn_lightning.metrics.perplexity import Perplexity

__all__ = ["Perplexity"]
