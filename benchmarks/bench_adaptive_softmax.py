"""Training-step time of a ``LanguageModel`` at WikiText-103's vocabulary: full softmax against adaptive softmax.

Both models have the same encoder (embedding E -> one LSTM layer of H units) and differ only in the output layer:
the full softmax (a linear H -> V decoder) or ``adaptive_softmax_cutoffs`` (Grave et al. 2017; head of the
``cutoffs[0]`` most frequent ids plus one entry per cluster, tail clusters over projections divided by
``div_value``). A step is what ``LanguageModel.training_step`` computes without regularisers: the encoder over a
(B, T) window, the token-mean NLL through ``net.nll`` (the adaptive softmax evaluates only the targets' clusters),
backward, and an SGD update of every parameter. Tokens are drawn from a Zipf distribution over the ids (id 0 the
most frequent), the order the word tokenizer gives. Samples go round robin over the two models; medians are taken.

``check``: on a few positions the adaptive model's full distribution (``log_prob``) sums to one in float64 and its
NLL equals ``-log_prob`` of the target.

Usage: ``python benchmarks/bench_adaptive_softmax.py [--out DIR] [--quick] [--repeats N] [--threads N]
[--device D]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` when run as a script

from benchmarks.common import print_table, round_robin, write_json  # noqa: E402
from rnn_lightning import LanguageModel  # noqa: E402

NAME = "bench_adaptive_softmax"
SHAPES = {  # WikiText-103's vocabulary and cutoffs like Grave et al.'s; quick: a smaller vocabulary, same ratios
    "wt103": dict(vocab=267_735, cutoffs=[20_000, 40_000, 200_000], embedding=256, hidden=256, batch=16, bptt=35),
    "quick": dict(vocab=50_000, cutoffs=[4_000, 8_000, 30_000], embedding=64, hidden=64, batch=8, bptt=20),
}
DIV_VALUE = 4.0


def zipf_tokens(vocab: int, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """(B, T) ids drawn with p(id) proportional to 1 / (id + 1)."""
    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    return torch.multinomial(weights, shape[0] * shape[1], replacement=True, generator=generator).view(shape)


def make_model(cfg: dict[str, Any], cutoffs: list[int] | None) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(cfg["vocab"], embedding_dim=cfg["embedding"], hidden_size=cfg["hidden"], num_layers=1,
                         dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0,
                         adaptive_softmax_cutoffs=cutoffs, adaptive_softmax_div_value=DIV_VALUE)


def make_step(model: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor):
    net = model.net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        hidden, _ = net.features(inputs)  # (B, T, H)
        loss = net.nll(net.dropout_out(hidden), targets).sum() / targets.numel()  # the task's token mean
        loss.backward()
        optimizer.step()

    return step


def check_exact(model: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """The adaptive model's distribution sums to one (float64) and its NLL is -log_prob of the target."""
    net = model.net.eval()
    with torch.no_grad():
        hidden = net.features(inputs[:1, :4])[0]  # (1, 4, H)
        log_p = net.decode(hidden).double()  # (1, 4, V)
        nll = net.nll(hidden, targets[:1, :4]).double()  # (1, 4)
    sums_to_one = torch.allclose(log_p.logsumexp(-1), torch.zeros(1, 4, dtype=torch.float64), atol=1e-5)
    expected = -log_p.gather(-1, targets[:1, :4, None])[..., 0]
    return sums_to_one and torch.allclose(nll, expected, atol=1e-4)


def measure(shape: str, device: torch.device, repeats: int) -> dict[str, Any]:
    cfg = SHAPES[shape]
    generator = torch.Generator().manual_seed(0)
    tokens = zipf_tokens(cfg["vocab"], (cfg["batch"], cfg["bptt"] + 1), generator).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, T) each
    models = {"full": make_model(cfg, None).to(device), "adaptive": make_model(cfg, cfg["cutoffs"]).to(device)}
    exact = check_exact(models["adaptive"], inputs, targets)
    steps = {name: make_step(model, inputs, targets) for name, model in models.items()}
    full_s, adaptive_s = round_robin(steps, repeats).values()
    params = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    return {"shape": shape, "V": cfg["vocab"], "cutoffs": "/".join(map(str, cfg["cutoffs"])),
            "E,H,B,T": f"{cfg['embedding']},{cfg['hidden']},{cfg['batch']},{cfg['bptt']}",
            "head_targets": float((targets < cfg["cutoffs"][0]).float().mean()),
            "full_ms": full_s * 1e3, "adaptive_ms": adaptive_s * 1e3, "speedup": full_s / adaptive_s,
            "full_params_M": params["full"] / 1e6, "adaptive_params_M": params["adaptive"] / 1e6,
            "check": "exact" if exact else "NOT NORMALISED"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="a 50k vocabulary, 2 repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per model (default 7; quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 7)
    shape = "quick" if args.quick else "wt103"
    device = torch.device(args.device)
    rows = [measure(shape, device, repeats)]
    print_table(f"LanguageModel training step (forward, backward, SGD), full vs adaptive softmax (div {DIV_VALUE}), "
                f"on {device.type}: median of {repeats}", rows)
    write_json(Path(args.out) / f"{NAME}{'_quick' if args.quick else ''}.json", NAME, rows, repeats=repeats,
               device=str(device), div_value=DIV_VALUE)
    if rows[0]["check"] != "exact":
        sys.exit(1)


if __name__ == "__main__":
    main()
