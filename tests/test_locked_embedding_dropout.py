"""Locked dropout and embedding dropout (``rnn_lightning.nn``): mask structure, scaling, statistics, tying."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnn_lightning.nn.embedding_dropout import EmbeddingDropout
from rnn_lightning.nn.locked_dropout import LockedDropout

P = 0.3
KEEP = 1.0 - P


def test_locked_dropout_uses_one_scaled_mask_per_sequence_for_every_step():
    torch.manual_seed(0)
    x = torch.randn(16, 9, 12, dtype=torch.float64, requires_grad=True)  # (B, T, D)
    out = LockedDropout(P)(x)
    kept = out != 0  # (B, T, D); randn is never exactly 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # constant over time steps
    assert len({tuple(row.flatten().tolist()) for row in kept[:, 0]}) == 16  # each sequence its own mask
    torch.testing.assert_close(out[kept], x[kept] / KEEP, rtol=0, atol=1e-15)  # kept ones scaled by 1 / (1 - p)
    out.sum().backward()
    torch.testing.assert_close(x.grad, kept.double() / KEEP, rtol=0, atol=1e-15)


def test_locked_dropout_keeps_the_mean_and_drops_p_of_the_features():
    torch.manual_seed(1)
    b, d = 400, 250
    out = LockedDropout(P)(torch.ones(b, 3, d))[:, 0]  # (B, D): one draw per sequence and feature
    n = b * d
    # mask entries are 0 or 1/(1-p): mean 1, variance p / (1 - p); share dropped ~ Binomial(n, p) / n
    assert abs(out.double().mean().item() - 1.0) < 4 * math.sqrt(P / KEEP / n)
    assert abs((out == 0).double().mean().item() - P) < 4 * math.sqrt(P * KEEP / n)


def test_locked_dropout_is_the_identity_in_eval_and_at_zero_and_refuses_a_bad_p():
    x = torch.randn(2, 3, 4)
    module = LockedDropout(P).eval()
    assert module(x) is x and LockedDropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"`p` must be a probability in \[0, 1\), got 1.0"):
        LockedDropout(1.0)


def test_embedding_dropout_drops_whole_rows_and_each_word_has_one_fate_per_call():
    torch.manual_seed(2)
    emb = EmbeddingDropout(20, 6, dropout=P).double()
    tokens = torch.randint(0, 20, (8, 30))  # every word occurs many times
    out = emb(tokens)  # (B, T, E)
    rows = out.reshape(-1, 6)
    words = emb.weight[tokens.reshape(-1)]
    dropped = (rows == 0).all(-1)
    assert torch.equal((rows == 0).any(-1), dropped)  # a row is zero entirely or not at all
    torch.testing.assert_close(rows[~dropped], words[~dropped] / KEEP, rtol=0, atol=1e-15)
    for word in tokens.unique():
        fates = dropped[tokens.reshape(-1) == word]
        assert fates.all() or not fates.any()  # same word, same fate
    assert 0 < dropped.sum() < dropped.numel()
    second = emb(tokens)
    assert not torch.equal(second, out)  # a new mask each call


def test_embedding_dropout_drops_p_of_the_words_over_many_calls():
    torch.manual_seed(3)
    vocab, calls = 50, 400
    emb = EmbeddingDropout(vocab, 2, dropout=P)
    every_word = torch.arange(vocab)
    dropped = sum(int((emb(every_word) == 0).all(-1).sum()) for _ in range(calls))
    n = vocab * calls
    assert abs(dropped / n - P) < 4 * math.sqrt(P * KEEP / n)


def test_a_tied_decoder_uses_the_undropped_weight_and_both_gradients_reach_it():
    torch.manual_seed(4)
    emb = EmbeddingDropout(15, 4, dropout=P, padding_idx=0).double()
    decoder = nn.Linear(4, 15).double()
    decoder.weight = emb.weight  # tied, as RNNLanguageModelNet(tie_weights=True) does
    weight = emb.weight.detach().clone()
    tokens = torch.randint(0, 15, (3, 10))
    embedded = emb(tokens)
    logits = decoder(embedded)
    assert torch.equal(emb.weight, weight)  # the parameter is never masked in place
    (logits * torch.linspace(-1, 1, 15, dtype=torch.float64)).sum().backward()

    # reference: AWD's formula, the whole matrix masked row-wise, with the fates this call drew
    fate = torch.full((15,), 1 / KEEP, dtype=torch.float64)
    fate[tokens[(embedded == 0).all(-1)]] = 0.0
    w = weight.clone().requires_grad_(True)
    ref_embedded = F.embedding(tokens, w * fate[:, None], padding_idx=0)
    ref_logits = F.linear(ref_embedded, w, decoder.bias.detach())
    (ref_logits * torch.linspace(-1, 1, 15, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(embedded, ref_embedded, rtol=0, atol=1e-15)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-15)
    torch.testing.assert_close(emb.weight.grad, w.grad, rtol=0, atol=1e-12)


def test_embedding_dropout_in_eval_is_the_plain_embedding_with_the_same_state_dict():
    emb = EmbeddingDropout(10, 3, dropout=P).eval()
    plain = nn.Embedding(10, 3)
    plain.load_state_dict(emb.state_dict())
    tokens = torch.randint(0, 10, (2, 5))
    assert torch.equal(emb(tokens), plain(tokens))
    with pytest.raises(ValueError, match=r"`dropout` must be a probability in \[0, 1\)"):
        EmbeddingDropout(10, 3, dropout=1.5)
