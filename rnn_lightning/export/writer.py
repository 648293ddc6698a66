"""``export``: a trained task as a TorchScript file and an ONNX graph, with the tokenizer, the labels and a manifest
beside them, for serving without Python's rnn_lightning (or without Python, through onnxruntime).

Both graphs come from tracing the task's export module (:mod:`rnn_lightning.export.graphs`) in eval mode on the CPU.
The ONNX graph is written by PyTorch's TorchScript-based exporter (``dynamo=False``): it turns the tagger's scripted
Viterbi loop into an ONNX ``Loop`` over any length, where the ``torch.export``-based exporter would need the loop
rewritten in its control-flow operators. PyTorch (>= 2.9) deprecates both TorchScript and that exporter, and says
so in a warning at each export.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnn_lightning.data.tokenization import BOS, EOS, PAD, UNK
from rnn_lightning.export.graphs import ClassifierGraph, LanguageModelStep, Spec, TaggerGraph
from rnn_lightning.nn.checks import check_output_folder
from rnn_lightning.tasks import LanguageModel, SequenceClassifier, SequenceTagger

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.pt", "onnx": "model.onnx", "tokenizer": "tokenizer.json", "labels": "labels.json",
         "char_vocab": "char_vocab.json", "manifest": "export.json"}
DEFAULT_OPSET = 17
MIN_OPSET = 13  # the tagger's Viterbi loop keeps its per-step pointers in an ONNX sequence
# What the exporter warns of in every export of these graphs, each ruled out by the tests (other batch sizes; no
# negative index). PyTorch's deprecation warnings of TorchScript and of this exporter are left for the user to see.
_KNOWN_WARNINGS = ("Exporting a model to ONNX with a batch_size", "Exporting aten::index operator")


def export(
    model: nn.Module,
    directory: str | Path,
    *,
    formats: str | tuple[str, ...] | list[str] = FORMATS,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Write ``model`` (a :class:`SequenceTagger`, :class:`SequenceClassifier` or :class:`LanguageModel`) to
    ``directory`` as ``model.pt`` (TorchScript) and ``model.onnx``, with ``tokenizer.json``, ``labels.json`` (and
    ``char_vocab.json`` for character features) and the manifest ``export.json``.

    The graphs: a tagger maps ``tokens`` (B, T), ``lengths`` (B,) [and ``chars`` (B, T, L)] to ``emissions`` (B, T, C)
    and decoded ``tags`` (B, T) (the CRF's Viterbi with the scheme's forbidden moves, or the argmax); a classifier
    maps ``tokens``, ``lengths`` to ``logits`` and ``probabilities`` (B, C); a language model is its one-step
    generator, ``tokens`` (B, 1) and the state ``h`` [, ``c``] (L, B, H) to ``logits`` (B, V) and the new state.
    Batch size and lengths are dynamic. ``model`` itself is left as it was (the export works on a CPU copy).

    Args:
        model: the task to export.
        directory: the folder to write (created if missing; files of the same names are replaced).
        formats: ``"torchscript"``, ``"onnx"`` or both.
        opset: the ONNX opset (>= 13).

    Returns:
        The manifest written to ``export.json``.

    Example:
        >>> import tempfile
        >>> model = SequenceClassifier(vocab_size=20, num_labels=2, embedding_dim=4, hidden_size=3)
        >>> manifest = export(model, tempfile.mkdtemp(), formats="torchscript")
        >>> [(spec["name"], spec["shape"]) for spec in manifest["outputs"]]
        [('logits', ['batch', 'labels']), ('probabilities', ['batch', 'labels'])]
    """
    formats = _check_formats(formats)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"`opset` must be an integer >= {MIN_OPSET}, got {opset!r}. Pass e.g. {DEFAULT_OPSET}.")
    if "onnx" in formats and importlib.util.find_spec("onnx") is None:
        raise ModuleNotFoundError("ONNX export needs the `onnx` package: `pip install \"rnn-lightning[export]\"`, or "
                                  "export TorchScript alone with formats=\"torchscript\".")
    graph = export_graph(model)
    out = check_output_folder(directory, "`directory`")
    out.mkdir(parents=True, exist_ok=True)
    example = example_inputs(graph)
    with warnings.catch_warnings(), torch.no_grad():
        for message in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if "torchscript" in formats:
            torch.jit.save(torch.jit.trace(graph, example, check_trace=False), out / FILES["torchscript"])
        if "onnx" in formats:
            names = [name for name, _, _ in graph.INPUTS] + [name for name, _, _ in graph.OUTPUTS]
            axes = {name: {i: axis for i, axis in enumerate(shape) if isinstance(axis, str)}
                    for name, shape, _ in graph.INPUTS + graph.OUTPUTS}
            torch.onnx.export(graph, example, out / FILES["onnx"], input_names=names[:len(graph.INPUTS)],
                              output_names=names[len(graph.INPUTS):], dynamic_axes=axes, opset_version=opset,
                              dynamo=False)
    manifest = _manifest(model, graph, formats, opset)
    _write_side_files(model, out, manifest)
    (out / FILES["manifest"]).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_graph(model: nn.Module) -> nn.Module:
    """The export module of ``model``'s task (:mod:`rnn_lightning.export.graphs`), on a CPU copy in eval mode."""
    kinds = ((SequenceTagger, TaggerGraph), (SequenceClassifier, ClassifierGraph), (LanguageModel, LanguageModelStep))
    for task, graph in kinds:
        if isinstance(model, task):
            return copy.deepcopy(graph(model)).cpu().eval()
    raise TypeError(f"`model` must be a SequenceTagger, SequenceClassifier or LanguageModel, got "
                    f"{type(model).__name__}. Load the task from its checkpoint, e.g. "
                    "`SequenceTagger.load_from_checkpoint(path)`, and export that.")


def example_inputs(graph: nn.Module, batch: int = 2) -> tuple[Tensor, ...]:
    """Inputs to trace ``graph`` with: ``batch`` sequences of different lengths (the longest 3 steps)."""
    if isinstance(graph, LanguageModelStep):
        return (torch.ones(batch, 1, dtype=torch.long), *graph.initial_state(batch))
    lengths = torch.arange(3, 3 - batch, -1).clamp(min=1)  # (B,) 3, 2, 1, 1, ...
    tokens = torch.full((batch, 3), 2, dtype=torch.long)
    chars = (torch.full((batch, 3, 2), 2, dtype=torch.long),) if len(graph.INPUTS) == 3 else ()
    return (tokens, lengths, *chars)


def _check_formats(formats: Any) -> tuple[str, ...]:
    chosen = (formats,) if isinstance(formats, str) else formats
    if not isinstance(chosen, (tuple, list)) or not chosen or any(f not in FORMATS for f in chosen):
        raise ValueError(f"`formats` must be one or more of {FORMATS}, got {formats!r}. Pass e.g. \"onnx\" or "
                         f"{FORMATS}.")
    return tuple(dict.fromkeys(chosen))


def _specs(specs: tuple[Spec, ...]) -> list[dict[str, Any]]:
    return [{"name": name, "shape": list(shape), "dtype": dtype} for name, shape, dtype in specs]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _manifest(model: nn.Module, graph: nn.Module, formats: tuple[str, ...], opset: int) -> dict[str, Any]:
    tokenizer = getattr(model, "tokenizer", None)
    manifest: dict[str, Any] = {
        "task": type(model).__name__,
        "files": {fmt: FILES[fmt] for fmt in formats},
        "inputs": _specs(graph.INPUTS),
        "outputs": _specs(graph.OUTPUTS),
        "opset": opset if "onnx" in formats else None,
        "versions": {name: _version(name) for name in ("rnn-lightning", "torch", "onnx", "onnxruntime")},
        "special_ids": ({token: tokenizer.token_to_id(token) for token in (PAD, UNK, BOS, EOS)}
                        if tokenizer is not None else None),
    }
    if tokenizer is not None:
        manifest["files"]["tokenizer"] = FILES["tokenizer"]
    if isinstance(model, LanguageModel):
        manifest["decode"] = ("Feed <bos> and the prompt's ids one at a time from zero states, then each chosen "
                              "token; the logits of the last step give the next token.")
        return manifest
    manifest["labels"] = list(model.labels) if model.labels is not None else None
    if model.labels is not None:
        manifest["files"]["labels"] = FILES["labels"]
    manifest["padding"] = "tokens right-padded with <pad>; lengths >= 1"
    if isinstance(model, SequenceTagger):
        manifest["crf"] = model.crf is not None
        manifest["span_scheme"] = model.span_scheme
        manifest["decode"] = ("tags: Viterbi over the CRF's scores with the scheme's forbidden moves" if model.crf
                              is not None else "tags: the argmax of the emissions per token") + "; 0 on padding"
        if model.char_vocab is not None:
            manifest["files"]["char_vocab"] = FILES["char_vocab"]
            manifest["chars"] = ("each word's character ids in char_vocab.json (unknown: 1), right-padded with 0 to "
                                 "the longest word; padding words all 0")
    return manifest


def _write_side_files(model: nn.Module, out: Path, manifest: dict[str, Any]) -> None:
    files = manifest["files"]
    if "tokenizer" in files:
        model.tokenizer.save(str(out / files["tokenizer"]))
    if "labels" in files:
        (out / files["labels"]).write_text(json.dumps(list(model.labels), indent=1) + "\n")
    if "char_vocab" in files:
        (out / files["char_vocab"]).write_text(json.dumps(list(model.char_vocab), indent=1) + "\n")
