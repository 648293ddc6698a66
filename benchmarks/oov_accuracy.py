"""Tagging accuracy on words seen in training vs words the vocabulary maps to ``<unk>``, for trained checkpoints.

Each argument is ``RECIPE,DATA,CHECKPOINT``: the recipe and data fragment build the DataModule and the model as
``rnn-lightning`` does, the checkpoint's weights are loaded, and the test split is tagged (argmax or Viterbi, as the
model decodes). A token is out of vocabulary (OOV) when its id is ``<unk>``; accuracy is over real tokens.

Usage:
    python benchmarks/oov_accuracy.py RECIPE,DATA,CKPT [RECIPE,DATA,CKPT ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch

if __package__ in (None, ""):  # run as `python benchmarks/oov_accuracy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_json  # noqa: E402
from rnn_lightning.cli import RNNLightningCLI  # noqa: E402
from rnn_lightning.constants import IGNORE_INDEX  # noqa: E402
from rnn_lightning.tasks.common import RecurrentTask  # noqa: E402


@torch.no_grad()
def oov_accuracy(recipe: str, data: str, checkpoint: str) -> dict:
    cli = RNNLightningCLI(RecurrentTask, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                          run=False, args=["-c", recipe, "-c", data, "--trainer.logger", "false"])
    model, dm = cli.model, cli.datamodule
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    model.eval()
    dm.setup("test")
    counts = {"iv": [0, 0], "oov": [0, 0]}  # [correct, total]
    for batch in dm.test_dataloader():
        tags = batch["tags"]
        mask = tags != IGNORE_INDEX
        preds = model.decode(model(batch["tokens"], batch["lengths"], batch.get("chars")), mask)
        unseen = batch["tokens"] == dm.unk_id
        for name, where in (("iv", mask & ~unseen), ("oov", mask & unseen)):
            counts[name][0] += int((preds == tags)[where].sum())
            counts[name][1] += int(where.sum())
    (iv_hit, iv_n), (oov_hit, oov_n) = counts["iv"], counts["oov"]
    return {"recipe": Path(recipe).stem, "tokens": iv_n + oov_n, "oov_tokens": oov_n,
            "acc_all": (iv_hit + oov_hit) / (iv_n + oov_n), "acc_seen": iv_hit / iv_n, "acc_oov": oov_hit / oov_n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RECIPE,DATA,CHECKPOINT")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # the CLI reads its arguments from `args=`, not from this script's command line
    rows = [oov_accuracy(*run.split(",")) for run in args.runs]
    print_table("Test token accuracy: words seen in training vs <unk> words", rows)
    write_json(Path(args.out) / "oov_accuracy.json", "oov_accuracy", rows, runs=args.runs)


if __name__ == "__main__":
    main()
