"""The `rnn-lightning` command: fit -> checkpoint -> generate / test / predict, as a user runs it."""

import contextlib
import io
import math
import os
import re
from pathlib import Path

import pytest
import torch

from rnn_lightning import LanguageModel
from rnn_lightning.cli import generate, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data.init_args.train_tokens", "4000", "--data.init_args.validation_tokens", "1000",
        "--data.init_args.test_tokens", "1000", "--model.init_args.hidden_size", "16",
        "--model.init_args.embedding_dim", "8", "--trainer.enable_progress_bar", "false",
        "--trainer.accelerator", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli")
    old, out = Path.cwd(), io.StringIO()
    try:
        os.chdir(workdir)
        with contextlib.redirect_stdout(out):
            main(["fit", "-c", str(ROOT / "recipes" / "quickstart.yaml"), "--trainer.max_epochs", "1", *TINY])
    finally:
        os.chdir(old)
    return workdir, workdir / "checkpoints" / "quickstart" / "last.ckpt", out.getvalue()


def test_fit_prints_perplexities_and_a_sample(trained):
    _, ckpt, printed = trained
    assert ckpt.exists()
    model_ppl = float(re.search(r"^validation perplexity: ([0-9.]+)$", printed, re.M).group(1))
    source_ppl = float(re.search(r"^source perplexity on the same validation tokens: ([0-9.]+)", printed, re.M)[1])
    assert 1.0 < source_ppl < model_ppl  # an untrained-ish model cannot beat the true source
    assert re.search(r"^sample: \S+", printed, re.M)


def test_generate_command_uses_the_checkpoint_alone(trained, capsys):
    _, ckpt, _ = trained
    texts = generate(["--ckpt_path", str(ckpt), "--seed", "3", "--num_samples", "2", "--max_new_tokens", "12"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == texts and len(texts) == 2
    model = LanguageModel.load_from_checkpoint(ckpt, map_location="cpu")
    assert texts == [model.generate(max_new_tokens=12, seed=3), model.generate(max_new_tokens=12, seed=4)]
    prompted = generate(["--ckpt_path", str(ckpt), "--prompt", texts[0].split()[0], "--greedy"])
    assert prompted[0] == model.generate(texts[0].split()[0], max_new_tokens=50, greedy=True)


def test_test_and_predict_commands_from_checkpoint(trained, monkeypatch):
    workdir, ckpt, _ = trained
    monkeypatch.chdir(workdir)
    recipe = str(ROOT / "recipes" / "quickstart.yaml")
    main(["test", "-c", recipe, *TINY, "--ckpt_path", str(ckpt)])
    from rnn_lightning.cli import RNNLightningCLI
    from rnn_lightning.data import LanguageModelingDataModule

    cli = RNNLightningCLI(LanguageModel, LanguageModelingDataModule, subclass_mode_model=True,
                          subclass_mode_data=True, run=False, args=["-c", recipe, *TINY])
    batches = cli.trainer.predict(cli.model, cli.datamodule, ckpt_path=str(ckpt))
    nll = torch.cat([b["nll"].flatten() for b in batches])
    (metrics,) = cli.trainer.test(cli.model, cli.datamodule, ckpt_path=str(ckpt), verbose=False)
    assert math.exp(float(nll[~nll.isnan()].double().mean())) == pytest.approx(metrics["test/ppl"], rel=1e-5)


def test_generate_command_requires_a_checkpoint(capsys):
    with pytest.raises(SystemExit):
        main(["generate"])
    assert "--ckpt_path" in capsys.readouterr().err


def test_importing_the_library_does_not_import_wandb():
    import subprocess
    import sys

    code = "import sys, rnn_lightning, rnn_lightning.cli; print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # W&B is an optional extra, imported only when a WandbLogger is used
