"""Exporting a trained task to TorchScript and ONNX (:func:`export`; ``rnn-lightning export``)."""

from rnn_lightning.export.writer import DEFAULT_OPSET, FORMATS, export

__all__ = ["DEFAULT_OPSET", "FORMATS", "export"]
