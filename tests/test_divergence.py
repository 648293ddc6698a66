"""Runs that diverge stop with the step and the fix; the defaults train; the validation loss is the mean NLL."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from conftest import sgd, trainer
from corpora import CORPORA
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModel, LanguageModelingDataModule
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.tasks.finite_guard import DIVERGED_CHECKS, DIVERGED_LOSS_FACTOR

pytestmark = pytest.mark.usefixtures("deadline")  # a hang fails the test (tests/conftest.py)

SHAKESPEARE = CORPORA / "tinyshakespeare" / "input.txt"


def test_saturated_divergence_stops_naming_the_step_and_the_fix(tmp_path, tiny_markov, tiny_lm):
    torch.manual_seed(0)
    model = tiny_lm(tiny_markov, optimizer=sgd(1e6))  # and no clipping: the weights blow up, the logits saturate
    t = trainer(tmp_path, max_steps=300, limit_val_batches=0, log_every_n_steps=1)
    with pytest.raises(FloatingPointError, match=r"training diverged at step \d+ \(epoch \d+\): the training loss "
                       r"was not finite or above 10 x a uniform guess's loss = [\d.]+ nats at 3 logged checks in a "
                       r"row .*Lower the optimizer's lr.*clip the gradient norm") as error:
        t.fit(model, tiny_markov)
    message = error.value.args[0]
    step = int(re.search(r"diverged at step (\d+)", message).group(1))
    assert step < 20 and t.global_step <= step + 1  # stopped within a few steps, not at max_steps
    losses = [float(x) for x in re.findall(r"step \d+: ([^,)]+)", message)]
    ceiling = DIVERGED_LOSS_FACTOR * math.log(tiny_markov.vocab_size)
    assert len(losses) == DIVERGED_CHECKS and all(not math.isfinite(x) or x > ceiling for x in losses), losses


class SpikyLM(LanguageModel):
    """Its guard sees a loss 1e4 times the real one at the steps in ``spikes`` (the training itself is unchanged)."""

    spikes: tuple[int, ...] = ()

    def log_train_loss(self, loss, **kwargs):
        super().log_train_loss(loss * 1e4 if self.global_step in self.spikes else loss, **kwargs)


@pytest.mark.parametrize("spikes, stops_at", [((), None), ((5, 6), None), ((5, 7, 8), None), ((5, 6, 7), 7)])
def test_only_consecutive_diverged_checks_stop_a_run(tmp_path, tiny_markov, spikes, stops_at):
    model = SpikyLM(tiny_markov.vocab_size, pad_id=tiny_markov.pad_id, embedding_dim=8, hidden_size=12, num_layers=1)
    model.spikes = spikes
    t = trainer(tmp_path, max_steps=12, limit_val_batches=0, log_every_n_steps=1)
    if stops_at is None:
        t.fit(model, tiny_markov)
        assert t.global_step == 12
    else:
        with pytest.raises(FloatingPointError, match=rf"training diverged at step {stops_at} "):
            t.fit(model, tiny_markov)


def test_loss_is_checked_on_logged_steps_only(tmp_path, tiny_markov):
    model = SpikyLM(tiny_markov.vocab_size, pad_id=tiny_markov.pad_id, embedding_dim=8, hidden_size=12, num_layers=1)
    model.spikes = (4, 5, 6)  # logged steps are 2, 5, 8, 11 (every 3rd): one diverged check only
    t = trainer(tmp_path, max_steps=12, limit_val_batches=0, log_every_n_steps=3)
    t.fit(model, tiny_markov)
    assert t.global_step == 12


def _streamed_mean_nll(model, loader) -> float:
    """Float64 reference: the validation split streamed with the carried state, NLL summed in float64."""
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for inputs, targets in loader:
            logits, state = model(inputs, state)
            keep = targets != IGNORE_INDEX
            total += float(F.cross_entropy(logits.double()[keep], targets[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def test_validation_loss_is_the_mean_nll_even_above_89_nats(tmp_path, tiny_markov, tiny_lm):
    torch.manual_seed(0)
    model = tiny_lm(tiny_markov)
    with torch.no_grad():
        model.net.decoder.weight.mul_(3e4)  # saturated logits: hundreds of nats per token
    (metrics,) = trainer(tmp_path).validate(model, tiny_markov, verbose=False)
    tiny_markov.setup("validate")
    reference = _streamed_mean_nll(model, tiny_markov.val_dataloader())
    assert reference > 89  # a float32 perplexity overflows here: exp(89) > 3.4e38
    assert metrics["val/loss"] == pytest.approx(reference, rel=1e-5)
    assert metrics["val/bpt"] == pytest.approx(reference / math.log(2), rel=1e-5)
    assert metrics["val/ppl"] == math.inf


def _unigram_perplexity(train_loader, val_loader, vocab_size: int) -> float:
    """Perplexity on the validation targets of add-one-smoothed train target frequencies (a float64 count)."""
    counts = Counter()
    for _, targets in train_loader:
        counts.update(targets[targets != IGNORE_INDEX].tolist())
    total = sum(counts.values()) + vocab_size
    nll, n = 0.0, 0
    for _, targets in val_loader:
        for token in targets[targets != IGNORE_INDEX].tolist():
            nll -= math.log((counts[token] + 1) / total)
            n += 1
    return math.exp(nll / n)


@pytest.mark.slow
@pytest.mark.deadline(900)
@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs tinyshakespeare/input.txt (tests/corpora.py)")
def test_a_char_model_from_the_defaults_trains_with_a_default_trainer(tmp_path):
    lines = [line for line in SHAKESPEARE.read_text().splitlines() if line.strip()]
    data = LanguageModelingDataModule(dataset=DatasetDict(train=Dataset.from_dict({"text": lines[:200]}),
                                                          validation=Dataset.from_dict({"text": lines[200:260]})),
                                      tokenizer="char")
    torch.manual_seed(0)
    # Small sizes; every other argument (the optimizer, dropout, two layers) default
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, embedding_dim=32, hidden_size=128)
    t = trainer(tmp_path, max_steps=300, val_check_interval=None, check_val_every_n_epoch=None, limit_val_batches=0)
    t.fit(model, data)  # no gradient clipping: the Trainer's default
    (metrics,) = trainer(tmp_path).validate(model, data, verbose=False)
    unigram = _unigram_perplexity(data.train_dataloader(), data.val_dataloader(), data.vocab_size)
    print(metrics, f"unigram perplexity {unigram:.2f}")
    assert metrics["val/ppl"] < 0.8 * unigram < data.vocab_size, (metrics, unigram)
