"""Lightning callbacks."""

from rnn_lightning.callbacks.gradient_flow import GradientFlowMonitor
from rnn_lightning.callbacks.nt_asgd import NTASGD
from rnn_lightning.callbacks.predictions import WritePredictions
from rnn_lightning.callbacks.text_samples import GenerateSamples
from rnn_lightning.callbacks.throughput import TokensPerSecond
from rnn_lightning.callbacks.unfreezing import GradualUnfreezing

__all__ = ["NTASGD", "GenerateSamples", "GradientFlowMonitor", "GradualUnfreezing", "TokensPerSecond",
           "WritePredictions"]
