"""Constructors take at most two arguments by position: two swapped arguments of the same type (a CRF's start and
end masks, a rank and a world size, tags and labels) must fail loudly instead of wiring a model wrongly."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pytest
import torch

import rnn_lightning

# Records the library builds and returns (results, internal rows), read by field name, and one class that mirrors
# the positional signature of the torch class it replaces (``DistributedSampler(dataset, num_replicas, rank)``).
POSITIONAL_ALLOWED = {
    "rnn_lightning.functional.gradient_flow.GradientFlow",
    "rnn_lightning.tasks.scoring.TextScore",
    "rnn_lightning.tasks.confidences.ScoredSpan",
    "rnn_lightning.tasks.confidences.TaggedSentence",
    "rnn_lightning.nn.pretrained.Coverage",
    "rnn_lightning.nn.unroll.LayerStates",
    "rnn_lightning.data.markov.MarkovSource",
    "rnn_lightning.ngram.kneser_ney._Order",
    "rnn_lightning.tasks.finite_guard._PendingCheck",
    "rnn_lightning.data.resumable.ResumableSampler",
}


def library_classes() -> dict[str, type]:
    found = {}
    for module in pkgutil.walk_packages(rnn_lightning.__path__, "rnn_lightning."):
        if module.name.endswith("__main__"):
            continue
        for obj in vars(importlib.import_module(module.name)).values():
            if inspect.isclass(obj) and obj.__module__ == module.name and "__init__" in vars(obj):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def positional(cls: type) -> list[str]:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def test_every_constructor_takes_at_most_two_arguments_by_position():
    classes = library_classes()
    assert {"rnn_lightning.nn.config.EncoderConfig", "rnn_lightning.tasks.tagger.SequenceTagger",
            "rnn_lightning.nn.crf.CRF"} <= set(classes)  # the walk found the library's classes
    assert POSITIONAL_ALLOWED <= set(classes), POSITIONAL_ALLOWED - set(classes)  # no stale exception
    too_many = {name: positional(cls) for name, cls in classes.items()
                if name not in POSITIONAL_ALLOWED and len(positional(cls)) > 2}
    assert not too_many, too_many


def test_swappable_arguments_by_position_are_a_type_error():
    from rnn_lightning.data.batching import RaggedSequences
    from rnn_lightning.data.streams import StreamWindows, TokenStreams
    from rnn_lightning.nn import CRF
    from rnn_lightning.nn.config import EncoderConfig

    start, end = torch.tensor([True, True]), torch.tensor([False, True])  # never end on tag 0
    with pytest.raises(TypeError):
        CRF(2, None, start, end)
    assert CRF(2, None, allowed_start=start, allowed_end=end).allowed_end.tolist() == [False, True]
    with pytest.raises(TypeError):
        EncoderConfig(8, 16)
    streams = TokenStreams(torch.arange(9), 2, pad_id=0, drop_remainder=True)
    with pytest.raises(TypeError):
        StreamWindows(streams, 2, 1, 2)
    assert StreamWindows(streams, 2, rank=1, world_size=2).rows == slice(1, 2)
    with pytest.raises(TypeError):
        RaggedSequences(np.arange(3), np.array([0, 3]), np.zeros(3, dtype=np.int64))


def test_generation_settings_are_keyword_only():
    """``generate(prompt, 20, 0.9)`` could mean a length and a temperature or a temperature and a top_k."""
    from rnn_lightning import LanguageModel

    parameters = inspect.signature(LanguageModel.generate).parameters.values()
    assert [p.name for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD] == ["self", "prompt"]


def test_a_random_markov_source_takes_its_shape_by_keyword():
    from rnn_lightning.data.markov import MarkovSource

    with pytest.raises(TypeError):
        MarkovSource.random(20, 4)  # a branching, or a mean line length?
    assert MarkovSource.random(20, branching=4, seed=0).transition.shape == (20, 20)
