"""Every recipe parses and runs one training and one validation step (`fast_dev_run`) through the real CLI."""

from pathlib import Path

import pytest

from rnn_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")

TASK_RECIPES = sorted(str(p.relative_to(RECIPES)) for folder in ("lm", "tagging", "classification")
                      for p in (RECIPES / folder).glob("*.yaml"))
LOCAL_DATA = {  # recipe -> the fragment that reads its corpus from ../shared/data
    "tagging/ud_ewt_upos_bilstm.yaml": "ud_ewt_local.yaml",
    "tagging/conll2003_ner_bilstm.yaml": "conll2003_local.yaml",
    "tagging/conll2003_ner_bilstm_crf.yaml": "conll2003_local.yaml",
    "tagging/conll2003_ner_char_bilstm_crf.yaml": "conll2003_local.yaml",
    "tagging/ud_ewt_upos_char_bilstm.yaml": "ud_ewt_local.yaml",
    "classification/sst2_bilstm.yaml": "sst2_local.yaml",
}


@pytest.mark.parametrize("recipe", ["quickstart.yaml", *TASK_RECIPES])
def test_recipe_parses_with_its_hub_dataset(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(RECIPES / recipe), "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: rnn_lightning." in capsys.readouterr().out


def test_quickstart_fast_dev_run_saves_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(RECIPES / "quickstart.yaml"), "--trainer.fast_dev_run", "1"])
    assert not list(tmp_path.rglob("*.ckpt"))  # the recipe's save_last would otherwise write a one-step last.ckpt


@needs_shared
@pytest.mark.parametrize("recipe", ["wikitext2_lstm_650x2_tied.yaml", "wikitext2_rnn_tanh.yaml"])
def test_wikitext2_recipes_on_local_files(recipe, monkeypatch):
    monkeypatch.chdir(ROOT)  # the local-data fragment names paths relative to the repository root
    main(["fit", "-c", str(RECIPES / "lm" / recipe), "-c", str(RECIPES / "data" / "wikitext2_local.yaml"),
          "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"])


AWD_SMALL = ["--model.init_args.hidden_size", "32", "--model.init_args.embedding_dim", "16",
             "--model.init_args.last_hidden_size", "16", "--data.init_args.batch_size", "4"]  # CPU time: a tiny AWD
AWD_WIKITEXT2 = ["awd_lstm_wikitext2.yaml", "awd_lstm_wikitext2_budget.yaml", "awd_lstm_wikitext2_finetune.yaml"]


@needs_shared
@pytest.mark.parametrize("recipe", AWD_WIKITEXT2)
def test_awd_wikitext2_recipes_on_local_files(recipe, monkeypatch, tmp_path):
    data = tmp_path / "wikitext2_here.yaml"  # the local fragment, with absolute paths: the runs write under tmp_path
    data.write_text((RECIPES / "data" / "wikitext2_local.yaml").read_text().replace("../shared/data", str(SHARED)))
    monkeypatch.chdir(tmp_path)
    if recipe.endswith("finetune.yaml"):  # the first stage writes the best.ckpt that fine-tuning starts from
        main(["fit", "-c", str(RECIPES / "lm" / "awd_lstm_wikitext2.yaml"), "-c", str(data), "--trainer.max_steps",
              "1", "--trainer.val_check_interval", "1", "--trainer.limit_val_batches", "2", "--trainer.accelerator",
              "cpu", *AWD_SMALL])
        assert (tmp_path / "checkpoints" / "awd_lstm_wikitext2" / "best.ckpt").is_file()
    main(["fit", "-c", str(RECIPES / "lm" / recipe), "-c", str(data), "--trainer.fast_dev_run", "1",
          "--trainer.accelerator", "cpu", *AWD_SMALL])


@needs_shared
def test_tinyshakespeare_char_recipe_on_local_file(monkeypatch):
    monkeypatch.chdir(ROOT)
    main(["fit", "-c", str(RECIPES / "lm" / "tinyshakespeare_char_lstm.yaml"),
          "-c", str(RECIPES / "data" / "tinyshakespeare_local.yaml"),
          "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"])


@pytest.mark.parametrize("recipe", ["ptb_lstm_small", "ptb_lstm_medium", "ptb_lstm_large", "awd_lstm_ptb",
                                    "awd_lstm_ptb_budget"])
def test_ptb_recipes_on_local_ptb_format_files(recipe, tmp_path, monkeypatch):
    (tmp_path / "data" / "ptb").mkdir(parents=True)
    lines = " no it was n't black monday \n but while the new york stock exchange did n't fall apart \n"
    for split in ("train", "valid", "test"):
        (tmp_path / "data" / "ptb" / f"ptb.{split}.txt").write_text(lines * 40)
    monkeypatch.chdir(tmp_path)
    args = ["fit", "-c", str(RECIPES / "lm" / f"{recipe}.yaml"), "-c", str(RECIPES / "data" / "ptb_local.yaml"),
            "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"]
    if recipe == "ptb_lstm_large":  # keep CPU time small: the 1500-unit network is what the recipe is about
        args += ["--model.init_args.hidden_size", "64", "--model.init_args.embedding_dim", "64"]
    if recipe.startswith("awd"):
        args += AWD_SMALL
    main(args)


@needs_shared
@pytest.mark.parametrize("recipe", sorted(LOCAL_DATA))
def test_tagging_and_classification_recipes_on_local_files(recipe, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    main(["fit", "-c", str(RECIPES / recipe), "-c", str(RECIPES / "data" / LOCAL_DATA[recipe]),
          "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"])
    summary = capsys.readouterr().out
    assert "validation: acc" in summary and ("f1 " in summary) == ("conll2003" in recipe)


def checkpoint_callbacks(recipe: str) -> list[dict]:
    import yaml

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
