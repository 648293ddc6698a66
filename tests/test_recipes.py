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


@needs_shared
def test_tinyshakespeare_char_recipe_on_local_file(monkeypatch):
    monkeypatch.chdir(ROOT)
    main(["fit", "-c", str(RECIPES / "lm" / "tinyshakespeare_char_lstm.yaml"),
          "-c", str(RECIPES / "data" / "tinyshakespeare_local.yaml"),
          "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"])


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_ptb_recipes_on_local_ptb_format_files(size, tmp_path, monkeypatch):
    (tmp_path / "data" / "ptb").mkdir(parents=True)
    lines = " no it was n't black monday \n but while the new york stock exchange did n't fall apart \n"
    for split in ("train", "valid", "test"):
        (tmp_path / "data" / "ptb" / f"ptb.{split}.txt").write_text(lines * 40)
    monkeypatch.chdir(tmp_path)
    args = ["fit", "-c", str(RECIPES / "lm" / f"ptb_lstm_{size}.yaml"), "-c", str(RECIPES / "data" / "ptb_local.yaml"),
            "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"]
    if size == "large":  # keep CPU time small: the 1500-unit network is what the recipe is about, not the test
        args += ["--model.init_args.hidden_size", "64", "--model.init_args.embedding_dim", "64"]
    main(args)


@needs_shared
@pytest.mark.parametrize("recipe", sorted(LOCAL_DATA))
def test_tagging_and_classification_recipes_on_local_files(recipe, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    main(["fit", "-c", str(RECIPES / recipe), "-c", str(RECIPES / "data" / LOCAL_DATA[recipe]),
          "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu"])
    summary = capsys.readouterr().out
    assert "validation: acc" in summary and ("f1 " in summary) == ("conll2003" in recipe)
