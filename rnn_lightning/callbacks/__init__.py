"""Lightning callbacks."""

from rnn_lightning.callbacks.text_samples import GenerateSamples

__all__ = ["GenerateSamples"]
