"""Direct connections between stacked recurrent layers: residual, dense, highway (rnn_lightning.nn.stack)."""

from __future__ import annotations

import pytest
import torch

from rnn_lightning.nn import RecurrentEncoder

CONNECTED = ["residual", "dense", "highway"]


def brute_force(encoder: RecurrentEncoder, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """One sequence (1, T, D), no padding, layer by layer with the formulas of the stack's docstring."""
    stack = encoder.rnn
    below, seen, finals = x, [x], []
    for index, rnn in enumerate(stack.layers):
        layer_input = torch.cat(seen, -1) if stack.connection == "dense" and index > 0 else below
        out, final = rnn(layer_input)
        if index > 0 and stack.connection == "residual":
            out = out + below
        if index > 0 and stack.connection == "highway":
            gate = stack.gates[index - 1]
            g = torch.sigmoid(below @ gate.weight.T + gate.bias)
            out = g * out + (1 - g) * below
        below = out
        seen.append(out)
        finals.append(final)
    return below, finals


@pytest.mark.parametrize("connection", CONNECTED)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_packed_batch_equals_each_sequence_alone_by_the_formulas(connection, cell):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(6, 5, num_layers=3, cell=cell, bidirectional=True, dropout=0.3,
                               connection=connection).double().eval()
    x = torch.randn(4, 9, 6, dtype=torch.float64)
    lengths = torch.tensor([9, 3, 1, 6])
    outputs, state = encoder(x, lengths=lengths)  # (B, T, 2H), (3 * 2, B, H) [x2 for the LSTM]
    assert outputs.shape == (4, 9, 10)
    for b, n in enumerate(lengths.tolist()):
        expected, finals = brute_force(encoder, x[b : b + 1, :n])
        torch.testing.assert_close(outputs[b, :n], expected[0], rtol=0, atol=1e-12)
        assert torch.all(outputs[b, n:] == 0)  # padding stays zero
        for layer, final in enumerate(finals):
            for got, want in zip(*((state, final) if cell == "lstm" else ((state,), (final,)))):
                torch.testing.assert_close(got[2 * layer : 2 * layer + 2, b], want[:, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("connection", CONNECTED)
def test_state_carries_across_calls_like_one_long_sequence(connection):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(4, 3, num_layers=2, cell="lstm", connection=connection).double()
    x = torch.randn(2, 10, 4, dtype=torch.float64)
    whole, _ = encoder(x)
    first, state = encoder(x[:, :6])
    second, _ = encoder(x[:, 6:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=1e-12)


def test_highway_gates_choose_between_carrying_the_input_and_the_layers_output():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    highway = RecurrentEncoder(5, 4, num_layers=3, cell="gru", connection="highway").double()
    first_layer, _ = highway.rnn.layers[0](x)
    for gate in highway.rnn.gates:
        torch.nn.init.zeros_(gate.weight)
        torch.nn.init.constant_(gate.bias, -60.0)  # g = 0: every upper layer passes its input on
    torch.testing.assert_close(highway(x)[0], first_layer, rtol=0, atol=1e-12)
    for gate in highway.rnn.gates:
        torch.nn.init.constant_(gate.bias, 60.0)  # g = 1: a plain stack of the same layers
    plain = first_layer
    for rnn in highway.rnn.layers[1:]:
        plain, _ = rnn(plain)
    torch.testing.assert_close(highway(x)[0], plain, rtol=0, atol=1e-12)


def test_residual_layers_that_output_zero_pass_the_first_layers_output_through():
    torch.manual_seed(0)
    encoder = RecurrentEncoder(5, 4, num_layers=3, cell="rnn_tanh", connection="residual").double()
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    for rnn in encoder.rnn.layers[1:]:
        for weight in rnn.parameters():
            torch.nn.init.zeros_(weight)  # tanh(0) = 0
    torch.testing.assert_close(encoder(x)[0], encoder.rnn.layers[0](x)[0], rtol=0, atol=0)


def test_dense_layers_read_the_input_and_every_layer_below():
    encoder = RecurrentEncoder(5, 4, num_layers=3, cell="lstm", bidirectional=True, connection="dense")
    assert [rnn.input_size for rnn in encoder.rnn.layers] == [5, 5 + 8, 5 + 16]
    assert encoder.output_dim == 8


@pytest.mark.parametrize("connection", CONNECTED)
def test_connections_keep_the_gradient_of_a_deep_stack_from_vanishing(connection):
    """The lecture's point: through 8 plain LSTM layers the first layer's gradient all but vanishes at
    initialisation (~1e-3 here); a direct connection keeps it at the scale of the upper layers'."""
    norms = {}
    for kind in ("none", connection):
        torch.manual_seed(0)
        encoder = RecurrentEncoder(32, 32, num_layers=8, cell="lstm", connection=kind).double()
        outputs, _ = encoder(torch.randn(4, 20, 32, dtype=torch.float64))
        outputs[:, -1].sum().backward()
        first = encoder.rnn if kind == "none" else encoder.rnn.layers[0]
        norms[kind] = first.weight_ih_l0.grad.norm().item()
    assert norms[connection] > 100 * norms["none"], norms


def test_bad_connection_and_a_single_layer_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"`connection` must be one of .*'highway'.*got 'skip'"):
        RecurrentEncoder(4, 4, num_layers=2, connection="skip")
    with pytest.raises(ValueError, match=r"needs num_layers >= 2, got 1.*connection='none'"):
        RecurrentEncoder(4, 4, num_layers=1, connection="residual")


# -- through the tasks: each takes `connection`, trains in the Trainer, and restores it from a checkpoint --
@pytest.mark.parametrize("connection", CONNECTED)
def test_language_model_with_connections_learns_and_generates_with_its_carried_state(
    tmp_path, tiny_markov, tiny_lm, connection
):
    from conftest import trainer

    from rnn_lightning import LanguageModel

    torch.manual_seed(0)
    model = tiny_lm(tiny_markov, num_layers=3, connection=connection,
                    optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    t = trainer(tmp_path, max_epochs=3, enable_checkpointing=True)
    t.fit(model, tiny_markov)
    ppl = t.validate(model, tiny_markov)[0]["val/ppl"]
    assert ppl < 2.5 * tiny_markov.source.perplexity()  # near the source's own 2.9 (uniform: 31)
    restored = LanguageModel.load_from_checkpoint(t.checkpoint_callback.best_model_path)
    assert restored.hparams.connection == connection
    ids = restored.generate_ids([restored.tokenizer.token_to_id("<bos>")], max_new_tokens=12, greedy=True,
                                stop_at_eos=False)
    context = [restored.tokenizer.token_to_id("<bos>")]
    restored.eval()
    with torch.no_grad():
        for new in ids:  # the reference: re-run the whole prefix for every token
            logits, _ = restored(torch.tensor([context]))
            assert int(logits[0, -1].argmax()) == new
            context.append(new)


@pytest.mark.slow
@pytest.mark.parametrize("connection", CONNECTED)
def test_tagger_and_classifier_with_connections_learn(tmp_path, connection):
    from conftest import trainer
    from datasets import DatasetDict
    from test_classification import corpus
    from test_tagging import rule_corpus

    from rnn_lightning import SequenceClassifier, SequenceTagger, TaggingDataModule, TextClassificationDataModule

    torch.manual_seed(0)
    data = DatasetDict(train=rule_corpus(600, 0), validation=rule_corpus(101, 1))
    dm = TaggingDataModule(dataset=data, tag_scheme="IOB2", batch_size=16)
    tagger = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                            embedding_dim=16,
                            hidden_size=16, num_layers=2, dropout=0.0, connection=connection,
                            optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    t = trainer(tmp_path, max_epochs=6)
    t.fit(tagger, dm)
    assert t.validate(tagger, dm)[0]["val/f1"] > 0.95

    data = DatasetDict(train=corpus(1500, 0), validation=corpus(300, 1))
    dm = TextClassificationDataModule(dataset=data, batch_size=32)
    classifier = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=16,
                                    hidden_size=24, num_layers=2, dropout=0.0, pooling="max", connection=connection,
                                    optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    t = trainer(tmp_path, max_epochs=8)
    t.fit(classifier, dm)
    assert t.validate(classifier, dm)[0]["val/acc"] > 0.9
