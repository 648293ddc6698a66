"""One long sequence among short ones: packed RNN vs ``run_by_length``, forward + backward, against the length.

A batch of ``--batch`` sequences, one of length T and the rest of ``--short`` steps, through a bidirectional LSTM.
"packed" is ``pack_batch`` -> LSTM -> ``unpack_batch`` (what the encoder ran before); "by length" is
:func:`rnn_lightning.nn.packing.run_by_length` (what it runs off CUDA past ``BY_LENGTH_ABOVE`` steps). Each row
gives both medians, their ratio, and the largest difference between the two paths' outputs, final states and
input gradients (float32; they compute the same values).

Usage: ``python benchmarks/bench_long_input.py [--out DIR] [--quick] [--repeats N] [--device cpu]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import median_seconds, print_table, write_json  # noqa: E402
from rnn_lightning.nn.packing import pack_batch, run_by_length, unpack_batch  # noqa: E402

NAME = "bench_long_input"


def packed(rnn: torch.nn.Module, inputs: torch.Tensor, lengths: torch.Tensor):
    out, final = rnn(pack_batch(inputs, lengths))
    return unpack_batch(out, inputs.shape[1]), final


def by_length(rnn: torch.nn.Module, inputs: torch.Tensor, lengths: torch.Tensor):
    return run_by_length(rnn, inputs, lengths)


def step(path, rnn, inputs, lengths) -> list[torch.Tensor]:
    """Forward and backward; returns the outputs, final states and input gradient."""
    inputs = inputs.detach().requires_grad_(True)
    out, (h, c) = path(rnn, inputs, lengths)
    (out.square().sum() + h.square().sum() + c.square().sum()).backward()
    return [out.detach(), h.detach(), c.detach(), inputs.grad]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="short lengths, one repeat (a smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args()
    lengths_t = (256, 1024) if args.quick else (1000, 4000, 16000)
    repeats = 1 if args.quick else args.repeats
    device = torch.device(args.device)
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(args.hidden, args.hidden, batch_first=True, bidirectional=True).to(device)
    rows = []
    for steps in lengths_t:
        lengths = torch.tensor([steps] + [args.short] * (args.batch - 1))
        inputs = torch.randn(args.batch, steps, args.hidden, device=device)
        values = [step(path, rnn, inputs, lengths) for path in (packed, by_length)]
        diff = max(float((a - b).abs().max()) for a, b in zip(*values, strict=True))
        times = {path.__name__: median_seconds(lambda p=path, x=inputs, n=lengths: step(p, rnn, x, n), repeats, 0)
                 for path in (packed, by_length)}
        rows.append({"T": steps, "batch": args.batch, "packed_s": times["packed"], "by_length_s": times["by_length"],
                     "ratio": times["packed"] / times["by_length"], "max_abs_diff": diff})
        print_table(f"{NAME} (so far)", rows[-1:])
    print_table(f"{NAME}: bidirectional LSTM {args.hidden}, one sequence of T among {args.short}-step ones, "
                f"{device}, forward + backward, median of {repeats}", rows)
    write_json(Path(args.out) / f"{NAME}.json", NAME, rows, quick=args.quick, hidden=args.hidden, short=args.short)


if __name__ == "__main__":
    main()
