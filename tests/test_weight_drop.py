"""Weight drop (``rnn_lightning.nn.weight_drop``) against hand-written float64 recurrences and plain ``torch.nn``."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rnn_lightning.nn.weight_drop import WeightDropGRU, WeightDropLSTM, WeightDropRNN

P = 0.4
KEEP = 1.0 - P


def lstm_by_hand(x, layers, h0, c0):
    """A stacked LSTM written out (torch's gate order i, f, g, o); ``layers`` holds (w_ih, w_hh, b_ih, b_hh)."""
    outputs = x  # (B, T, D)
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        h, c, steps = h0[k], c0[k], []
        for t in range(outputs.shape[1]):
            i, f, g, o = (outputs[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            steps.append(h)
        outputs = torch.stack(steps, dim=1)  # (B, T, H)
    return outputs


def dropped(module, name):
    return getattr(module, name) * module.last_masks[name] / KEEP


def test_training_forward_equals_a_hand_written_dropconnect_lstm_in_float64():
    torch.manual_seed(0)
    lstm = WeightDropLSTM(3, 5, num_layers=2, batch_first=True, weight_drop=P).double()
    x, h0, c0 = torch.randn(4, 6, 3).double(), torch.randn(2, 4, 5).double(), torch.randn(2, 4, 5).double()
    out, _ = lstm(x, (h0, c0))
    layers = [(getattr(lstm, f"weight_ih_l{k}"), dropped(lstm, f"weight_hh_l{k}"), getattr(lstm, f"bias_ih_l{k}"),
               getattr(lstm, f"bias_hh_l{k}")) for k in range(2)]
    torch.testing.assert_close(out, lstm_by_hand(x, layers, h0, c0), rtol=0, atol=1e-12)
    # one mask per matrix, and it does drop about P of the entries
    for mask in lstm.last_masks.values():
        assert mask.shape == (20, 5) and 0.1 < 1 - mask.double().mean() < 0.7


@pytest.mark.parametrize("cls, plain", [(WeightDropLSTM, nn.LSTM), (WeightDropGRU, nn.GRU), (WeightDropRNN, nn.RNN)])
def test_equals_the_plain_module_with_the_dropped_matrices_and_gradients_go_through_the_mask(cls, plain):
    torch.manual_seed(1)
    kwargs = dict(input_size=3, hidden_size=4, num_layers=2, batch_first=True, bidirectional=True)
    module = cls(**kwargs, weight_drop=P).double()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    out, _ = module(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)

    reference = plain(**kwargs).double()
    reference.load_state_dict(module.state_dict())
    names = [n for n in module._flat_weights_names if n.startswith("weight_hh")]
    assert names == sorted(module.last_masks) and len(names) == 4  # every layer and direction
    with torch.no_grad():
        for name in names:
            getattr(reference, name).copy_(dropped(module, name))
    ref_out, _ = reference(x)
    ref_out.backward(grad_out)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    for name, param in module.named_parameters():
        expected = getattr(reference, name).grad
        if name in module.last_masks:  # d/dW_raw = mask / (1 - p) * d/dW_dropped: zero where dropped
            expected = expected * module.last_masks[name] / KEEP
            assert (param.grad[~module.last_masks[name]] == 0).all()
        torch.testing.assert_close(param.grad, expected, rtol=0, atol=1e-12)


def test_fresh_masks_each_training_forward_and_none_in_eval_or_at_zero():
    torch.manual_seed(2)
    lstm = WeightDropLSTM(3, 8, batch_first=True, weight_drop=P)
    x = torch.randn(2, 4, 3)
    first, _ = lstm(x)
    mask = lstm.last_masks["weight_hh_l0"].clone()
    second, _ = lstm(x)
    assert not torch.equal(mask, lstm.last_masks["weight_hh_l0"]) and not torch.allclose(first, second)

    plain = nn.LSTM(3, 8, batch_first=True)
    plain.load_state_dict(lstm.state_dict())  # same keys as nn.LSTM
    assert list(lstm.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    lstm.eval()
    assert torch.equal(lstm(x)[0], plain(x)[0])
    lstm.train()
    lstm.weight_drop = 0.0
    assert torch.equal(lstm(x)[0], plain(x)[0])


def test_no_warnings_in_training_eval_packed_input_and_bf16_autocast():
    torch.manual_seed(3)
    lstm = WeightDropLSTM(3, 6, num_layers=2, batch_first=True, weight_drop=P)
    x = torch.randn(3, 5, 3)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5, 3, 2]), batch_first=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        lstm(x)[0].sum().backward()
        lstm(packed)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(x)
        lstm.eval()
        lstm(x)
    assert not caught
    assert out.dtype == torch.bfloat16


def test_bf16_autocast_runs_the_plain_module_on_the_dropped_weights():
    torch.manual_seed(4)
    lstm = WeightDropLSTM(3, 6, batch_first=True, weight_drop=P)
    x = torch.randn(2, 5, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = lstm(x)
    reference = nn.LSTM(3, 6, batch_first=True)
    reference.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        reference.weight_hh_l0.copy_(dropped(lstm, "weight_hh_l0"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_out, _ = reference(x)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)


def test_parameters_in_one_buffer_give_dropped_weights_in_one_buffer_at_the_same_offsets():
    """The cuDNN layout (every weight a view of one storage, maybe with gaps), built by hand on the CPU."""
    torch.manual_seed(5)
    lstm = WeightDropLSTM(3, 4, num_layers=2, batch_first=True, weight_drop=P).double()
    names = lstm._flat_weights_names
    gap = 3  # elements between consecutive weights, as an alignment would leave
    total = sum(getattr(lstm, n).numel() + gap for n in names)
    buffer, offset = torch.zeros(total, dtype=torch.float64), 0
    for name in names:
        param = getattr(lstm, name)
        view = buffer[offset:offset + param.numel()].view_as(param)
        view.copy_(param.detach())
        param.data = view
        offset += param.numel() + gap
    weights = lstm.dropped_weights()
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 1
    assert weights[0].untyped_storage().nbytes() == buffer.untyped_storage().nbytes()
    for name, w in zip(names, weights, strict=True):
        raw = getattr(lstm, name)
        assert w.storage_offset() == raw.storage_offset() and w.is_contiguous()
        assert torch.equal(w, dropped(lstm, name) if name in lstm.last_masks else raw)
    sum(w.sum() for w in weights).backward()
    torch.testing.assert_close(lstm.weight_hh_l1.grad, lstm.last_masks["weight_hh_l1"].double() / KEEP, rtol=0, atol=0)
    torch.testing.assert_close(lstm.weight_ih_l1.grad, torch.ones_like(lstm.weight_ih_l1), rtol=0, atol=0)


@pytest.mark.parametrize("value", [1.0, -0.1, "0.5"])
def test_a_bad_probability_is_refused_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"`weight_drop` must be a probability in \[0, 1\)"):
        WeightDropLSTM(3, 4, weight_drop=value)


def _ddp_worker(rank: int, world: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial weights on both ranks
    lstm = WeightDropLSTM(3, 4, batch_first=True, weight_drop=P).double()
    ddp = nn.parallel.DistributedDataParallel(lstm)
    torch.manual_seed(100 + rank)  # each rank its own data and masks
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    ddp(x)[0].sum().backward()
    # this rank's own gradient of the raw weight, from a plain LSTM on its dropped matrix
    reference = nn.LSTM(3, 4, batch_first=True).double()
    reference.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        reference.weight_hh_l0.copy_(dropped(lstm, "weight_hh_l0"))
    reference(x)[0].sum().backward()
    local = reference.weight_hh_l0.grad * lstm.last_masks["weight_hh_l0"] / KEEP
    gathered = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    results[rank] = (lstm.weight_hh_l0.grad.clone(), torch.stack(gathered).mean(0))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_averages_the_gradients_of_the_raw_weight_over_ranks():
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, 29517, results), nprocs=2, join=True)
    for rank in range(2):
        grad, expected_mean = results[rank]
        torch.testing.assert_close(grad, expected_mean, rtol=0, atol=1e-12)
    assert torch.equal(results[0][0], results[1][0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cudnn_takes_the_dropped_weights_without_a_copy_or_a_warning():
    torch.manual_seed(6)
    lstm = WeightDropLSTM(8, 16, num_layers=3, batch_first=True, weight_drop=P).cuda()
    x = torch.randn(4, 7, 8, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        out, _ = lstm(x)
        out.sum().backward()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lstm(x)[0].float().sum().backward()
        lstm.eval()
        lstm(x)
    assert not caught
    weights = lstm.dropped_weights()  # views of one new buffer, where cuDNN expects them
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 1
    assert [w.data_ptr() - weights[0].data_ptr() for w in weights] == [
        getattr(lstm, n).data_ptr() - lstm.weight_ih_l0.data_ptr() for n in lstm._flat_weights_names]
    lstm.train()
    out, _ = lstm(x)
    reference = nn.LSTM(8, 16, num_layers=3, batch_first=True).cuda()
    reference.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        for name in lstm.last_masks:
            getattr(reference, name).copy_(dropped(lstm, name))
    torch.testing.assert_close(out, reference(x)[0], rtol=1e-5, atol=1e-5)
