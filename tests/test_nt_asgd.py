"""NT-ASGD (``rnn_lightning.callbacks.nt_asgd``) with the real Trainer on a tiny model, against hand-kept means."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rnn_lightning.callbacks.nt_asgd import NTASGD, validation_stalled

# scripted validation losses, one per epoch; with nonmono=2 the rule fires at epoch 5 (by hand: 3.7 > min(5, 4, 3),
# while at epoch 3, 3.5 > min(5) fails and at epoch 4, 3.6 > min(5, 4) fails); the best is epoch 6
VAL_LOSSES = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 2.5, 2.9, 3.0]
SWITCH_EPOCH, STEPS_PER_EPOCH = 5, 4


class Tiny(L.LightningModule):
    """Linear regression with a tied pair of weights; records its weights after every step and in validation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3, bias=False)
        self.b.weight = self.a.weight  # tied: one parameter under two state_dict keys
        self.after_step: dict[int, list[torch.Tensor]] = {}
        self.in_validation: dict[int, list[torch.Tensor]] = {}

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().double().clone() for p in self.parameters()]

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.b(self.a(x)), y)

    def on_train_batch_end(self, *args) -> None:
        self.after_step[self.global_step] = self.weights()

    def validation_step(self, batch, batch_idx):
        self.in_validation[self.current_epoch] = self.weights()
        self.log("val/loss", VAL_LOSSES[self.current_epoch])

    def test_step(self, batch, batch_idx):
        self.in_test = self.weights()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(4 * STEPS_PER_EPOCH, 3, generator=g)
        return DataLoader(TensorDataset(x, x.flip(-1)), batch_size=4)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 3), torch.zeros(1, 3)), batch_size=1)


def hand_mean(model: Tiny, first_step: int, last_step: int) -> list[torch.Tensor]:
    snapshots = [model.after_step[s] for s in range(first_step, last_step + 1)]
    return [torch.stack(ws).mean(0) for ws in zip(*snapshots, strict=True)]


def assert_weights_close(actual, expected) -> None:
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a.double(), e, rtol=0, atol=1e-6)


def fit(tmp_path, epochs, ckpt_path=None, **kwargs):
    model, callback = Tiny(), NTASGD(nonmono=2)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/loss", save_top_k=-1, filename="{epoch}")
    run = trainer(tmp_path, max_epochs=epochs, callbacks=[callback, checkpoints], enable_checkpointing=True,
                  num_sanity_val_steps=1, **kwargs)
    run.fit(model, ckpt_path=ckpt_path)
    return model, callback, run


def test_switches_when_the_rule_says_and_validation_sees_the_running_mean(tmp_path):
    model, callback, _ = fit(tmp_path, epochs=8)
    switch_step = (SWITCH_EPOCH + 1) * STEPS_PER_EPOCH
    assert callback.switched_at == switch_step and callback.history == pytest.approx(VAL_LOSSES[:SWITCH_EPOCH + 1])
    assert callback.count == 8 * STEPS_PER_EPOCH - switch_step
    for epoch in range(8):
        end = (epoch + 1) * STEPS_PER_EPOCH
        if epoch <= SWITCH_EPOCH:  # plain SGD weights up to the trigger
            assert_weights_close(model.in_validation[epoch], model.after_step[end])
        else:  # the mean of the weights after every step since the trigger
            assert_weights_close(model.in_validation[epoch], hand_mean(model, switch_step + 1, end))
    assert_weights_close(model.weights(), hand_mean(model, switch_step + 1, 8 * STEPS_PER_EPOCH))  # kept at the end

    # every checkpoint after the trigger holds the mean under each key, tied ones too
    state = torch.load(tmp_path / "ckpt" / "epoch=6.ckpt", weights_only=True)["state_dict"]
    mean = hand_mean(model, switch_step + 1, 7 * STEPS_PER_EPOCH)
    assert_weights_close([state["a.weight"], state["a.bias"]], mean)
    assert torch.equal(state["b.weight"], state["a.weight"])


def test_resume_restores_the_mean_and_the_training_weights(tmp_path):
    straight, straight_callback, _ = fit(tmp_path / "straight", epochs=8)
    fit(tmp_path / "first", epochs=7)
    resumed, resumed_callback, _ = fit(tmp_path / "second", epochs=8,
                                       ckpt_path=tmp_path / "first" / "ckpt" / "epoch=6.ckpt")
    assert resumed_callback.switched_at == straight_callback.switched_at
    assert resumed_callback.count == straight_callback.count
    for name, value in straight_callback.average.items():
        torch.testing.assert_close(resumed_callback.average[name], value, rtol=0, atol=0)
    last = 8 * STEPS_PER_EPOCH  # the SGD weights went on from the training weights, not from the mean
    assert_weights_close(resumed.after_step[last], straight.after_step[last])
    assert_weights_close(resumed.weights(), straight.weights())


def test_the_best_checkpoint_and_test_use_the_mean(tmp_path):
    model, _, run = fit(tmp_path, epochs=8)
    assert run.checkpoint_callback.best_model_path.endswith("epoch=6.ckpt")
    run.test(model, dataloaders=model.val_dataloader(), ckpt_path="best", verbose=False)
    best_mean = hand_mean(model, (SWITCH_EPOCH + 1) * STEPS_PER_EPOCH + 1, 7 * STEPS_PER_EPOCH)
    assert_weights_close(model.in_test, best_mean)
    assert_weights_close(model.weights(), best_mean)  # swapped back to what the checkpoint loaded


def test_the_rule_and_bad_arguments():
    assert not validation_stalled([5.0, 4.0], 9.0, nonmono=2)  # too few validations yet
    assert validation_stalled([5.0, 4.0, 3.0], 5.5, nonmono=2) and not validation_stalled([5.0, 4.0, 3.0], 5.0, 2)
    with pytest.raises(ValueError, match="`nonmono` must be a positive integer, got 0"):
        NTASGD(nonmono=0)


def test_finetune_averages_from_the_first_step_and_stops_when_validation_of_the_mean_stalls(tmp_path):
    """AWD's finetune.py: ASGD from the start, stop once the rule fires (here at epoch 5, by hand as above)."""
    model, callback = Tiny(), NTASGD(nonmono=2, finetune=True)
    run = trainer(tmp_path, max_epochs=9, callbacks=[callback], num_sanity_val_steps=0)
    run.fit(model)
    assert sorted(model.in_validation) == list(range(SWITCH_EPOCH + 1))  # stopped after the stalled validation
    assert callback.switched_at == 0 and callback.count == (SWITCH_EPOCH + 1) * STEPS_PER_EPOCH
    assert callback.history == pytest.approx(VAL_LOSSES[:SWITCH_EPOCH + 1])
    for epoch in range(SWITCH_EPOCH + 1):
        assert_weights_close(model.in_validation[epoch], hand_mean(model, 1, (epoch + 1) * STEPS_PER_EPOCH))
