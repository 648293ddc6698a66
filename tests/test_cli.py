"""The `rnn-lightning` command: fit -> checkpoint -> generate / test / predict, as a user runs it."""

import contextlib
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModel, SequenceTagger, TaggingDataModule, cli
from rnn_lightning.cli import TRACEBACK_ENV, FitReport, bad_input, generate, main
from rnn_lightning.data.conll import read_conll
from rnn_lightning.data.corpus import exception_chain

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


@pytest.mark.slow  # a fresh interpreter imports torch, Lightning and datasets
def test_importing_the_library_does_not_import_wandb():
    import subprocess
    import sys

    code = "import sys, rnn_lightning, rnn_lightning.cli; print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # W&B is an optional extra, imported only when a WandbLogger is used


# -- bad input: `error: <message>` and exit status 2; a bug keeps its traceback --
def test_markov_datamodule_reports_its_source_perplexity(tiny_markov):
    assert isinstance(tiny_markov, FitReport)
    (line,) = tiny_markov.fit_report()
    total, count = tiny_markov.source.nll(tiny_markov.raw["validation"]["text"])
    assert line.startswith(f"source perplexity on the same validation tokens: {math.exp(total / count):.3f} ")
    assert not isinstance(TaggingDataModule(dataset=DatasetDict(train=Dataset.from_dict(
        {"tokens": [["a"]], "tags": [["O"]]}))), FitReport)


def _tagger_checkpoint(tmp_path):
    """A checkpoint of a SequenceTagger saved from Python, without the `_class_path` that tasks record since issue 12
    (as older checkpoints are): only its hyper-parameters tell the task."""
    from conftest import trainer

    rows = Dataset.from_dict({"tokens": [["a", "b"]] * 4, "tags": [["X", "Y"]] * 4})
    dm = TaggingDataModule(dataset=DatasetDict(train=rows, validation=rows), batch_size=2)
    model = SequenceTagger(vocab_size=dm.vocab_size, num_labels=dm.num_labels, pad_id=dm.pad_id, embedding_dim=4,
                           hidden_size=4)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, dm)
    t.save_checkpoint(tmp_path / "tagger.ckpt")
    checkpoint = torch.load(tmp_path / "tagger.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]["_class_path"]
    torch.save(checkpoint, tmp_path / "tagger.ckpt")
    return tmp_path / "tagger.ckpt"


@pytest.mark.parametrize("case, match", [
    ("missing", r"`--ckpt_path` '.*nope\.ckpt' does not exist: expected a checkpoint file .* Check the path\.$"),
    ("directory", r"`--ckpt_path` '.*' is a directory: expected a checkpoint file"),
    ("text file", r"is not a readable checkpoint: .*\(not a complete zip archive; it starts with b'a X O\\n'\)\. "
                  r"Pass a checkpoint written by"),
    ("truncated", r"is not a readable checkpoint: .*\(not a complete zip archive; it starts with b'PK.*copy it again"),
    ("other task (CLI)", r"'.*other\.ckpt' holds a SequenceTagger, not a LanguageModel\. Point `--ckpt_path` at a "
                         r"LanguageModel checkpoint, or use the recipe the checkpoint was trained with\.$"),
    ("other task (Python)", r"'.*tagger\.ckpt' holds a SequenceTagger, not a LanguageModel \(its hyper-parameters "
                            r"\[.*'num_labels'.*\] are not arguments of LanguageModel\)\. Point `--ckpt_path` at a "
                            r"LanguageModel checkpoint"),
])
@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
@pytest.mark.deadline(300)
def test_generate_refuses_what_is_not_a_language_model_checkpoint(trained, tmp_path, capsys, case, match):
    _, ckpt, _ = trained
    if case == "missing":
        path = tmp_path / "nope.ckpt"
    elif case == "directory":
        path = tmp_path
    elif case == "text file":
        path = tmp_path / "a.ckpt"
        path.write_text("a X O\n")
    elif case == "truncated":
        path = tmp_path / "cut.ckpt"
        path.write_bytes(ckpt.read_bytes()[:3000])
    elif case == "other task (CLI)":
        checkpoint = torch.load(ckpt, weights_only=True)
        checkpoint["hyper_parameters"]["_class_path"] = "rnn_lightning.SequenceTagger"
        torch.save(checkpoint, path := tmp_path / "other.ckpt")
    else:
        path = _tagger_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=match):
        generate(["--ckpt_path", str(path)])
    with pytest.raises(SystemExit) as info:  # the command: the message, no traceback
        main(["generate", "--ckpt_path", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(match, err[-1].removeprefix("error: ")) and "Traceback" not in "\n".join(err)


@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
@pytest.mark.deadline(300)
def test_test_command_refuses_a_checkpoint_of_another_task_before_loading_data(trained, tmp_path, capsys):
    _, ckpt, _ = trained
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "rnn_lightning.SequenceTagger"
    torch.save(checkpoint, tmp_path / "other.ckpt")
    recipe = str(ROOT / "recipes" / "quickstart.yaml")
    (tmp_path / "cut.ckpt").write_bytes(ckpt.read_bytes()[:3000])
    for path, match in [(tmp_path / "other.ckpt", r"holds a SequenceTagger, not a LanguageModel"),
                        (tmp_path / "nope.ckpt", r"'.*nope\.ckpt' does not exist"),
                        (tmp_path / "cut.ckpt", r"'.*cut\.ckpt' is not a readable checkpoint")]:
        with pytest.raises(SystemExit) as info:
            main(["test", "-c", recipe, *TINY, "--ckpt_path", str(path)])
        assert info.value.code == 2
        assert re.search(match, capsys.readouterr().err.strip().splitlines()[-1])


def test_an_error_raised_outside_rnn_lightning_keeps_its_traceback(monkeypatch):
    def broken(argv):
        raise ValueError("a bug, not bad input")  # raised here, in the tests, not by rnn_lightning

    monkeypatch.setattr(cli, "generate", broken)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        main(["generate"])


@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
@pytest.mark.deadline(300)
def test_bad_input_finds_our_error_inside_a_wrapper_and_survives_a_loop():
    try:
        read_conll(ROOT / "no-such-file.conll")
    except ValueError as err:
        ours = err
    try:
        raise RuntimeError("wrapper") from ours
    except RuntimeError as err:
        wrapper = err
    assert bad_input(wrapper) is ours and bad_input(ours) is ours
    ours.__context__, ours.__suppress_context__ = wrapper, False  # a loop: ours -> wrapper -> ours
    assert list(exception_chain(wrapper)) == [wrapper, ours]
    assert bad_input(RuntimeError("elsewhere")) is None


@pytest.mark.slow
def test_console_script_prints_the_message_or_with_the_flag_the_traceback(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("EU NNP B-ORG\nrejects VBZ\n")
    command = [str(Path(sys.executable).with_name("rnn-lightning")), "fit",
               "-c", str(ROOT / "recipes/tagging/conll2003_ner_bilstm.yaml"),
               "-c", str(ROOT / "recipes/data/conll2003_local.yaml"), f"--data.init_args.cache_dir={tmp_path / 'c'}",
               f"--data.init_args.data_files={{'train': '{bad}', 'validation': '{bad}'}}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(TRACEBACK_ENV, None)
    short = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    message = (f"{str(bad)!r}, line 2: expected 3 whitespace-separated columns like the file's first token line "
               "(line 1), got 2; the line is 'rejects VBZ'. Every token line needs the same columns; fix or remove "
               "this line.")
    assert short.returncode == 2
    assert short.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert "Traceback" not in short.stderr
    full = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**env, TRACEBACK_ENV: "1"},
                          cwd=tmp_path)
    assert full.returncode == 1
    assert "Traceback (most recent call last)" in full.stderr
    assert full.stderr.strip().splitlines()[-1] == f"rnn_lightning.data.conll.CoNLLFormatError: {message}"


@pytest.mark.parametrize("extra, match", [
    (["--data.init_args.batch_size", "0"], r"^error: `batch_size` must be a positive integer, got 0\.$"),  # wrapped
    (["--trainer.max_epoks", "1"], r"^error: unrecognized arguments: --trainer\.max_epoks 1$"),
    (["-c", "typo.yaml"], r"Option 'batch_sise' is not accepted"),
    (["-c", "missing.yaml"], r"error: Parser key \"config\": File does not exist: .*missing\.yaml"),
])
@pytest.mark.usefixtures("deadline")  # issue 12: a hang fails the test
@pytest.mark.deadline(300)
def test_careless_command_lines_end_in_a_message_and_status_2(tmp_path, monkeypatch, capsys, extra, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "typo.yaml").write_text("data:\n  init_args:\n    batch_sise: 4\n")
    with pytest.raises(SystemExit) as info:
        main(["fit", "-c", str(ROOT / "recipes" / "quickstart.yaml"), *TINY, *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(match, err, re.M) and "Traceback" not in err


@pytest.mark.slow  # the CLI's fit, then its test
def test_test_command_from_a_classifier_checkpoint(tmp_path, monkeypatch, capsys):
    """LightningCLI reads a checkpoint's hyperparameters back into the model's arguments: a classifier's must hold
    only its own arguments (its base class's ``char_vocab`` was saved too and broke ``rnn-lightning test``)."""
    monkeypatch.chdir(tmp_path)
    recipe = str(ROOT / "recipes" / "long_range" / "recall.yaml")
    small = ["--data.init_args.distance", "5", "--data.init_args.train_size", "64", "--data.init_args.validation_size",
             "32", "--data.init_args.test_size", "32", "--model.init_args.hidden_size", "8",
             "--trainer.enable_progress_bar", "false"]
    main(["fit", "-c", recipe, "--trainer.max_steps", "2", *small])
    ckpt = tmp_path / "checkpoints" / "recall" / "last.ckpt"
    assert "char_vocab" not in torch.load(ckpt, weights_only=True)["hyper_parameters"]
    main(["test", "-c", recipe, *small, "--ckpt_path", str(ckpt)])
    assert re.search(r"test/acc\s+[0-9.]+", capsys.readouterr().out)
