"""Every recipe parses, and trains through the real CLI as a user runs it: from a working directory holding
``recipes/`` and the corpora in ``data/`` where the README puts them, two training steps log the metric the recipe
monitors (finite) and write checkpoints that load with the task's ``load_from_checkpoint`` and predict."""

import csv
import importlib
import math
import shutil
from pathlib import Path

import pytest
import yaml

from rnn_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

TASK_RECIPES = sorted(str(p.relative_to(RECIPES)) for folder in ("lm", "tagging", "classification", "long_range")
                      for p in (RECIPES / folder).glob("*.yaml"))
LOCAL_DATA = {  # recipe -> the fragment that reads its corpus from data/ (the README's "Local files" commands)
    "lm/wikitext2_lstm_650x2_tied.yaml": "wikitext2_local.yaml",
    "lm/wikitext2_lstm_650x2_tied_fast.yaml": "wikitext2_local.yaml",
    "lm/wikitext2_rnn_tanh.yaml": "wikitext2_local.yaml",
    "lm/tinyshakespeare_char_lstm.yaml": "tinyshakespeare_local.yaml",
    "lm/ptb_lstm_small.yaml": "ptb_local.yaml",
    "lm/ptb_lstm_medium.yaml": "ptb_local.yaml",
    "lm/ptb_lstm_large.yaml": "ptb_local.yaml",
    "lm/awd_lstm_wikitext2.yaml": "wikitext2_local.yaml",
    "lm/awd_lstm_wikitext2_budget.yaml": "wikitext2_local.yaml",
    "lm/awd_lstm_wikitext2_finetune.yaml": "wikitext2_local.yaml",
    "lm/awd_lstm_ptb.yaml": "ptb_local.yaml",
    "lm/awd_lstm_ptb_budget.yaml": "ptb_local.yaml",
    "lm/wikitext103_lstm_adaptive.yaml": "wikitext103_local.yaml",
    "lm/wikitext2_char_lstm_forward.yaml": "wikitext2_local.yaml",
    "lm/wikitext2_char_lstm_backward.yaml": "wikitext2_local.yaml",
    "lm/wikitext2_char_lstm_2048_forward.yaml": "wikitext2_local.yaml",
    "lm/wikitext2_char_lstm_2048_backward.yaml": "wikitext2_local.yaml",
    "tagging/ud_ewt_upos_bilstm.yaml": "ud_ewt_local.yaml",
    "tagging/ud_ewt_upos_char_bilstm.yaml": "ud_ewt_local.yaml",
    "tagging/ud_ewt_upos_string_embeddings.yaml": "ud_ewt_local.yaml",
    "tagging/conll2003_ner_bilstm.yaml": "conll2003_local.yaml",
    "tagging/conll2003_ner_bilstm_crf.yaml": "conll2003_local.yaml",
    "tagging/conll2003_ner_char_bilstm_crf.yaml": "conll2003_local.yaml",
    "tagging/conll2003_ner_string_embeddings.yaml": "conll2003_local.yaml",
    "classification/sst2_bilstm.yaml": "sst2_local.yaml",
    "classification/sst2_ulmfit.yaml": "sst2_local.yaml",
    "lm/sst2_lm_finetune.yaml": "sst2_local.yaml",
    "lm/wikitext2_lstm_400x2_budget.yaml": "wikitext2_local.yaml",
    "lm/sst2_lm_finetune_budget.yaml": "sst2_local.yaml",
    "classification/sst2_ulmfit_budget.yaml": "sst2_local.yaml",
    "classification/sst2_lstm_400x2_no_lm.yaml": "sst2_local.yaml",
}
FIRST_STAGES = {  # recipe -> the recipes whose checkpoints it starts from (with their data), run first in this order
    "lm/awd_lstm_wikitext2_finetune.yaml": ["lm/awd_lstm_wikitext2.yaml"],
    "lm/sst2_lm_finetune.yaml": ["lm/wikitext2_lstm_650x2_tied.yaml"],
    "classification/sst2_ulmfit.yaml": ["lm/wikitext2_lstm_650x2_tied.yaml", "lm/sst2_lm_finetune.yaml"],
    "lm/sst2_lm_finetune_budget.yaml": ["lm/wikitext2_lstm_400x2_budget.yaml"],
    "classification/sst2_ulmfit_budget.yaml": ["lm/wikitext2_lstm_400x2_budget.yaml",
                                               "lm/sst2_lm_finetune_budget.yaml"],
}
ULMFIT_SMALL = ["--model.init_args.hidden_size", "16", "--model.init_args.embedding_dim", "16"]  # each stage's
GENERATED = "long_range/"  # recipes whose data is generated: nothing to read from data/
WRITTEN_HERE = {"ptb_local.yaml", "wikitext103_local.yaml"}  # corpora the test writes a few lines of (not shared)
# A run that reads a real corpus tokenizes all of it (seconds each, minutes for all): left to `-m slow`, so the
# default suite's time does not depend on whether the corpora are in data/.
SLOW = {recipe for recipe, fragment in LOCAL_DATA.items() if fragment not in WRITTEN_HERE}
TWO_STEPS = ["--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
             "--trainer.limit_val_batches", "2", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
             "--trainer.logger.init_args.save_dir", "logs"]  # (a limit of "1" would parse as 1.0: the whole epoch)
AWD_SMALL = ["--model.init_args.hidden_size", "32", "--model.init_args.embedding_dim", "16",
             "--model.init_args.last_hidden_size", "16", "--data.init_args.batch_size", "4",
             "--data.init_args.eval_batch_size", "4"]  # the AWD network's shape at a size a CPU test affords
PTB_LINES = " no it was n't black monday \n but while the new york stock exchange did n't fall apart \n"
WT103_SMALL = ["--model.init_args.hidden_size", "64", "--model.init_args.embedding_dim", "16",
               "--model.init_args.adaptive_softmax_cutoffs", "[6, 10, 16]"]  # the PTB lines' 21 ids, not 267,737
EVERY_EPOCH = ["--trainer.val_check_interval", "1.0", "--trainer.check_val_every_n_epoch", "1"]


def at_two_steps(recipe: str) -> list[str]:
    """A recipe that validates every N steps (an integer ``val_check_interval``, e.g. every 20k steps of WikiText-103's
    long epochs) validates at the end of the test's two steps instead."""
    interval = yaml.safe_load((RECIPES / recipe).read_text())["trainer"].get("val_check_interval")
    return EVERY_EPOCH if isinstance(interval, int) else []


@pytest.mark.parametrize("recipe", ["quickstart.yaml", *TASK_RECIPES])
def test_recipe_parses_with_its_hub_dataset(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(RECIPES / recipe), "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: rnn_lightning." in capsys.readouterr().out


def test_every_task_recipe_has_a_local_data_fragment_that_reads_from_data():
    assert sorted(LOCAL_DATA) == [r for r in TASK_RECIPES if not r.startswith(GENERATED)]
    for fragment in sorted(set(LOCAL_DATA.values())):
        files = yaml.safe_load((RECIPES / "data" / fragment).read_text())["data"]["init_args"]["data_files"]
        paths = files.values() if isinstance(files, dict) else [files]
        assert all(path.startswith("data/") for path in paths), (fragment, files)


def test_quickstart_fast_dev_run_saves_no_checkpoint(user_checkout):
    main(["fit", "-c", "recipes/quickstart.yaml", "--trainer.fast_dev_run", "1"])
    assert not list(user_checkout.rglob("*.ckpt"))  # the recipe's save_last would otherwise write a one-step last.ckpt


def data_files(fragment: str) -> list[Path]:
    files = yaml.safe_load((RECIPES / "data" / fragment).read_text())["data"]["init_args"]["data_files"]
    return [Path(f) for f in (files.values() if isinstance(files, dict) else [files])]


def last_logged(metrics_csv: Path) -> dict[str, float]:
    """The newest value of every metric in a CSVLogger file (one row per logging step)."""
    newest = {}
    with metrics_csv.open() as f:
        for row in csv.DictReader(f):
            newest.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return newest


def predicts(model, recipe: str) -> None:
    """Use the loaded model as the README does: generate text, tag a sentence or classify one."""
    from rnn_lightning import LanguageModel, SequenceClassifier, SequenceTagger

    if isinstance(model, LanguageModel):
        text = model.generate(max_new_tokens=12, seed=0, stop_at_eos=False)
        assert isinstance(text, str) and text == model.generate(max_new_tokens=12, seed=0, stop_at_eos=False)
        assert text.strip()
    elif isinstance(model, SequenceTagger):
        words = "EU rejects German call to boycott British lamb .".split()
        (tags,) = model.tag([words])
        assert len(tags) == len(words) and set(tags) <= set(model.hparams.labels), tags
    else:
        assert isinstance(model, SequenceClassifier), recipe
        (label,) = model.classify(["a gripping , funny and moving film"])
        assert label in model.hparams.labels


@pytest.mark.parametrize("recipe", [pytest.param(r, marks=pytest.mark.slow) if r in SLOW else r
                                    for r in ["quickstart.yaml", *TASK_RECIPES]])
def test_recipe_trains_two_steps_on_local_data_and_its_checkpoint_predicts(recipe, user_checkout):
    args = ["fit", "-c", f"recipes/{recipe}"]
    if recipe in LOCAL_DATA:
        fragment = LOCAL_DATA[recipe]
        args += ["-c", f"recipes/data/{fragment}"]
        if fragment == "ptb_local.yaml":  # PTB is not freely redistributable: a few lines in its format
            (user_checkout / "data" / "ptb").mkdir()
            for split in ("train", "valid", "test"):
                (user_checkout / "data" / "ptb" / f"ptb.{split}.txt").write_text(PTB_LINES * 40)
        if fragment == "wikitext103_local.yaml" and not (user_checkout / "data" / "wikitext-103").exists():
            (user_checkout / "data" / "wikitext-103").mkdir()  # not in the shared data: lines in its format
            for split in ("train", "valid", "test"):
                (user_checkout / "data" / "wikitext-103" / f"wiki.{split}.tokens").write_text(PTB_LINES * 40)
            args += WT103_SMALL
        missing = [str(f) for f in data_files(fragment) if not f.is_file()]
        if missing:
            pytest.skip(f"corpus not in data/ (see the README's 'Local files'): {missing}")
        # the data's paths are the test session's: a cache of the session's own, not new entries in the user's
        args += ["--data.init_args.cache_dir", str(user_checkout.parent / "datasets-cache")]
    if recipe == "lm/ptb_lstm_large.yaml" or "_2048_" in recipe:  # the network's size is what the recipe is about,
        args += ["--model.init_args.hidden_size", "64", "--model.init_args.embedding_dim", "64"]  # not the test
    if "/awd_" in recipe:
        args += AWD_SMALL
    if recipe in FIRST_STAGES and "/awd_" not in recipe:
        args += ULMFIT_SMALL
    for stage in FIRST_STAGES.get(recipe, []):  # fine-tuning starts from the earlier stages' checkpoints: write them
        fragment = LOCAL_DATA[stage]
        if not all(f.is_file() for f in data_files(fragment)):
            pytest.skip(f"the corpus of the first stage {stage} is not in data/ (see the README's 'Local files')")
        cache = ["--data.init_args.cache_dir", str(user_checkout.parent / "datasets-cache")]
        small = AWD_SMALL if "/awd_" in stage else ULMFIT_SMALL
        main(["fit", "-c", f"recipes/{stage}", "-c", f"recipes/data/{fragment}", *cache, *small, *at_two_steps(stage),
              *TWO_STEPS])
        (stage_folder,) = {c["dirpath"] for c in checkpoint_callbacks(stage)}
        assert list((user_checkout / stage_folder).glob("*.ckpt")), stage
        shutil.rmtree(user_checkout / "logs")  # the checks below read the last stage's log
    if recipe.endswith("_string_embeddings.yaml"):  # the tagger reads the two character LMs' best.ckpt: write them
        if not all(f.is_file() for f in data_files("wikitext2_local.yaml")):
            pytest.skip("WikiText-2 not in data/ (see the README's 'Local files'): the language models need it")
        for direction in ("forward", "backward"):
            main(["fit", "-c", f"recipes/lm/wikitext2_char_lstm_{direction}.yaml", "-c",
                  "recipes/data/wikitext2_local.yaml", *args[-2:], *TWO_STEPS])  # (args[-2:]: the cache folder)
        shutil.rmtree(user_checkout / "logs")
    main(args + at_two_steps(recipe) + TWO_STEPS)

    config = yaml.safe_load((RECIPES / recipe).read_text())
    checkpoints = [c.get("init_args", {}) for c in config["trainer"]["callbacks"]
                   if c["class_path"].endswith("ModelCheckpoint")]
    monitored = next((c["monitor"] for c in checkpoints if c.get("monitor")), "val/loss")
    (metrics_csv,) = (user_checkout / "logs").rglob("metrics.csv")
    logged = last_logged(metrics_csv)
    assert math.isfinite(logged[monitored]), logged
    if "val/ppl" in logged:  # a language model: perplexity is the exponential of the token-mean loss
        assert logged["val/ppl"] == pytest.approx(math.exp(logged["val/loss"]), rel=1e-4)
    else:
        assert 0.0 <= logged["val/acc"] <= 1.0, logged

    folder = user_checkout / checkpoints[0]["dirpath"]
    written = sorted(p.name for p in folder.glob("*.ckpt"))
    assert "last.ckpt" in written, written  # the newest state, and the best one's file beside it when monitored
    assert len(written) == 2 or not any(c.get("monitor") for c in checkpoints), written
    module, name = config["model"]["class_path"].rsplit(".", 1)
    task = getattr(importlib.import_module(module), name)
    for checkpoint in written:
        predicts(task.load_from_checkpoint(folder / checkpoint, map_location="cpu"), recipe)


def checkpoint_callbacks(recipe: str) -> list[dict]:
    callbacks = yaml.safe_load((RECIPES / recipe).read_text())["trainer"].get("callbacks", [])
    return [c.get("init_args", {}) for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]


@pytest.mark.parametrize("recipe", ["quickstart.yaml", *TASK_RECIPES])
def test_every_recipe_keeps_its_newest_state_in_last_ckpt(recipe):
    """Lightning 2.6's ``save_last`` copies only the checkpoints it saves: with a monitored metric, last.ckpt would
    stay at the best epoch. A recipe that monitors a metric therefore adds an unmonitored 'last' checkpoint."""
    callbacks = checkpoint_callbacks(recipe)
    newest = [c for c in callbacks if not c.get("monitor") and (c.get("save_last") or c.get("filename") == "last")]
    assert len(newest) == 1, callbacks
    assert not any(c.get("save_last") for c in callbacks if c.get("monitor")), callbacks


@pytest.mark.slow  # three runs of several epochs
def test_last_ckpt_is_the_newest_state_when_the_monitored_metric_stops_improving(tmp_path, tiny_markov, tiny_lm):
    """The recipes' two checkpoints in a run whose val/loss never improves after the first epoch (lr 0)."""
    import lightning as L
    import torch
    from conftest import trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(max_epochs: int, ckpt_path: str | None = None) -> L.Trainer:
        callbacks = [ModelCheckpoint(**{**args, "dirpath": str(tmp_path / "ckpt")})
                     for args in checkpoint_callbacks("lm/tinyshakespeare_char_lstm.yaml")]
        t = trainer(tmp_path, max_epochs=max_epochs, callbacks=callbacks, enable_checkpointing=True)
        model = tiny_lm(tiny_markov, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
        t.fit(model, tiny_markov, ckpt_path=ckpt_path)
        return t

    first = run(3)
    steps_per_epoch = first.global_step // 3
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == first.global_step
    best = first.checkpoint_callbacks[0].best_model_path
    assert torch.load(best, weights_only=True)["global_step"] == steps_per_epoch  # the first epoch stays best
    resumed = run(4, ckpt_path="last")
    assert resumed.ckpt_path == str(tmp_path / "ckpt" / "last.ckpt") and resumed.global_step == 4 * steps_per_epoch


def test_recipe_runner_reads_each_corpus_from_the_data_folder_it_is_given(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_recipes import data_config, data_fragment

    assert data_fragment("long_range/recall") is None  # generated data: nothing to read
    for recipe in [r.removesuffix(".yaml") for r in TASK_RECIPES if not r.startswith(GENERATED)]:
        fragment = data_fragment(recipe)
        moved = yaml.safe_load(data_config(fragment, tmp_path / "corpora", tmp_path).read_text())
        files = moved["data"]["init_args"]["data_files"]
        assert [str(tmp_path / "corpora" / path.relative_to("data")) for path in data_files(Path(fragment).name)] == (
            list(files.values()) if isinstance(files, dict) else [files]), recipe
