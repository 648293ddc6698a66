"""AWD-LSTM's network as options of ``RNNLanguageModelNet`` / ``RecurrentEncoder``: a smaller last layer (tied, no
projection), weight drop and locked dropout in the layer-by-layer stack, against a hand-written float64 LSTM."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnn_lightning.nn import EncoderConfig, RecurrentEncoder, RNNLanguageModelNet
from rnn_lightning.nn.locked_dropout import LockedDropout
from rnn_lightning.nn.weight_drop import WeightDropLSTM

AWD = dict(embedding_dim=6, hidden_size=10, num_layers=3, last_hidden_size=6, dropout=0.3, weight_drop=0.5,
           dropout_words=0.1, locked_dropout=True)


def lstm_reference(x, w_ih, w_hh, b_ih, b_hh, h=None, c=None):
    """One LSTM layer, step by step (gates i, f, g, o as torch orders them): x (B, T, D) -> (B, T, H), (h, c)."""
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[0], hidden) if h is None else h
    c = x.new_zeros(x.shape[0], hidden) if c is None else c
    outputs = []
    for t in range(x.shape[1]):
        i, f, g, o = (x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1), (h, c)


def layer_params(layer: nn.LSTM, masks: dict | None = None, keep: float = 1.0):
    w_hh = layer.weight_hh_l0
    if masks is not None:
        w_hh = w_hh * masks["weight_hh_l0"].to(w_hh.dtype) / keep  # DropConnect by hand
    return layer.weight_ih_l0, w_hh, layer.bias_ih_l0, layer.bias_hh_l0


def test_awd_network_in_eval_equals_the_hand_written_layers_with_a_tied_decoder():
    torch.manual_seed(0)
    net = RNNLanguageModelNet(20, encoder=EncoderConfig(**AWD), tie_weights=True).double().eval()
    assert isinstance(net.projection, nn.Identity)  # last layer = embedding size: tying needs no projection
    assert net.decoder.weight is net.embedding.weight
    assert [layer.hidden_size for layer in net.encoder.rnn.layers] == [10, 10, 6]
    tokens = torch.randint(0, 20, (2, 7))
    logits, (h, c) = net(tokens)
    x = net.embedding.weight[tokens]  # (B, T, E)
    finals = []
    for layer in net.encoder.rnn.layers:
        x, final = lstm_reference(x, *layer_params(layer))
        finals.append(final)
    expected = x @ net.embedding.weight.T + net.decoder.bias  # (B, T, V)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    assert h.shape == (3, 2, 10)  # one state tensor, the last layer's rows zero-padded to the widest
    torch.testing.assert_close(h[2, :, :6], finals[2][0], rtol=0, atol=1e-12)
    assert torch.all(h[2, :, 6:] == 0) and torch.all(c[2, :, 6:] == 0)


def test_a_state_carried_between_windows_with_a_smaller_last_layer_equals_one_long_pass():
    torch.manual_seed(0)
    encoder = RecurrentEncoder(4, 5, num_layers=3, last_hidden_size=3, cell="lstm").double()
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    whole, _ = encoder(x)
    first, state = encoder(x[:, :4])
    second, _ = encoder(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-12)
    assert whole.shape == (2, 9, 3) and encoder.output_dim == 3


def test_weight_drop_in_the_stack_equals_a_hand_computed_dropconnect_forward_and_changes_each_step():
    torch.manual_seed(0)
    net = RNNLanguageModelNet(20, encoder=EncoderConfig(**{**AWD, "dropout": 0.0, "dropout_words": 0.0}),
                              tie_weights=True).double().train()
    layers = net.encoder.rnn.layers
    assert all(isinstance(layer, WeightDropLSTM) and layer.weight_drop == 0.5 for layer in layers)
    tokens = torch.randint(0, 20, (2, 7))
    logits, _ = net(tokens)
    masks = [dict(layer.last_masks) for layer in layers]
    x = net.embedding.weight[tokens]
    for layer, mask in zip(layers, masks, strict=True):
        x, _ = lstm_reference(x, *layer_params(layer, mask, keep=0.5))
    torch.testing.assert_close(logits, x @ net.embedding.weight.T + net.decoder.bias, rtol=0, atol=1e-12)
    net(tokens)
    assert not torch.equal(masks[0]["weight_hh_l0"], layers[0].last_masks["weight_hh_l0"])  # a new mask per step
    plain = RNNLanguageModelNet(20, encoder=EncoderConfig(**{**AWD, "weight_drop": 0.0}), tie_weights=True).double()
    plain.load_state_dict(net.state_dict())  # the same keys: weight drop adds no parameter
    torch.testing.assert_close(net.eval()(tokens)[0], plain.eval()(tokens)[0], rtol=0, atol=0)  # off in eval


def test_locked_dropout_between_layers_keeps_one_mask_per_sequence_over_the_steps():
    torch.manual_seed(0)
    encoder = RecurrentEncoder(4, 8, num_layers=2, dropout=0.5, locked_dropout=True).train()
    stack = encoder.rnn
    assert isinstance(stack.dropout, LockedDropout)
    seen = {}
    stack.layers[0].register_forward_hook(lambda m, args, out: seen.__setitem__("below", out[0]))
    stack.layers[1].register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0]))
    encoder(torch.randn(3, 6, 4))
    ratio = seen["input"] / seen["below"]  # (B, T, H): 0 or 1 / (1 - p) per (sequence, feature)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))  # the same at every step
    assert set(ratio.unique().tolist()) <= {0.0, 2.0} and (ratio == 0).any()
    assert not torch.equal(ratio[0, 0], ratio[1, 0])  # ... but not across sequences (p = 0.5, 8 features)


def test_the_net_uses_locked_dropout_on_embeddings_and_output_and_word_dropout_on_the_embedding():
    net = RNNLanguageModelNet(20, encoder=EncoderConfig(**AWD), tie_weights=True)
    assert isinstance(net.dropout_in, LockedDropout) and isinstance(net.dropout_out, LockedDropout)
    assert net.embedding.dropout == 0.1
    default = RNNLanguageModelNet(20, encoder=EncoderConfig(embedding_dim=6, hidden_size=10, num_layers=3))
    assert type(default.encoder.rnn) is nn.LSTM  # off by default: one fused module, as before
    assert isinstance(default.dropout_in, nn.Dropout)


@pytest.mark.parametrize("kwargs, match", [
    (dict(connection="residual", last_hidden_size=3), "every layer needs the same size"),
    (dict(last_hidden_size=0), "`last_hidden_size` must be a positive integer"),
    (dict(weight_drop=1.0), "`weight_drop` must be a probability"),
])
def test_bad_awd_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecurrentEncoder(4, 5, num_layers=2, **kwargs)


def test_taggers_refuse_locked_dropout_with_the_reason():
    from rnn_lightning.nn.embedder import EmbedEncode

    with pytest.raises(ValueError, match="`locked_dropout=True` is for the language model"):
        EmbedEncode(20, encoder=EncoderConfig(locked_dropout=True))
