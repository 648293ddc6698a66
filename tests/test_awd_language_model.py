"""AWD-LSTM's training and evaluation options of ``LanguageModel`` through the real Trainer: AR/TAR in the loss,
the learning rate of variable-length windows, the cache pointer over a whole split, fine-tuning from a checkpoint."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import sgd, trainer
from test_cache_pointer import brute_force
from test_language_model_task import _brute_force_ppl

from rnn_lightning import MarkovCorpusDataModule
from rnn_lightning.constants import IGNORE_INDEX


def test_the_loss_adds_ar_and_tar_by_their_formulas_and_logs_each(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov, ar_alpha=2.0, tar_beta=1.5, optimizer=sgd(0.0))  # no dropout: train = eval
    seen = {}

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.update({k: float(v) for k, v in trainer.callback_metrics.items()}, total=float(outputs["loss"]),
                        batch=batch)

    trainer(tmp_path, max_steps=1, callbacks=[Capture()], log_every_n_steps=1).fit(model, tiny_markov)
    x, y = seen["batch"]
    net = model.net.double().eval()
    with torch.no_grad():
        h, _ = net.features(x)  # (B, T, H) float64, the state starts from zeros in the first window
        ce = F.cross_entropy(net.decode(h).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
    ar = 2.0 * h.pow(2).mean()  # AR on the dropped-out output (dropout 0 here)
    tar = 1.5 * (h[:, 1:] - h[:, :-1]).pow(2).mean()
    assert seen["train/loss"] == pytest.approx(float(ce), rel=1e-5)  # the cross-entropy alone
    assert seen["train/ar"] == pytest.approx(float(ar), rel=1e-5)
    assert seen["train/tar"] == pytest.approx(float(tar), rel=1e-5)
    assert seen["total"] == pytest.approx(float(ce + ar + tar), rel=1e-5)


def test_a_variable_window_scales_the_lr_of_its_own_step_only(tmp_path, tiny_lm):
    dm = MarkovCorpusDataModule(num_words=30, branching=4, train_tokens=3000, validation_tokens=800,
                                test_tokens=800, batch_size=4, eval_batch_size=3, bptt=7, variable_bptt=True)
    model = tiny_lm(dm, optimizer=sgd(2.0))
    seen = []

    class Capture(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append([batch[0].shape[1], batch[2]])

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen[-1].append(optimizer.param_groups[0]["lr"])

        def on_train_batch_end(self, trainer, *args):
            seen[-1].append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(tmp_path, max_steps=12, callbacks=[Capture()], limit_val_batches=0).fit(model, dm)
    for length, scale, lr_in_step, lr_after in seen:
        assert scale == length / 7 and lr_in_step == pytest.approx(2.0 * length / 7) and lr_after == 2.0
    assert len({length for length, *_ in seen}) > 2


def test_the_cache_pointer_in_test_equals_the_float64_brute_force_and_stays_out_of_fit(tmp_path, tiny_markov,
                                                                                       tiny_lm):
    cache = dict(cache_window=15, cache_theta=0.8, cache_lambda=0.3)
    model = tiny_lm(tiny_markov, **cache)
    fitting = trainer(tmp_path, max_epochs=1)
    fitting.fit(model, tiny_markov)
    plain_val, _ = _brute_force_ppl(model, tiny_markov, "validation")
    assert float(fitting.callback_metrics["val/ppl"]) == pytest.approx(plain_val, rel=1e-5)  # no cache in fit

    (metrics,) = trainer(tmp_path).test(model, tiny_markov, verbose=False)
    windows = tiny_markov.windows("test")  # eval_batch_size=3 streams, each with its own cache over its whole row
    net = model.net.double().eval()
    with torch.no_grad():
        h, _ = net.features(windows.inputs)  # (S, L, H): each whole row at once
        log_p = brute_force(net.decode(h), h, windows.targets, window=15, theta=0.8, lambdah=0.3)
    model.net.float()
    count = int((windows.targets != IGNORE_INDEX).sum())
    expected = math.exp(-float(log_p.sum()) / count)
    assert metrics["test/ppl"] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(_brute_force_ppl(model, tiny_markov, "test")[0], rel=1e-3)  # it did mix


def test_init_from_starts_a_fresh_fit_from_the_checkpoint_weights(tmp_path, tiny_markov, tiny_lm):
    first = tiny_lm(tiny_markov)
    run = trainer(tmp_path, max_steps=3, limit_val_batches=0)
    run.fit(first, tiny_markov)
    run.save_checkpoint(tmp_path / "best.ckpt")
    second = tiny_lm(tiny_markov, init_from=str(tmp_path / "best.ckpt"), optimizer=sgd(0.0))
    assert "init_from" not in second.hparams  # a later fit of a saved fine-tuned model does not reload it
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(second, tiny_markov)
    for (name, got), want in zip(second.state_dict().items(), first.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    second.optimizer = sgd(1.0)
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(second, tiny_markov)  # moves away from the checkpoint
    moved = {name: p.detach().clone() for name, p in second.named_parameters()}
    second.optimizer = sgd(0.0)
    trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(second, tiny_markov)
    for name, p in second.named_parameters():  # a later fit goes on from its own weights: no second load
        torch.testing.assert_close(p, moved[name], rtol=0, atol=0, msg=name)
    missing = tiny_lm(tiny_markov, init_from=str(tmp_path / "nope.ckpt"))
    with pytest.raises(ValueError, match="`init_from` .*nope.ckpt.* does not exist: expected a checkpoint file"):
        trainer(tmp_path, max_steps=1).fit(missing, tiny_markov)


@pytest.mark.parametrize("kwargs, match", [
    (dict(ar_alpha=-1.0), "`ar_alpha` must be a number >= 0"),
    (dict(cache_window=-5), "`cache_window` must be an integer >= 0"),
    (dict(cache_lambda=1.5), "`cache_lambda` must be in \\[0, 1\\]"),
    (dict(dropout_words=1.0), "`dropout_words` must be a probability"),
])
def test_bad_awd_options_are_refused_by_name(tiny_markov, tiny_lm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_lm(tiny_markov, **kwargs)
