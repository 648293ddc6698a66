"""Each private API that ``rnn_lightning.compat`` wraps still behaves as the wrapper expects."""

# ---------------------------------------------------------------- Lightning


# ---------------------------------------------------------------- datasets


# ---------------------------------------------------------------- torchmetrics


# ---------------------------------------------------------------- torch


def test_rnn_forward_reads_the_swapped_flat_weights_and_gets_its_own_back():
    import torch

    from rnn_lightning.compat import rnn_flat_weights

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    before, _ = lstm(x)
    doubled = [2 * getattr(lstm, name) for name in lstm._flat_weights_names]
    with rnn_flat_weights(lstm, doubled):
        out, _ = lstm(x)
    reference = torch.nn.LSTM(3, 4, batch_first=True)
    reference.load_state_dict({name: w for name, w in zip(lstm._flat_weights_names, doubled, strict=True)})
    torch.testing.assert_close(out, reference(x)[0], rtol=0, atol=0)
    assert torch.equal(lstm(x)[0], before)  # the parameters are in use again
