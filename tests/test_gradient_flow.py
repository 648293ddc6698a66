"""Gradient flow through time: the unrolled layers, the measurement against float64 loops of the torch.nn cells,
the decay-rate fit against numpy, and GradientFlowMonitor in the real Trainer (training unchanged, three tasks)."""

from __future__ import annotations

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import trainer
from datasets import DatasetDict
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from rnn_lightning import GradientFlowMonitor, LanguageModel, SequenceClassifier, SequenceTagger
from rnn_lightning.functional import decay_rate, measure_gradient_flow, norms_by_distance, spectral_radii
from rnn_lightning.nn import RecurrentEncoder, unrolled

CELLS = {"LSTM": nn.LSTMCell, "GRU": nn.GRUCell, "RNN_TANH": nn.RNNCell}


# -- references: float64 loops of torch.nn's own cells, one sequence at a time, every h_t a graph node --
def reference_stack(rnn: nn.RNNBase, x: torch.Tensor) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """x (1, T, D) float64 through the layers of ``rnn`` (a fused stack, no dropout) -> the output (1, T, H * dirs)
    and each layer's left-to-right states [h_0 .. h_{T-1}], each (1, H)."""
    directions = 2 if rnn.bidirectional else 1
    forward_states = []
    for layer in range(rnn.num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            cell = CELLS[rnn.mode](x.shape[-1], rnn.hidden_size).double()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).data = getattr(rnn, f"{name}_{suffix}").detach().double().clone()
            h = c = x.new_zeros(1, rnn.hidden_size)
            hs = [None] * x.shape[1]
            for t in range(x.shape[1]) if direction == 0 else reversed(range(x.shape[1])):
                if rnn.mode == "LSTM":
                    h, c = cell(x[:, t], (h, c))
                else:
                    h = cell(x[:, t], h)
                hs[t] = h
            if direction == 0:
                forward_states.append(hs)
            outputs.append(torch.stack(hs, 1))
        x = torch.cat(outputs, -1)
    return x, forward_states


def curves_from(per_sequence: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per sequence, per layer, norms (T_b,) at distance 0, 1, ... -> per layer the mean over sequences per distance."""
    layers = len(per_sequence[0])
    curves = []
    for layer in range(layers):
        longest = max(len(seq[layer]) for seq in per_sequence)
        sums, counts = torch.zeros(longest, dtype=torch.float64), torch.zeros(longest)
        for seq in per_sequence:
            n = len(seq[layer])
            sums[:n] += seq[layer]
            counts[:n] += 1
        curves.append(sums / counts)
    return curves


def norms_at_distances(loss: torch.Tensor, states: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    flat = [h for hs in states for h in hs]
    grads = torch.autograd.grad(loss, flat)
    out, start = [], 0
    for hs in states:
        norms = torch.stack([g.norm() for g in grads[start:start + len(hs)]])  # (T,) by step
        out.append(norms.flip(0))  # by distance T-1-t
        start += len(hs)
    return out


# -- the unrolled layers --
@pytest.mark.parametrize("connection", ["none", "dense"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_unrolled_encoder_gives_the_fused_outputs_and_states(connection, cell):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(3, 4, num_layers=2, cell=cell, bidirectional=True, connection=connection)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    carried = encoder(torch.randn(3, 2, 3))[1]  # a state from an earlier call
    for kwargs in ({"lengths": lengths}, {"state": carried}):
        expected, expected_state = encoder(x, **kwargs)
        with unrolled(encoder) as layers:
            got, state = encoder(x, **kwargs)
        assert len(layers) == 2 and all(len(layer.states) == 6 for layer in layers)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
        for a, b in zip(state if isinstance(state, tuple) else (state,),
                        expected_state if isinstance(expected_state, tuple) else (expected_state,)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert "forward" not in vars(encoder.rnn) and not any("forward" in vars(m) for m in encoder.modules())


# -- the measurement against float64 references --
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_language_model_norms_equal_a_float64_loop_of_the_cells(cell):
    torch.manual_seed(0)
    lm = LanguageModel(vocab_size=11, embedding_dim=5, hidden_size=6, num_layers=2, cell=cell,
                       dropout_embedding=0.3, dropout_between=0.3, dropout_output=0.3)  # dropout: off when measured
    tokens, targets = torch.randint(1, 11, (3, 9)), torch.randint(1, 11, (3, 9))
    flow = measure_gradient_flow(lm, lm.recurrent_encoder(), lambda: lm.last_step_losses((tokens, targets)))

    net, per_sequence = lm.net, []
    for b in range(3):
        out, states = reference_stack(net.encoder.rnn, net.embedding.weight.double()[tokens[b:b + 1]])
        logits = out[:, -1] @ net.decoder.weight.double().T + net.decoder.bias.double()
        per_sequence.append(norms_at_distances(F.cross_entropy(logits, targets[b:b + 1, -1]), states))
    for got, expected in zip(flow.norms, curves_from(per_sequence), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)
    assert lm.training and all(p.grad is None for p in lm.parameters())  # train mode back, no .grad written


def test_tagger_norms_on_a_padded_bidirectional_batch_equal_each_sentence_alone():
    torch.manual_seed(0)
    tagger = SequenceTagger(vocab_size=13, num_labels=4, embedding_dim=5, hidden_size=4, num_layers=2,
                            dropout=0.5, crf=True)
    lengths = torch.tensor([7, 3, 5, 1])
    tokens = torch.randint(1, 13, (4, 7)) * (torch.arange(7) < lengths[:, None])
    tags = torch.randint(0, 4, (4, 7))
    batch = {"tokens": tokens, "lengths": lengths, "tags": tags}
    flow = measure_gradient_flow(tagger, tagger.recurrent_encoder(), lambda: tagger.last_step_losses(batch))

    net, per_sequence = tagger.net, []
    for b, n in enumerate(lengths.tolist()):
        out, states = reference_stack(net.body.encoder.rnn, net.body.embedding.weight.double()[tokens[b:b + 1, :n]])
        scores = out[:, -1] @ net.scorer.weight.double().T + net.scorer.bias.double()
        per_sequence.append(norms_at_distances(F.cross_entropy(scores, tags[b:b + 1, n - 1]), states))
    for got, expected in zip(flow.norms, curves_from(per_sequence), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)


def test_norms_by_distance_leaves_out_sequences_without_a_loss():
    norms = torch.tensor([[1.0, 2.0, 4.0], [3.0, 5.0, 0.0], [7.0, 0.0, 0.0]])
    # the third sequence (length 2) has no gradient at its last step: an ignored target
    assert norms_by_distance(norms, torch.tensor([3, 2, 2])).tolist() == [4.5, 2.5, 1.0]
    assert norms_by_distance(norms[1:], torch.tensor([2, 2])).tolist() == [5.0, 3.0]


def test_decay_rate_is_minus_numpys_polyfit_slope_of_the_log_norms():
    rng = np.random.default_rng(0)
    norms = np.exp(-0.3 * np.arange(20) + rng.normal(0, 0.5, 20))
    norms[[4, 11]] = [0.0, np.nan]  # skipped: no log
    keep = np.isfinite(norms) & (norms > 0)
    slope = np.polyfit(np.arange(20)[keep], np.log(norms[keep]), 1)[0]
    assert decay_rate(torch.tensor(norms)) == pytest.approx(-slope, rel=1e-12)
    assert math.isnan(decay_rate(torch.tensor([0.5, 0.0])))


def test_a_small_tanh_rnn_vanishes_faster_than_an_lstm_with_forget_bias_one():
    torch.manual_seed(0)
    batch = (torch.randint(1, 20, (8, 30)), torch.randint(1, 20, (8, 30)))
    rates = {}
    for cell in ("rnn_tanh", "lstm"):
        lm = LanguageModel(vocab_size=20, embedding_dim=16, hidden_size=32, num_layers=2, cell=cell)
        rnn = lm.net.encoder.rnn
        for layer in range(2):
            if cell == "rnn_tanh":
                nn.init.uniform_(getattr(rnn, f"weight_hh_l{layer}"), -0.05, 0.05)  # small recurrent weights
            else:
                bias = getattr(rnn, f"bias_ih_l{layer}").data
                bias[32:64] = 1.0  # the forget gate's block
                getattr(rnn, f"bias_hh_l{layer}").data[32:64] = 0.0
        flow = measure_gradient_flow(lm, lm.recurrent_encoder(), lambda lm=lm: lm.last_step_losses(batch))
        rates[cell] = flow.decay_rates
    assert all(rnn > lstm + 0.5 for rnn, lstm in zip(rates["rnn_tanh"], rates["lstm"])), rates


def test_spectral_radii_are_numpys_largest_eigenvalue_of_each_gate_block():
    torch.manual_seed(0)
    for cell, gates in (("lstm", ["input", "forget", "cell", "output"]), ("gru", ["reset", "update", "new"]),
                        ("rnn_tanh", [""])):
        encoder = RecurrentEncoder(3, 5, num_layers=2, cell=cell)
        with unrolled(encoder) as layers:
            encoder(torch.randn(1, 2, 3))
        for index, layer in enumerate(layers):
            blocks = np.split(getattr(encoder.rnn, f"weight_hh_l{index}").detach().double().numpy(), len(gates))
            expected = {gate: np.abs(np.linalg.eigvals(block)).max() for gate, block in zip(gates, blocks)}
            assert spectral_radii(layer) == pytest.approx(expected, rel=1e-12)


# -- the callback in the Trainer --
def fit_lm(tmp_path, dm, tiny_lm, callbacks, **kwargs):
    L.seed_everything(0, verbose=False)
    model = tiny_lm(dm, dropout_embedding=0.3, dropout_between=0.3, dropout_output=0.3, cell="gru",
                    optimizer=lambda params: torch.optim.SGD(params, lr=20))  # large steps: clipping has work to do
    trainer(tmp_path, callbacks=callbacks, limit_val_batches=0, **kwargs).fit(model, dm)
    return model


def test_the_monitor_leaves_training_unchanged(tmp_path, tiny_markov, tiny_lm):
    monitor = GradientFlowMonitor(every_n_steps=2)
    watched = fit_lm(tmp_path, tiny_markov, tiny_lm, [monitor], max_steps=7, gradient_clip_val=0.5)
    plain = fit_lm(tmp_path, tiny_markov, tiny_lm, [], max_steps=7, gradient_clip_val=0.5)
    assert [record["step"] for record in monitor.history] == [0, 2, 4, 6]
    for (name, a), b in zip(watched.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_clipped_steps_count_the_logged_norms_above_the_clip_value(tmp_path, tiny_markov, tiny_lm):
    clip = 0.9
    monitor = GradientFlowMonitor(every_n_steps=3)
    logger = CSVLogger(tmp_path, name="run")
    fit_lm(tmp_path, tiny_markov, tiny_lm, [monitor], max_steps=10, gradient_clip_val=clip, logger=logger,
           log_every_n_steps=1)
    rows = list(csv.DictReader(open(f"{logger.log_dir}/metrics.csv")))
    norms = [float(row["train/grad_norm"]) for row in rows if row.get("train/grad_norm")]  # one per step, in order
    logged = {int(row["step"]): float(row["gradflow/clipped_steps"]) for row in rows
              if row.get("gradflow/clipped_steps")}
    expected = {step: float(sum(n > clip for n in norms[step - 3:step])) for step in (3, 6, 9)}
    assert len(norms) == 10 and {k: logged[k] for k in expected} == expected
    assert 0 < sum(expected.values()) < 9  # some steps clipped, some not: the count tells them apart
    keys = {"gradflow/decay_rate/layer0", "gradflow/decay_rate/layer1", "gradflow/spectral_radius/layer1/update"}
    assert keys <= set(rows[0])


@pytest.mark.parametrize("task", ["tagger", "classifier", "connected_lm"])
def test_the_monitor_measures_each_task_and_connected_stacks(tmp_path, task, tiny_markov, tiny_lm):
    from test_classification import corpus
    from test_tagging import rule_corpus

    from rnn_lightning import TaggingDataModule, TextClassificationDataModule

    torch.manual_seed(0)
    if task == "tagger":  # characters too: their BiRNN is not one of the measured layers
        data = DatasetDict(train=rule_corpus(40, 0), validation=rule_corpus(5, 1))
        dm = TaggingDataModule(dataset=data, batch_size=8, char_features=True)
        model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, char_vocab=dm.char_vocab,
                               embedding_dim=8, hidden_size=8, num_layers=2, cell="rnn_tanh", crf=True)
    elif task == "classifier":
        data = DatasetDict(train=corpus(40, 0), validation=corpus(5, 1))
        dm = TextClassificationDataModule(dataset=data, batch_size=8)
        model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, embedding_dim=8, hidden_size=8,
                                   num_layers=3, connection="highway", pooling="final")
    else:
        dm, model = tiny_markov, tiny_lm(tiny_markov, num_layers=3, connection="residual")
    monitor = GradientFlowMonitor(every_n_steps=2)
    trainer(tmp_path, callbacks=[monitor], max_steps=3, limit_val_batches=0).fit(model, dm)
    assert [record["step"] for record in monitor.history] == [0, 2]
    layers = model.hparams.num_layers
    for record in monitor.history:
        assert len(record["norms"]) == layers
        assert all(curve[0] > 0 and all(math.isfinite(v) for v in curve) for curve in record["norms"])
        rates = [record["scalars"][f"gradflow/decay_rate/layer{i}"] for i in range(layers)]
        assert all(math.isfinite(rate) for rate in rates)
        assert "gradflow/clipped_steps" not in record["scalars"]  # no clipping configured


def test_bad_arguments_and_a_module_without_the_hooks_are_refused(tmp_path):
    from lightning.pytorch.demos.boring_classes import BoringModel

    with pytest.raises(ValueError, match="`every_n_steps` must be a positive integer, got 0"):
        GradientFlowMonitor(every_n_steps=0)
    with pytest.raises(ValueError, match=r"`encoder` \(Linear\) holds no torch.nn LSTM, GRU or RNN"):
        measure_gradient_flow(nn.Linear(2, 2), nn.Linear(2, 2), lambda: torch.zeros(1))
    with pytest.raises(TypeError, match="BoringModel lacks"):
        trainer(tmp_path, callbacks=[GradientFlowMonitor()], max_steps=1).fit(BoringModel())


@pytest.mark.slow
def test_wandb_gets_the_curves_as_images_with_matplotlib_else_as_tables(tmp_path, tiny_markov, tiny_lm, monkeypatch):
    import importlib.util
    import json

    import wandb
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monitor = GradientFlowMonitor(every_n_steps=2)
    logger = WandbLogger(save_dir=tmp_path, offline=True, project="gradflow")
    fit_lm(tmp_path, tiny_markov, tiny_lm, [monitor], max_steps=3, logger=logger)
    wandb.finish()
    wandb.teardown()  # stop this process's W&B service: later tests start their own
    media = tmp_path / "wandb" / "latest-run" / "files" / "media"
    if importlib.util.find_spec("matplotlib") is not None:
        assert len(list((media / "images" / "gradflow").glob("curve_*.png"))) == 2
        return
    tables = sorted((media / "table" / "gradflow").glob("curve_*.table.json"), key=lambda p: p.stat().st_mtime)
    assert len(tables) == 2
    for path, record in zip(tables, monitor.history, strict=True):
        table = json.loads(path.read_text())
        assert table["columns"] == ["step", "layer", "distance", "grad_norm"]
        expected = [[record["step"], layer, distance, norm] for layer, curve in enumerate(record["norms"])
                    for distance, norm in enumerate(curve)]
        assert table["data"] == expected
