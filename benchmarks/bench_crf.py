"""``rnn_lightning.nn.crf.CRF`` vs pytorch-crf (``torchcrf.CRF``): training step and Viterbi decode, same values.

CoNLL-2003-like shapes: B = 32 sentences of up to T = 40 (or 120) tokens, C = 9 (IOB2 over PER/LOC/ORG/MISC) or 17
tags (no constraints), random lengths in [1, T] (one of full length), ``randn * 3`` emissions, float32. Both CRFs hold
the same parameters. Rows:

- ``nll+backward``: the summed negative log-likelihood and its backward pass (gradients to emissions and parameters).
- ``viterbi``: the best paths; ours returns a (B, T) tensor, pytorch-crf a list of lists (its per-sequence Python
  backtrace is part of its API, so it is timed too).

Each sample times one call; samples go round robin over the two libraries ``repeats`` times and the medians are taken.
``check``: the relative difference of the two summed NLLs and each library's largest emission-gradient error against
a float64 reference (our CRF in float64, which the tests hold to a brute force and to pytorch-crf in float64 at
1e-10 or tighter), for nll+backward; the fraction of sequences whose two paths are equal, for viterbi.

Usage: ``python benchmarks/bench_crf.py [--out DIR] [--quick] [--repeats N] [--threads N] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import print_table, round_robin, write_json  # noqa: E402

NAME = "crf"
SHAPES = ((32, 40, 9), (32, 40, 17), (32, 120, 9), (32, 120, 17))  # (B, T, C)
SCALE = 3.0  # emissions = randn * SCALE


def make_pair(num_tags: int, device: torch.device) -> tuple[Any, Any]:
    """Our CRF and a pytorch-crf CRF with the same (random) parameters."""
    import torchcrf

    from rnn_lightning.nn.crf import CRF

    ours = CRF(num_tags).to(device)
    theirs = torchcrf.CRF(num_tags, batch_first=True).to(device)
    with torch.no_grad():
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
        theirs.transitions.copy_(ours.transitions)
    return ours, theirs


def make_batch(batch: int, steps: int, num_tags: int, device: torch.device, seed: int = 0) -> tuple[Tensor, ...]:
    """Emissions (B, T, C), tags (B, T) and a right-padded mask (B, T) with random lengths in [1, T]."""
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, steps, num_tags, generator=g) * SCALE
    tags = torch.randint(0, num_tags, (batch, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    mask = torch.arange(steps) < lengths[:, None]
    return emissions.to(device), tags.to(device), mask.to(device)


def nll_step(crf: Any, emissions: Tensor, tags: Tensor, mask: Tensor, ours: bool) -> tuple[Tensor, Tensor]:
    """Summed NLL and its backward pass; returns the NLL and the emission gradient."""
    emissions = emissions.detach().requires_grad_(True)
    crf.zero_grad(set_to_none=True)
    nll = crf(emissions, tags, mask, reduction="sum") if ours else -crf(emissions, tags, mask, reduction="sum")
    nll.backward()
    return nll.detach(), emissions.grad


def measure(
    batch: int, steps: int, num_tags: int, device: torch.device, repeats: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The two rows (nll+backward, viterbi) of one shape, and the agreement with pytorch-crf."""
    ours, theirs = make_pair(num_tags, device)
    emissions, tags, mask = make_batch(batch, steps, num_tags, device)

    nll_ours, grad_ours = nll_step(ours, emissions, tags, mask, ours=True)
    nll_theirs, grad_theirs = nll_step(theirs, emissions, tags, mask, ours=False)
    reference = copy.deepcopy(ours).double()
    _, grad_reference = nll_step(reference, emissions.double(), tags, mask, ours=True)
    nll_diff = float((nll_ours - nll_theirs).abs() / nll_theirs.abs())
    grad_err_ours = float((grad_ours.double() - grad_reference).abs().max())
    grad_err_theirs = float((grad_theirs.double() - grad_reference).abs().max())
    paths, their_paths = ours.decode(emissions, mask), theirs.decode(emissions, mask)
    same = sum(p[m].tolist() == q for p, m, q in zip(paths, mask, their_paths)) / batch
    checks = {
        "nll+backward": f"nll diff {nll_diff:.1e}; grad err {grad_err_ours:.1e} vs {grad_err_theirs:.1e}",
        "viterbi": f"{same:.0%} paths equal",
    }

    timings = {
        "nll+backward": round_robin(
            {
                "ours": lambda: nll_step(ours, emissions, tags, mask, ours=True),
                "theirs": lambda: nll_step(theirs, emissions, tags, mask, ours=False),
            },
            repeats,
        ),
        "viterbi": round_robin(
            {"ours": lambda: ours.decode(emissions, mask), "theirs": lambda: theirs.decode(emissions, mask)}, repeats
        ),
    }
    return [
        {
            "B,T,C": f"{batch},{steps},{num_tags}",
            "op": op,
            "ours_ms": t["ours"] * 1e3,
            "theirs_ms": t["theirs"] * 1e3,
            "ours/theirs": t["ours"] / t["theirs"],
            "check": checks[op],
        }
        for op, t in timings.items()
    ], {
        "nll_rel_diff": nll_diff,
        "grad_err_ours": grad_err_ours,
        "grad_err_theirs": grad_err_theirs,
        "paths_equal": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="(32, 40, 9) only, 3 repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per row (default 25; quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 25)
    torch.manual_seed(0)  # the CRF parameters (the inputs have their own generator)
    device = torch.device(args.device)
    shapes = SHAPES[:1] if args.quick else SHAPES

    rows: list[dict[str, Any]] = []
    agreement: list[dict[str, float]] = []
    for batch, steps, num_tags in shapes:
        shape_rows, shape_agreement = measure(batch, steps, num_tags, device, repeats)
        rows += shape_rows
        agreement.append(shape_agreement)
        print(f"done {batch}x{steps}x{num_tags}", file=sys.stderr, flush=True)

    print_table(f"CRF vs pytorch-crf on {device.type} (float32): median of {repeats} calls", rows)
    summary = {
        "worst_nll_ratio": max(r["ours/theirs"] for r in rows if r["op"] == "nll+backward"),
        "worst_viterbi_ratio": max(r["ours/theirs"] for r in rows if r["op"] == "viterbi"),
        "worst_nll_rel_diff": max(a["nll_rel_diff"] for a in agreement),
        "worst_grad_err_ours": max(a["grad_err_ours"] for a in agreement),
        "worst_grad_err_theirs": max(a["grad_err_theirs"] for a in agreement),
        "worst_paths_equal": min(a["paths_equal"] for a in agreement),
    }
    print(
        f"ours/theirs, worst: nll+backward {summary['worst_nll_ratio']:.2f}x, viterbi "
        f"{summary['worst_viterbi_ratio']:.2f}x; vs pytorch-crf: NLL relative diff <= "
        f"{summary['worst_nll_rel_diff']:.1e}, equal paths >= {summary['worst_paths_equal']:.0%} of sequences; "
        f"float32 gradient error vs float64 <= {summary['worst_grad_err_ours']:.1e} (ours), "
        f"{summary['worst_grad_err_theirs']:.1e} (pytorch-crf)"
    )
    write_json(
        Path(args.out) / f"{NAME}.json", NAME, rows, repeats=repeats, device=str(device), scale=SCALE, summary=summary
    )


if __name__ == "__main__":
    main()
