"""Tests for the CRF's posterior inference (``CRF.marginals``, ``decode_top_k``, ``span_probabilities``) against a
float64 enumeration of every tag path of small random CRFs, with and without the masks of tag schemes."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from rnn_lightning.functional import allowed_transitions
from rnn_lightning.functional.span_f1 import extract_spans, label_table
from rnn_lightning.nn.crf import CRF

LABELS = {
    "IOB2": ["O", "B-A", "I-A", "B-B", "I-B"],
    "IOBES": ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"],
}
CONSTRAINTS = ["none", "IOB2", "IOBES", "random"]


def make_crf(constraints: str, seed: int) -> CRF:
    """A float64 CRF with N(0, 1) scores; masks of a scheme, random masks (some path of every length) or none."""
    g = torch.Generator().manual_seed(seed)
    if constraints in LABELS:
        num_tags, (start, trans, end) = len(LABELS[constraints]), allowed_transitions(LABELS[constraints], constraints)
    elif constraints == "random":
        num_tags = 4
        start, trans, end = (torch.rand(s, generator=g) < 0.6 for s in ((4,), (4, 4), (4,)))
        start[0] = end[0] = trans[0, 0] = True
    else:
        num_tags, start, trans, end = 4, None, None, None
    crf = CRF(num_tags, trans, allowed_start=start, allowed_end=end).double()
    with torch.no_grad():
        for p in (crf.start, crf.end, crf.transitions):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return crf


def make_batch(num_tags: int, lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 emissions (B, T, C) with scale 2 and a right-padded mask of ``lengths``."""
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(len(lengths), max(lengths), num_tags, generator=g, dtype=torch.float64) * 2
    return emissions, torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]


def enumerate_paths(crf: CRF, emissions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tag path of ``emissions`` (L, C) (P, L) and its float64 log-probability (P,) (-inf when forbidden)."""
    length, num_tags = emissions.shape
    paths = torch.tensor(list(itertools.product(range(num_tags), repeat=length)))  # (P, L)
    score = crf.start[paths[:, 0]] + crf.end[paths[:, -1]] + emissions[torch.arange(length), paths].sum(1)
    allowed = crf.allowed_start[paths[:, 0]] & crf.allowed_end[paths[:, -1]]
    if length > 1:
        score = score + crf.transitions[paths[:, :-1], paths[:, 1:]].sum(1)
        allowed &= crf.allowed_transitions[paths[:, :-1], paths[:, 1:]].all(1)
    score = score.detach().double().masked_fill(~allowed, float("-inf"))
    return paths, score - torch.logsumexp(score, dim=0)


# -- marginals ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constraints", CONSTRAINTS)
def test_marginals_match_brute_force(constraints):
    crf = make_crf(constraints, seed=1)
    lengths = [4, 1, 3, 2] if crf.num_tags > 5 else [5, 1, 4, 2, 3]
    emissions, mask = make_batch(crf.num_tags, lengths, seed=2)
    marginals = crf.marginals(emissions, mask)
    assert marginals.shape == emissions.shape and marginals.dtype == torch.float64
    for b, length in enumerate(lengths):
        paths, log_probs = enumerate_paths(crf, emissions[b, :length])
        expected = torch.zeros(length, crf.num_tags, dtype=torch.float64)
        for t in range(length):
            expected[t].index_add_(0, paths[:, t], log_probs.exp())
        torch.testing.assert_close(marginals[b, :length], expected, rtol=0, atol=1e-12)
        assert torch.equal(marginals[b, :length] == 0, expected == 0)  # exactly 0 where no allowed path goes
        assert (marginals[b, length:] == 0).all()
    torch.testing.assert_close(marginals.sum(2), mask.double(), rtol=0, atol=1e-12)


def test_marginals_give_forbidden_tags_exactly_zero():
    """IOBES: no ``I``/``E`` first, no ``B``/``I`` last, however strongly the emissions pull towards them."""
    crf = make_crf("IOBES", seed=3).float()
    emissions, mask = make_batch(9, [6, 3], seed=4)
    inside, open_ = [2, 3, 6, 7], [1, 2, 5, 6]  # I/E tags, B/I tags
    emissions = emissions.float()
    emissions[:, 0, inside] += 50.0
    emissions[0, 5, open_] += 50.0
    emissions[1, 2, open_] += 50.0
    marginals = crf.marginals(emissions, mask)
    assert (marginals[:, 0, inside] == 0).all()
    assert (marginals[0, 5, open_] == 0).all() and (marginals[1, 2, open_] == 0).all()
    assert (marginals[:, 1:2] > 0).any() and (marginals[1, 3:] == 0).all()
    torch.testing.assert_close(marginals.sum(2), mask.float(), rtol=0, atol=1e-5)


def test_marginals_and_span_probabilities_stay_accurate_in_float32_on_long_sequences():
    crf = make_crf("IOB2", seed=5)
    emissions, mask = make_batch(5, [3000, 1700], seed=6)
    expected = crf.marginals(emissions, mask)
    tags = crf.decode(emissions, mask)
    # [0, 2500, 2800] has a tiny probability, still a normal float32
    spans = torch.tensor([[0, 0, 0], [0, 2000, 2003], [0, 2500, 2800], [1, 1690, 1699]])
    expected_spans = crf.span_probabilities(emissions, tags, spans, mask)
    crf = crf.float()
    got = crf.marginals(emissions.float(), mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected.float(), rtol=0, atol=1e-4)
    torch.testing.assert_close(crf.span_probabilities(emissions.float(), tags, spans, mask), expected_spans.float())
    assert crf.marginals(emissions.half(), mask).dtype == torch.float32  # half inputs sum in float32


# -- k-best Viterbi -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constraints", CONSTRAINTS)
@pytest.mark.parametrize("k", [1, 3, 8, 700])
def test_k_best_matches_brute_force(constraints, k):
    crf = make_crf(constraints, seed=7)
    lengths = [4, 1, 3, 2] if crf.num_tags > 5 else [5, 1, 4, 2]
    emissions, mask = make_batch(crf.num_tags, lengths, seed=8)
    paths, log_probs = crf.decode_top_k(emissions, mask, k=k)
    assert paths.shape == (len(lengths), k, max(lengths)) and paths.dtype == torch.long
    assert log_probs.shape == (len(lengths), k) and log_probs.dtype == torch.float64
    for b, length in enumerate(lengths):
        all_paths, all_log_probs = enumerate_paths(crf, emissions[b, :length])
        found = int(torch.isfinite(all_log_probs).sum().clamp(max=k))
        expected = torch.full((k,), float("-inf"), dtype=torch.float64)  # -inf past the allowed paths
        top = all_log_probs.sort(descending=True).values[:k]
        expected[: len(top)] = top
        torch.testing.assert_close(log_probs[b], expected, rtol=0, atol=1e-10)
        # Each returned path is allowed, distinct, and scores what it was returned with.
        index = {tuple(p): i for i, p in enumerate(all_paths.tolist())}
        returned = [index[tuple(p)] for p in paths[b, :found, :length].tolist()]
        assert len(set(returned)) == found
        torch.testing.assert_close(all_log_probs[returned], log_probs[b, :found], rtol=0, atol=1e-10)
        assert (paths[b, found:] == 0).all() and (paths[b, :, length:] == 0).all()


def test_k_best_with_ties_returns_distinct_paths_of_the_tied_score():
    """All-zero scores: every allowed path ties; the k best are k distinct allowed paths (any of them)."""
    crf = make_crf("IOB2", seed=0)
    with torch.no_grad():
        for p in (crf.start, crf.end, crf.transitions):
            p.zero_()
    emissions = torch.zeros(1, 3, 5, dtype=torch.float64)
    all_paths, all_log_probs = enumerate_paths(crf, emissions[0])
    allowed = {tuple(p) for p, lp in zip(all_paths.tolist(), all_log_probs) if torch.isfinite(lp)}
    paths, log_probs = crf.decode_top_k(emissions, k=10)
    assert len({tuple(p) for p in paths[0].tolist()}) == 10 and {tuple(p) for p in paths[0].tolist()} <= allowed
    torch.testing.assert_close(log_probs[0], torch.full((10,), -math.log(len(allowed)), dtype=torch.float64))


def test_k_equals_one_is_decode():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    start, trans, end = allowed_transitions(labels, "IOB2")
    crf = CRF(9, trans, allowed_start=start, allowed_end=end)
    g = torch.Generator().manual_seed(9)
    emissions = torch.randn(16, 30, 9, generator=g) * 3
    mask = torch.arange(30) < torch.randint(1, 31, (16,), generator=g)[:, None]
    mask[0] = True
    paths, log_probs = crf.decode_top_k(emissions, mask, k=1)
    assert torch.equal(paths[:, 0], crf.decode(emissions, mask))
    torch.testing.assert_close(log_probs[:, 0], crf.log_likelihood(emissions, paths[:, 0], mask), rtol=0, atol=1e-4)


# -- span probabilities ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constraints", CONSTRAINTS)
def test_span_probabilities_match_brute_force(constraints):
    """Every segment of the best, a worse and a random tag path (random tags may take forbidden moves)."""
    crf = make_crf(constraints, seed=10)
    lengths = [4, 2, 3] if crf.num_tags > 5 else [5, 2, 4]
    emissions, mask = make_batch(crf.num_tags, lengths, seed=11)
    g = torch.Generator().manual_seed(12)
    candidates = [crf.decode(emissions, mask), crf.decode_top_k(emissions, mask, k=3)[0][:, 2]]
    candidates.append(torch.randint(crf.num_tags, mask.shape, generator=g))
    for tags in candidates:
        tags = tags.masked_fill(~mask, -100)  # padded values are ignored
        spans = torch.tensor([[b, s, e] for b, n in enumerate(lengths) for s in range(n) for e in range(s, n)])
        got = crf.span_probabilities(emissions, tags, spans, mask)
        assert got.shape == (len(spans),) and got.dtype == torch.float64
        expected = []
        for b, s, e in spans.tolist():
            paths, log_probs = enumerate_paths(crf, emissions[b, : lengths[b]])
            keep = (paths[:, s : e + 1] == tags[b, s : e + 1]).all(1)
            expected.append(log_probs[keep].exp().sum())
        expected = torch.stack(expected)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
        assert torch.equal(got == 0, expected == 0)


def test_span_probabilities_of_extracted_entities():
    """The (N, 4) output of ``extract_spans`` goes in as it is; IOBES entity = its tags."""
    crf = make_crf("IOBES", seed=13)
    emissions, mask = make_batch(9, [4, 3], seed=14)
    tags = crf.decode(emissions, mask)
    prefixes, types, _ = label_table(LABELS["IOBES"])
    spans = extract_spans(tags, mask, prefixes, types)  # (N, 4) [row, start, end, type]
    assert len(spans) > 0
    got = crf.span_probabilities(emissions, tags, spans, mask)
    marginals = crf.marginals(emissions, mask)
    for value, (b, s, e, _) in zip(got.tolist(), spans.tolist()):
        assert 0 < value <= marginals[b, s, tags[b, s]] + 1e-12  # at most its first token's marginal
        paths, log_probs = enumerate_paths(crf, emissions[b, : int(mask[b].sum())])
        keep = (paths[:, s : e + 1] == tags[b, s : e + 1]).all(1)
        assert value == pytest.approx(log_probs[keep].exp().sum().item(), abs=1e-12)


# -- errors ---------------------------------------------------------------------------------------------------------
def test_inference_input_errors():
    crf = CRF(3)
    emissions, mask = torch.randn(2, 4, 3), torch.tensor([[True] * 4, [True, True, False, False]])
    tags = torch.zeros(2, 4, dtype=torch.long)
    for bad in (0, -1, 2.0, True, None):
        with pytest.raises(
            ValueError, match=re.escape(f"`k` must be a positive int (the number of paths), got {bad!r}")
        ):
            crf.decode_top_k(emissions, mask, k=bad)
    with pytest.raises(ValueError, match="`emissions` must be a"):
        crf.marginals(torch.randn(2, 4, 5))
    with pytest.raises(TypeError, match=r"`spans` must be an int64 \(N, 3\) or wider tensor.*got torch.float32"):
        crf.span_probabilities(emissions, tags, torch.zeros(1, 3), mask)
    with pytest.raises(TypeError, match=r"`spans` must be an int64.*got torch.int64 \(3,\)"):
        crf.span_probabilities(emissions, tags, torch.zeros(3, dtype=torch.long), mask)
    for bad in ([1, 0, 2], [0, 2, 1], [2, 0, 0], [-1, 0, 0], [0, -1, 0]):  # past row 1's length, start > end, ...
        with pytest.raises(
            ValueError, match=re.escape("`spans` rows must be [row, start, end]") + ".*got " + re.escape(str(bad))
        ):
            crf.span_probabilities(emissions, tags, torch.tensor([[0, 0, 3], bad]), mask)
    with pytest.raises(ValueError, match="`tags` on real tokens must lie in"):
        crf.span_probabilities(emissions, tags - 1, torch.tensor([[0, 0, 0]]), mask)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_inference_on_cuda_equals_cpu_in_float64():
    crf = make_crf("IOBES", seed=15)
    emissions, mask = make_batch(9, [30, 1, 17, 29], seed=16)
    paths, log_probs = crf.decode_top_k(emissions, mask, k=4)
    spans = torch.tensor([[0, 0, 29], [1, 0, 0], [2, 3, 9], [3, 28, 28]])
    cpu = (
        crf.marginals(emissions, mask),
        paths,
        log_probs,
        crf.span_probabilities(emissions, paths[:, 1], spans, mask),
    )
    gpu = crf.cuda()
    emissions, mask = emissions.cuda(), mask.cuda()
    paths, log_probs = gpu.decode_top_k(emissions, mask, k=4)
    got = (
        gpu.marginals(emissions, mask),
        paths,
        log_probs,
        gpu.span_probabilities(emissions, paths[:, 1], spans, mask),
    )
    for a, b in zip(cpu, got):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-12)
