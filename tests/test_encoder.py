"""RecurrentEncoder against the lecture's recurrences written out by hand in float64."""

import math

import pytest
import torch

from rnn_lightning.nn import ConnectedStack, EncoderConfig, RecurrentEncoder, RNNLanguageModelNet


def _reference(cell: str, weights: dict, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Loop over time steps and layers: h_t = f(W_x x_t + W_h h_{t-1} + b), with LSTM/GRU gates."""
    B, T, _ = x.shape
    layer_in = x
    for layer in range(num_layers):
        w_ih, w_hh = weights[f"weight_ih_l{layer}"], weights[f"weight_hh_l{layer}"]
        b = weights[f"bias_ih_l{layer}"] + weights[f"bias_hh_l{layer}"]
        H = w_hh.shape[1]
        h, c, outs = torch.zeros(B, H, dtype=x.dtype), torch.zeros(B, H, dtype=x.dtype), []
        for t in range(T):
            xt = layer_in[:, t]
            if cell == "lstm":
                i, f, g, o = (xt @ w_ih.T + h @ w_hh.T + b).chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # additive cell update
                h = torch.sigmoid(o) * torch.tanh(c)
            elif cell == "gru":
                gi, gh = xt @ w_ih.T + weights[f"bias_ih_l{layer}"], h @ w_hh.T + weights[f"bias_hh_l{layer}"]
                r = torch.sigmoid(gi[:, :H] + gh[:, :H])
                z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
                n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
                h = (1 - z) * n + z * h
            else:
                act = torch.tanh if cell == "rnn_tanh" else torch.relu
                h = act(xt @ w_ih.T + h @ w_hh.T + b)
            outs.append(h)
        layer_in = torch.stack(outs, 1)
    return layer_in


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_encoder_matches_handwritten_recurrence(cell):
    torch.manual_seed(0)
    enc = RecurrentEncoder(5, 7, num_layers=2, cell=cell)
    x = torch.randn(3, 6, 5)
    out, _ = enc(x)
    weights = {k: v.double() for k, v in enc.rnn.named_parameters()}
    ref = _reference(cell, weights, x.double(), 2)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)


def test_carried_state_equals_one_long_pass():
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, 6, num_layers=2, cell="lstm")
    x = torch.randn(2, 10, 4)
    whole, _ = enc(x)
    first, state = enc(x[:, :4])
    second, _ = enc(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_bidirectional_output_dim_and_reverse_direction():
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, 3, cell="gru", bidirectional=True)
    x = torch.randn(2, 5, 4)
    out, _ = enc(x)
    assert out.shape == (2, 5, 6) and enc.output_dim == 6
    # The backward half at step t only depends on steps >= t: changing step 0 leaves step 4's backward half.
    x2 = x.clone()
    x2[:, 0] += 1.0
    out2, _ = enc(x2)
    torch.testing.assert_close(out[:, 4, 3:], out2[:, 4, 3:])
    assert not torch.allclose(out[:, 4, :3], out2[:, 4, :3])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cell="transformer"), r"`cell` must be one of \('rnn_tanh', 'rnn_relu', 'gru', 'lstm'\), got 'transf"),
        (dict(connection="skip"), r"`connection` must be one of \('none', 'residual', 'dense', 'highway'\), got 'sk"),
        (dict(num_layers=0), "`num_layers` must be a positive integer"),
        (dict(dropout=1.0), r"`dropout` must be a probability in \[0, 1\)"),
        (dict(dropout=-0.1), "`dropout`"),
    ],
)
def test_encoder_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecurrentEncoder(4, 4, **kwargs)


def test_connected_stack_names_a_bad_connection_as_the_encoder_does():
    with pytest.raises(ValueError, match=r"`connection` must be one of \(.*\), got 'skip'\.$"):
        ConnectedStack(4, 4, num_layers=2, connection="skip")


def test_language_model_refuses_bidirectional_with_reason():
    with pytest.raises(ValueError, match="`bidirectional=True` is not allowed.*see the word it must predict"):
        RNNLanguageModelNet(10, encoder=EncoderConfig(bidirectional=True))


def test_tied_weights_share_one_parameter_with_projection_when_sizes_differ():
    net = RNNLanguageModelNet(30, encoder=EncoderConfig(embedding_dim=8, hidden_size=16), tie_weights=True)
    assert net.decoder.weight is net.embedding.weight
    assert net.projection.weight.shape == (8, 16)
    untied = RNNLanguageModelNet(30, encoder=EncoderConfig(embedding_dim=8, hidden_size=16))
    n_tied = sum(p.numel() for p in net.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == 30 * 16 - 16 * 8  # decoder (V, H) replaced by a projection (E, H)
    same = RNNLanguageModelNet(30, encoder=EncoderConfig(embedding_dim=16, hidden_size=16), tie_weights=True)
    assert isinstance(same.projection, torch.nn.Identity)


def test_dropouts_are_validated_and_applied_only_in_training():
    with pytest.raises(ValueError, match="`dropout_embedding`"):
        EncoderConfig(dropout_embedding=1.5)
    net = RNNLanguageModelNet(20, encoder=EncoderConfig(embedding_dim=8, hidden_size=8, num_layers=2, dropout=0.5))
    tokens = torch.randint(0, 20, (2, 6))
    net.eval()
    a, _ = net(tokens)
    b, _ = net(tokens)
    torch.testing.assert_close(a, b)
    net.train()
    c, _ = net(tokens)
    assert not torch.allclose(a, c)


def test_tasks_wire_each_encoder_setting_by_name():
    """Each task argument that names an EncoderConfig field reaches the network's config (none dropped or swapped)."""
    import inspect
    from dataclasses import fields

    from rnn_lightning import LanguageModel, SequenceClassifier, SequenceTagger

    shared = dict(embedding_dim=6, hidden_size=5, num_layers=2, cell="gru", connection="residual", pad_id=3)
    labeled = dict(shared, bidirectional=True, dropout=0.25, word_dropout=0.125, unk_id=2)
    chars = dict(char_embedding_dim=4, char_hidden_size=3)
    tagger = SequenceTagger(20, 3, **labeled, **chars, char_vocab=list("abcdefg"))
    assert tagger.net.body.config == EncoderConfig(**labeled, **chars, num_chars=7)
    classifier = SequenceClassifier(20, 3, **labeled)
    assert classifier.net.body.config == EncoderConfig(**labeled)
    lm = LanguageModel(20, **shared, dropout_embedding=0.1, dropout_between=0.2, dropout_output=0.3)
    assert lm.net.config == EncoderConfig(**shared, dropout=0.2, dropout_embedding=0.1, dropout_output=0.3)
    awd = dict(embedding_dim=6, hidden_size=5, num_layers=3, last_hidden_size=6, weight_drop=0.5, dropout_words=0.1,
               locked_dropout=True)
    assert LanguageModel(20, **awd, dropout_between=0.2, dropout_embedding=0.6, dropout_output=0.4).net.config == \
        EncoderConfig(**awd, dropout=0.2, dropout_embedding=0.6, dropout_output=0.4)
    assert SequenceTagger(20, 3, forget_bias=2.0).net.body.config.forget_bias == 2.0
    assert SequenceClassifier(20, 3, forget_bias=2.0).net.body.config.forget_bias == 2.0
    assert LanguageModel(20, forget_bias=2.0).net.config.forget_bias == 2.0
    names = {field.name for field in fields(EncoderConfig)}
    for task, given in ((SequenceTagger, {*labeled, *chars, "forget_bias"}),
                        (SequenceClassifier, {*labeled, "forget_bias"}),
                        (LanguageModel, {*shared, *awd, "dropout_embedding", "dropout_output", "bidirectional",
                                         "forget_bias"})):
        assert names & set(inspect.signature(task).parameters) == given, task.__name__
    with pytest.raises(ValueError, match="`bidirectional=True` is not allowed"):
        LanguageModel(20, bidirectional=True)


@pytest.mark.parametrize("connection, weight_drop", [("none", 0.0), ("residual", 0.0), ("none", 0.5)])
def test_forget_bias_opens_the_forget_gate_of_every_layer_and_direction(connection, weight_drop):
    """With zero weights and every other bias zero, the cell keeps sigmoid(forget_bias) of itself per step (the
    input gate multiplies tanh(0) = 0), so T steps from c_0 = 1 leave sigmoid(forget_bias) ** T."""
    torch.manual_seed(0)
    shape = dict(num_layers=2, cell="lstm", bidirectional=True, connection=connection, weight_drop=weight_drop)
    default = RecurrentEncoder(3, 4, **shape)
    torch.manual_seed(0)
    opened = RecurrentEncoder(3, 4, **shape, forget_bias=1.5)
    for (name, before), after in zip(default.named_parameters(), opened.parameters(), strict=True):
        if name.rsplit(".", 1)[-1].startswith("bias"):  # only the forget block moved
            torch.testing.assert_close(after[:4], before[:4]), torch.testing.assert_close(after[8:], before[8:])
            assert after[4:8].tolist() == ([1.5] * 4 if "bias_ih" in name else [0.0] * 4), name
        else:
            torch.testing.assert_close(after, before)
    with torch.no_grad():
        for name, param in opened.named_parameters():
            param.copy_(torch.zeros_like(param) if "weight" in name or "bias_hh" in name else
                        torch.cat([torch.zeros(4), torch.full((4,), 1.5), torch.zeros(8)]))
    h0, c0 = torch.zeros(4, 1, 4), torch.ones(4, 1, 4)
    _, (_, c) = opened(torch.randn(1, 6, 3), (h0, c0))
    torch.testing.assert_close(c, torch.full_like(c, (1 / (1 + math.exp(-1.5))) ** 6))


def test_forget_bias_is_refused_for_cells_without_a_forget_gate_and_for_non_numbers():
    with pytest.raises(ValueError, match="`forget_bias`.*cell='gru' has no forget gate"):
        RecurrentEncoder(3, 4, cell="gru", forget_bias=1.0)
    with pytest.raises(ValueError, match="`forget_bias` must be a number or None, got '1'"):
        EncoderConfig(forget_bias="1").recurrent_encoder(3)
