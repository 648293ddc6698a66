"""LanguageModel: truncated BPTT, losses and perplexity against a float64 brute force over whole streams."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import trainer

from rnn_lightning import LanguageModel
from rnn_lightning.constants import IGNORE_INDEX


def _brute_force_ppl(model, dm, split):
    """One float64 forward over each whole stream row (no windows), summing NLL over every target."""
    windows = dm.windows(split)
    net = model.net.double().eval()
    with torch.no_grad():
        logits, _ = net(windows.inputs)  # (S, L, V): the whole row at once
        nll = F.cross_entropy(logits.transpose(1, 2), windows.targets, ignore_index=IGNORE_INDEX,
                              reduction="sum")
    model.net.float()
    count = int((windows.targets != IGNORE_INDEX).sum())
    return math.exp(float(nll) / count), count


def test_validation_perplexity_equals_float64_brute_force_over_whole_streams(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    trainer(tmp_path, max_steps=5, limit_val_batches=0).fit(model, tiny_markov)
    t = trainer(tmp_path)
    (metrics,) = t.validate(model, tiny_markov, verbose=False)
    expected, count = _brute_force_ppl(model, tiny_markov, "validation")
    # Every target of the split is counted once: words + <eos> of every validation line.
    assert count == sum(len(line.split()) + 1 for line in tiny_markov.raw["validation"]["text"])
    assert metrics["val/ppl"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(math.log(expected), rel=1e-5)
    assert metrics["val/bpt"] == pytest.approx(math.log2(expected), rel=1e-5)
    (test_metrics,) = t.test(model, tiny_markov, verbose=False)
    assert test_metrics["test/ppl"] == pytest.approx(_brute_force_ppl(model, tiny_markov, "test")[0], rel=1e-5)


def test_training_loss_is_token_mean_and_state_is_carried_detached_and_reset(tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    tiny_markov.setup("fit")
    windows = list(tiny_markov.train_dataloader())
    model._state.clear()
    (x0, y0), (x1, y1) = windows[0], windows[1]
    with torch.no_grad():
        logits, state = model.net(torch.cat([x0, x1], 1))  # reference: one pass over both windows
    expected = F.cross_entropy(logits[:, x0.size(1):].flatten(0, 1), y1.flatten(), ignore_index=IGNORE_INDEX)
    model.on_train_epoch_start()
    with torch.no_grad():
        model._step((x0, y0), "train")
    carried = model._state["train"]
    assert all(s.grad_fn is None for s in carried)  # detached: no gradient into the previous window
    window = model._step((x1, y1), "train")
    nll_sum, count = model._nll_sum(window), window.count
    torch.testing.assert_close(nll_sum / count, expected, rtol=1e-5, atol=1e-6)
    model.on_train_epoch_start()
    assert model._state["train"] is None  # reset at each epoch


def test_logs_losses_lr_and_grad_norm_before_clipping(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    logged = {}

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            logged.update({k: float(v) for k, v in trainer.callback_metrics.items()})

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad.double().flatten() for p in pl_module.parameters() if p.grad is not None]
            logged["reference_norm"] = float(torch.cat(grads).norm())

    t = trainer(tmp_path, max_steps=1, limit_val_batches=1, gradient_clip_val=1e-3, callbacks=[Capture()],
                log_every_n_steps=1)
    t.fit(model, tiny_markov)
    assert {"train/loss", "train/lr", "train/grad_norm"} <= logged.keys()
    assert logged["train/lr"] == pytest.approx(1e-3)  # the default Adam lr (logged as float32)
    assert logged["train/grad_norm"] == pytest.approx(logged["reference_norm"], rel=1e-4)
    assert logged["train/grad_norm"] > 1e-3  # measured before clipping to 1e-3


def test_progress_bar_and_loggers_show_the_training_loss(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    t = trainer(tmp_path, max_steps=3, limit_val_batches=0, log_every_n_steps=1)
    t.fit(model, tiny_markov)
    assert t.progress_bar_metrics["train/loss"] == pytest.approx(float(t.logged_metrics["train/loss"]))
    assert float(t.logged_metrics["train/loss"]) == pytest.approx(float(model._last_loss))  # the last step's


def test_on_a_gpu_the_loss_is_logged_on_logging_steps_only(tmp_path, tiny_markov, tiny_lm, monkeypatch):
    """The GPU branch (host reads cost a wait), run on CPU: train/loss reaches loggers and bar every 3rd step."""
    import rnn_lightning.tasks.common as common

    monkeypatch.setattr(common, "host_reads_are_free", lambda tensor: False)
    model, losses, logged = tiny_lm(tiny_markov), [], []

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))
            logged.append(float(trainer.progress_bar_metrics.get("train/loss", float("nan"))))

    t = trainer(tmp_path, max_steps=7, limit_val_batches=0, log_every_n_steps=3, callbacks=[Capture()])
    t.fit(model, tiny_markov)
    # Lightning logs at steps 3 and 6 (1-based): the bar holds the last logged value in between
    expected = [float("nan")] * 2 + [losses[2]] * 3 + [losses[5]] * 2
    assert logged == pytest.approx(expected, nan_ok=True)


def test_tokenizer_travels_in_checkpoint_and_generation_works_from_it(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    t = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    t.fit(model, tiny_markov)
    ckpt = tmp_path / "model.ckpt"
    t.save_checkpoint(ckpt)
    loaded = LanguageModel.load_from_checkpoint(ckpt, map_location="cpu")
    assert loaded.tokenizer.to_str() == tiny_markov.tokenizer.to_str()
    assert isinstance(torch.load(ckpt, weights_only=True)["tokenizer"], str)  # plain JSON text, no pickle
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    text = loaded.generate(max_new_tokens=10, seed=0)
    assert text == model.generate(max_new_tokens=10, seed=0)
    assert set(text.split()) <= set(tiny_markov.tokenizer.get_vocab())


def test_lr_scheduler_from_yaml_style_callable_watches_val_loss(tiny_markov, tiny_lm):
    from functools import partial

    model = tiny_lm(tiny_markov, optimizer=partial(torch.optim.Adam, lr=1e-3),
                    lr_scheduler=partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5))
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Adam)
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_generate_without_tokenizer_says_how_to_fix():
    model = LanguageModel(vocab_size=10, embedding_dim=4, hidden_size=4, num_layers=1)
    with pytest.raises(RuntimeError, match="has no tokenizer"):
        model.generate()


def test_validate_then_fit_then_validate_reuses_metric_states(tmp_path, tiny_markov, tiny_lm):
    """A metric reset under inference mode (validate) must still update inside fit's validation loop."""
    model = tiny_lm(tiny_markov)
    t = trainer(tmp_path, max_steps=3, limit_val_batches=2)
    t.validate(model, tiny_markov, verbose=False)
    t.fit(model, tiny_markov)
    (metrics,) = t.validate(model, tiny_markov, verbose=False)
    assert math.isfinite(metrics["val/ppl"])


def test_one_step_is_sgd_on_the_gradient_clipped_to_the_norm(tmp_path, tiny_markov, tiny_lm):
    """The update equals w - lr * g * min(1, clip / ||g||) computed here in float64 from the raw gradient."""
    clip, lr = 1e-3, 20.0
    model = tiny_lm(tiny_markov, optimizer=lambda params: torch.optim.SGD(params, lr=lr))
    before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    raw = {}

    class Capture(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # before the task clips
            raw.update({n: p.grad.detach().double().clone() for n, p in pl_module.named_parameters()
                        if p.grad is not None})

    t = trainer(tmp_path, max_steps=1, limit_val_batches=0, gradient_clip_val=clip, callbacks=[Capture()])
    t.fit(model, tiny_markov)
    norm = torch.cat([g.flatten() for g in raw.values()]).norm()
    assert norm > clip  # clipping acts
    for name, p in model.named_parameters():
        expected = before[name] - lr * raw.get(name, torch.zeros_like(before[name])) * (clip / norm)
        torch.testing.assert_close(p.detach().double(), expected, rtol=1e-5, atol=1e-7)
