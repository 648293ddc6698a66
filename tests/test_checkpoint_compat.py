"""Checkpoints saved by an earlier version (``tests/fixtures``, written by ``make_checkpoints.py`` before the
networks' keyword-only refactor) still load, strictly, and give the outputs they gave when they were saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.make_checkpoints import classifier_outputs, language_model_outputs, tagger_outputs

from rnn_lightning import LanguageModel, SequenceClassifier, SequenceTagger

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
CASES = {
    "language_model": (LanguageModel, language_model_outputs, ("greedy",), ("log_probs",)),
    "tagger": (SequenceTagger, tagger_outputs, ("tags",), ("scores", "crf_log_likelihood")),
    "classifier": (SequenceClassifier, classifier_outputs, ("classes",), ("scores",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_saved_checkpoint_gives_its_saved_outputs(name):
    task, outputs, exact, close = CASES[name]
    model = task.load_from_checkpoint(FIXTURES / f"{name}.ckpt", map_location="cpu")  # strict: every key matches
    got, want = outputs(model), EXPECTED[name]
    for key in exact:
        assert got[key] == want[key], key
    for key in close:
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(want[key]), rtol=1e-6, atol=1e-6, msg=key)
