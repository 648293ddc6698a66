"""Exporting a trained task to TorchScript and ONNX (:func:`export`; ``rnn-lightning export``)."""

from rnn_lightning.export.writer import FORMATS, export

__all__ = ["FORMATS", "export"]
