"""Tests for ``rnn_lightning.nn.crf``: a float64 brute force over all paths, pytorch-crf, gradcheck; the masks of
``rnn_lightning.functional.allowed_transitions`` against chunk grammars."""

from __future__ import annotations

import itertools
import math
import re
import resource

import pytest
import torch
import torchcrf
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn_lightning.functional import allowed_transitions
from rnn_lightning.nn.crf import CRF

IOB2_LABELS = ["O", "B-A", "I-A", "B-B", "I-B"]
LABELS = {
    "IOB1": IOB2_LABELS,
    "IOB2": IOB2_LABELS,
    "IOBES": ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"],
    "BILOU": ["O", "B-A", "I-A", "L-A", "U-A", "B-B", "I-B", "L-B", "U-B"],
}


# -- helpers --------------------------------------------------------------------------------------------------------
def make_crf(num_tags, masks=None, dtype=torch.float64, seed=0):
    """A CRF with N(0, 1) scores (larger than the init, so transitions matter)."""
    start, trans, end = masks if masks is not None else (None, None, None)
    crf = CRF(num_tags, trans, allowed_start=start, allowed_end=end).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (crf.start, crf.end, crf.transitions):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return crf


def make_inputs(batch, steps, num_tags, seed=0, dtype=torch.float64, scale=2.0):
    """Emissions (B, T, C), random tags (B, T) and a right-padded mask with the first row full length."""
    g = torch.Generator().manual_seed(seed)
    emissions = (torch.randn(batch, steps, num_tags, generator=g, dtype=torch.float64) * scale).to(dtype)
    tags = torch.randint(0, num_tags, (batch, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    mask = torch.arange(steps) < lengths[:, None]
    return emissions, tags, mask


def random_masks(num_tags, seed):
    """Random allowed-move masks with some path of every length (tag 0 may start, repeat and end)."""
    g = torch.Generator().manual_seed(seed)
    start, trans, end = (torch.rand(shape, generator=g) < 0.6 for shape in ((num_tags,), (num_tags,) * 2, (num_tags,)))
    start[0] = end[0] = trans[0, 0] = True
    return start, trans, end


def path_allowed(crf, path):
    return (
        bool(crf.allowed_start[path[0]])
        and bool(crf.allowed_end[path[-1]])
        and all(bool(crf.allowed_transitions[a, b]) for a, b in zip(path, path[1:]))
    )


def path_score(crf, emissions, path):
    """Score of one tag path in float64 Python arithmetic; ``emissions`` (L, C)."""
    start, end, trans, em = (x.detach().double().tolist() for x in (crf.start, crf.end, crf.transitions, emissions))
    return math.fsum(
        [start[path[0]], end[path[-1]]]
        + [em[t][y] for t, y in enumerate(path)]
        + [trans[a][b] for a, b in zip(path, path[1:])]
    )


def brute_force(crf, emissions):
    """log Z and the best path over every allowed path of ``emissions`` (L, C), by enumeration."""
    scores = {
        path: path_score(crf, emissions, path)
        for path in itertools.product(range(crf.num_tags), repeat=emissions.shape[0])
        if path_allowed(crf, path)
    }
    top = max(scores.values())
    log_z = top + math.log(math.fsum(math.exp(s - top) for s in scores.values()))
    return log_z, max(scores, key=scores.get), scores


# -- float64 brute force --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_tags", [3, 4])
@pytest.mark.parametrize("steps", [1, 2, 3, 5])
@pytest.mark.parametrize("constraints", ["none", "scheme", "random"])
def test_matches_brute_force(num_tags, steps, constraints):
    masks = {
        "none": None,
        "scheme": allowed_transitions(["O", "B-X", "I-X", "E-X"][:num_tags], "IOBES" if num_tags == 4 else "IOB2"),
        "random": random_masks(num_tags, seed=steps),
    }[constraints]
    crf = make_crf(num_tags, masks, seed=steps)
    emissions, _, mask = make_inputs(4, steps, num_tags, seed=10 * steps + num_tags)
    lengths = mask.sum(1).tolist()
    g = torch.Generator().manual_seed(1)
    gold = torch.randint(0, num_tags, (4, steps), generator=g)
    expected_llh, expected_paths = [], torch.zeros(4, steps, dtype=torch.long)
    for b, length in enumerate(lengths):
        log_z, best, scores = brute_force(crf, emissions[b, :length])
        allowed = sorted(scores)
        path = allowed[int(torch.randint(len(allowed), (1,), generator=g))]  # an allowed gold path
        gold[b, :length] = torch.tensor(path)
        expected_llh.append(scores[path] - log_z)
        expected_paths[b, :length] = torch.tensor(best)

    llh = crf.log_likelihood(emissions, gold, mask)
    assert llh.dtype == torch.float64 and llh.shape == (4,)
    torch.testing.assert_close(llh, torch.tensor(expected_llh, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    paths = crf.decode(emissions, mask)
    assert paths.dtype == torch.long and paths.shape == (4, steps)
    assert torch.equal(paths, expected_paths)  # padded positions hold 0


def test_reductions_and_padding_tags():
    crf = make_crf(4)
    emissions, tags, mask = make_inputs(5, 6, 4, seed=3)
    llh = crf.log_likelihood(emissions, tags, mask)
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="none"), -llh)
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="sum"), -llh.sum())
    torch.testing.assert_close(crf(emissions, tags, mask, reduction="mean"), -llh.mean())
    torch.testing.assert_close(crf(emissions, tags, mask), -llh.sum() / mask.sum())  # token_mean, the default
    # Padded positions may hold an ignore index; they do not change the result.
    torch.testing.assert_close(crf.log_likelihood(emissions, tags.masked_fill(~mask, -100), mask), llh)
    # No mask means every position is real.
    full = torch.ones_like(mask)
    torch.testing.assert_close(crf.log_likelihood(emissions, tags), crf.log_likelihood(emissions, tags, full))
    assert torch.equal(crf.decode(emissions), crf.decode(emissions, full))


def test_half_inputs_sum_in_float32():
    crf = make_crf(5, dtype=torch.float32)
    emissions, tags, mask = make_inputs(3, 7, 5, seed=4, dtype=torch.float16)
    llh = crf.log_likelihood(emissions, tags, mask)
    assert llh.dtype == torch.float32
    torch.testing.assert_close(llh, crf.log_likelihood(emissions.float(), tags, mask))
    assert torch.equal(crf.decode(emissions, mask), crf.decode(emissions.float(), mask))


# -- pytorch-crf ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, steps, num_tags", [(8, 12, 5), (16, 30, 9), (3, 1, 4)])
def test_matches_pytorch_crf(dtype, batch, steps, num_tags):
    ours = make_crf(num_tags, dtype=dtype, seed=steps)
    theirs = torchcrf.CRF(num_tags, batch_first=True).to(dtype)
    with torch.no_grad():
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
        theirs.transitions.copy_(ours.transitions)
    emissions, tags, mask = make_inputs(batch, steps, num_tags, seed=steps, dtype=dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(
        ours.log_likelihood(emissions, tags, mask).sum(), theirs(emissions, tags, mask, reduction="sum"), **tol
    )
    torch.testing.assert_close(ours(emissions, tags, mask), -theirs(emissions, tags, mask, "token_mean"), **tol)
    paths = ours.decode(emissions, mask)
    assert [p[m].tolist() for p, m in zip(paths, mask)] == theirs.decode(emissions, mask)
    # Gradients: our backward algorithm vs autograd through pytorch-crf's loop (T > 16 covers the renormalisation).
    grads = []
    for crf, sign in ((ours, 1), (theirs, -1)):
        x = emissions.clone().requires_grad_(True)
        crf.zero_grad()
        (sign * crf(x, tags, mask, reduction="sum")).backward()
        params = [torch.zeros_like(p) if p.grad is None else p.grad for p in crf.parameters()]  # T = 1: no moves
        grads.append([x.grad, *params])  # emissions, start, end, transitions
    for g_ours, g_theirs in zip(*grads):
        torch.testing.assert_close(g_ours, g_theirs, **tol)


# -- gradients ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("steps", [1, 4])
def test_gradcheck(constrained, steps):
    masks = allowed_transitions(["O", "B-X", "I-X"], "IOB2") if constrained else None
    crf = make_crf(3, masks)
    emissions, tags, mask = make_inputs(3, steps, 3, seed=5)
    tags[:, 0] = 0  # O first, an allowed start
    emissions.requires_grad_(True)
    params = tuple(p.detach().clone().requires_grad_(True) for p in (crf.start, crf.end, crf.transitions))

    def nll(emissions, start, end, transitions):
        values = {"start": start, "end": end, "transitions": transitions}
        return torch.func.functional_call(crf, values, (emissions, tags, mask), {"reduction": "none"})

    assert torch.autograd.gradcheck(nll, (emissions, *params))


def test_float32_gradients_stay_accurate_on_long_sequences():
    """Unshifted float32 alphas reach ~1e4 here and cost ~2e-2 of gradient accuracy; the renormalised ones ~5e-4."""
    crf32 = make_crf(5, dtype=torch.float32)
    crf64 = make_crf(5, dtype=torch.float64)
    emissions, tags, _ = make_inputs(2, 4000, 5, seed=7, scale=3.0)
    grads = []
    for crf, dtype in ((crf32, torch.float32), (crf64, torch.float64)):
        x = emissions.to(dtype).requires_grad_(True)
        crf(x, tags, reduction="sum").backward()
        grads.append(x.grad.double())
    assert (grads[0] - grads[1]).abs().max() < 3e-3


def test_gradient_is_expected_counts():
    """d log Z / d emissions[b, t, j] is the marginal p(y_t = j); the gold term adds -1 at the gold tag."""
    crf = make_crf(3)
    emissions, tags, mask = make_inputs(1, 3, 3, seed=6)
    emissions.requires_grad_(True)
    crf(emissions, tags, mask, reduction="sum").backward()
    log_z, _, scores = brute_force(crf, emissions[0].detach())
    marginals = torch.zeros(3, 3, dtype=torch.float64)
    for path, score in scores.items():
        for t, y in enumerate(path):
            marginals[t, y] += math.exp(score - log_z)
    expected = marginals - torch.nn.functional.one_hot(tags[0], 3)
    torch.testing.assert_close(emissions.grad[0], expected, rtol=1e-10, atol=1e-10)


# -- allowed_transitions: against a chunk grammar --------------------------------------------------------------------
GRAMMARS = {  # tokens joined by spaces, with a trailing space; backreferences tie I/E/L to the chunk's type
    "IOB2": r"(?:O |B-(\w+) (?:I-\1 )*)*",
    "IOB1": r"(?:O |[IB]-\w+ )*",  # B-X may start any chunk (CoNLL-2003's eng.train has O B-MISC I-MISC)
    "IOBES": r"(?:O |S-\w+ |B-(\w+) (?:I-\1 )*E-\1 )*",
    "BILOU": r"(?:O |U-\w+ |B-(\w+) (?:I-\1 )*L-\1 )*",
}


@pytest.mark.parametrize("scheme", list(GRAMMARS))
def test_allowed_transitions_match_chunk_grammar(scheme):
    labels = LABELS[scheme]
    start, trans, end = allowed_transitions(labels, scheme)
    assert start.dtype == trans.dtype == end.dtype == torch.bool
    assert start.shape == end.shape == (len(labels),) and trans.shape == (len(labels),) * 2
    crf = CRF(len(labels), trans, allowed_start=start, allowed_end=end)
    for length in range(1, 5):
        for path in itertools.product(range(len(labels)), repeat=length):
            text = "".join(labels[y] + " " for y in path)
            assert path_allowed(crf, path) == bool(re.fullmatch(GRAMMARS[scheme], text)), (scheme, text)


def test_allowed_transitions_examples():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, trans, end = allowed_transitions(labels, "IOB2")
    idx = {label: i for i, label in enumerate(labels)}
    assert not trans[idx["O"], idx["I-PER"]] and not trans[idx["B-LOC"], idx["I-PER"]]
    assert trans[idx["B-PER"], idx["I-PER"]] and trans[idx["I-PER"], idx["B-LOC"]]
    assert start.tolist() == [True, True, False, True, False] and end.all()
    start, trans, end = allowed_transitions(["O", "B-X", "I-X", "E-X", "S-X"], "IOBES")
    assert not trans[1, 0] and not trans[1, 1] and not trans[2, 0] and trans[3, 0] and trans[4, 1]
    assert end.tolist() == [True, False, False, True, True]


# -- hypothesis: Viterbi respects the constraints and beats the gold path ------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    scheme=st.sampled_from(sorted(LABELS)),
    batch=st.integers(1, 4),
    steps=st.integers(1, 8),
    scale=st.floats(0.1, 20.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_decoded_paths_are_allowed_and_best(scheme, batch, steps, scale, seed):
    labels = LABELS[scheme]
    crf = make_crf(len(labels), allowed_transitions(labels, scheme), seed=seed)
    emissions, tags, mask = make_inputs(batch, steps, len(labels), seed=seed, scale=scale)
    paths = crf.decode(emissions, mask)
    for path, m in zip(paths, mask):
        assert path_allowed(crf, path[m].tolist())
        assert (path[~m] == 0).all()
    # Same partition, so comparing log-likelihoods compares path scores (the gold may break the rules).
    gold, best = crf.log_likelihood(emissions, tags, mask), crf.log_likelihood(emissions, paths, mask)
    assert (best >= gold - 1e-9).all()


# -- long sequences -------------------------------------------------------------------------------------------------
@pytest.mark.slow  # three loops of 100k small steps (forward, backward, Viterbi)
def test_long_sequence_runs_in_linear_memory():
    steps, labels = 100_000, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
    start, trans, end = allowed_transitions(labels, "IOB2")
    crf = CRF(9, trans, allowed_start=start, allowed_end=end)
    g = torch.Generator().manual_seed(0)
    emissions = torch.randn(1, steps, 9, generator=g, requires_grad=True)
    tags = torch.zeros(1, steps, dtype=torch.long)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    loss = crf(emissions, tags)
    loss.backward()
    paths = crf.decode(emissions)
    peak_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert torch.isfinite(loss) and torch.isfinite(emissions.grad).all()
    assert paths.shape == (1, steps) and path_allowed(crf, paths[0].tolist())
    assert peak_growth_mib < 1024, f"peak RSS grew by {peak_growth_mib:.0f} MiB"  # ~100 MB of tensors expected


# -- errors ---------------------------------------------------------------------------------------------------------
def test_input_errors():
    crf = CRF(3)
    emissions, tags, mask = make_inputs(2, 4, 3, dtype=torch.float32)
    with pytest.raises(ValueError, match="`emissions` must be a \\(B, T, num_tags=3\\)"):
        crf(emissions[0], tags, mask)
    with pytest.raises(ValueError, match="`emissions` must be a"):
        crf.decode(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="at least one time step"):
        crf.decode(torch.randn(2, 0, 3))
    with pytest.raises(TypeError, match="`emissions` must be a floating-point"):
        crf.decode(tags.unsqueeze(2).expand(2, 4, 3))
    with pytest.raises(ValueError, match="`tags` must have the"):
        crf(emissions, tags[:, :3], mask)
    with pytest.raises(TypeError, match="`tags` must be an int64"):
        crf(emissions, tags.int(), mask)
    with pytest.raises(ValueError, match="`mask` must have the"):
        crf(emissions, tags, mask[:, :3])
    with pytest.raises(TypeError, match="`mask` must be a bool"):
        crf(emissions, tags, mask.long())
    bad_first = mask.clone()
    bad_first[1] = False
    with pytest.raises(ValueError, match=re.escape("`mask[:, 0]` must be all True")):
        crf(emissions, tags, bad_first)
    with pytest.raises(ValueError, match=re.escape("`mask[:, 0]` must be all True")):
        crf.decode(emissions, bad_first)
    holes = torch.tensor([[True, False, True, True], [True] * 4])
    with pytest.raises(ValueError, match="right-padded"):
        crf(emissions, tags, holes)
    for bad_tag in (3, -1):
        out_of_range = tags.clone()
        out_of_range[0, 0] = bad_tag
        expected = f"`tags` on real tokens must lie in [0, num_tags=3), got [{bad_tag}]"
        with pytest.raises(ValueError, match=re.escape(expected)):
            crf(emissions, out_of_range, mask)
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        crf(emissions, tags, mask, reduction="avg")


def test_constraint_errors():
    with pytest.raises(ValueError, match="`num_tags` must be a positive integer"):
        CRF(0)
    with pytest.raises(ValueError, match="forbid every tag path of length 2"):
        CRF(3, torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="forbid every tag path of length 1"):
        CRF(3, allowed_start=torch.tensor([True, False, False]), allowed_end=torch.tensor([False, True, True]))
    # Only 0 -> 1 -> 0 -> ..., starting and ending with 0: every even length is impossible.
    alternate = torch.tensor([[False, True], [True, False]])
    with pytest.raises(ValueError, match="length 2"):
        CRF(2, alternate, allowed_start=torch.tensor([True, False]), allowed_end=torch.tensor([True, False]))
    with pytest.raises(TypeError, match="`allowed_transitions` must be a bool tensor"):
        CRF(3, torch.ones(3, 3))
    with pytest.raises(ValueError, match="`allowed_end` must have shape \\(3,\\)"):
        CRF(3, allowed_end=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="`scheme` must be one of"):
        allowed_transitions(["O"], "BIO")
    with pytest.raises(ValueError, match="'E-PER'"):
        allowed_transitions(["O", "B-PER", "E-PER"], "IOB2")
    with pytest.raises(ValueError, match="'<pad>'"):
        allowed_transitions(["<pad>", "O"], "IOBES")
    with pytest.raises(ValueError, match="duplicates \\['O'\\]"):
        allowed_transitions(["O", "B-X", "O"], "IOB2")
