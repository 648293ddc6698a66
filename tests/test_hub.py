"""The model hub: ``from_pretrained(save_pretrained(model))`` gives the same model bit for bit (every tensor, every
output, the same tags, classes and seeded samples), for each task and its options and for the checkpoint fixtures;
the folder's files are what they say; bad folders get errors that name the fix; ``push_to_hub`` uploads the folder
``save_pretrained`` writes (only the two network calls are replaced)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import trainer
from fixtures.make_checkpoints import classifier_outputs, language_model_outputs, tagger_outputs
from huggingface_hub import HfApi, ModelCard, RepoUrl
from safetensors.torch import load_file

from rnn_lightning import LanguageModel, SequenceClassifier, SequenceTagger, load_pretrained
from rnn_lightning.data.tokenization import train_word_tokenizer
from rnn_lightning.tasks.common import RecurrentTask
from rnn_lightning.tasks.labeled import LabeledSequenceTask

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
WORDS = "the cat sat on a mat and dog ran to paris rome ann bob".split()
SENTENCES = ["the cat sat on a mat", "ann ran to paris", "zebra unknown words", "bob"]
LABELS = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
CHARS = ["<pad>", "<unk>", *sorted(set("".join(WORDS)))]


def _randomised(model, seed=0):
    """``model`` with every floating parameter drawn at random (a CRF starts from zeros; nothing may hide)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    model.tokenizer = train_word_tokenizer([" ".join(WORDS)])
    return model


def language_model(**kwargs):
    return _randomised(LanguageModel(vocab_size=len(WORDS) + 4, **{"embedding_dim": 6, "hidden_size": 7, **kwargs}))


def tagger(**kwargs):
    return _randomised(SequenceTagger(vocab_size=len(WORDS) + 4, num_labels=5, labels=LABELS, embedding_dim=6,
                                      hidden_size=5, **kwargs))


def classifier(**kwargs):
    return _randomised(SequenceClassifier(vocab_size=len(WORDS) + 4, num_labels=3, labels=["neg", "neu", "pos"],
                                          embedding_dim=6, hidden_size=5, **kwargs))


MODELS = {
    "lm_tied": lambda: language_model(num_layers=2, tie_weights=True, embedding_dim=7),
    "lm_awd": lambda: language_model(num_layers=3, last_hidden_size=6, tie_weights=True, weight_drop=0.5,
                                     dropout_words=0.1, locked_dropout=True, ar_alpha=2, tar_beta=1, cache_window=4),
    "lm_gru_residual": lambda: language_model(num_layers=2, cell="gru", connection="residual"),
    "tagger_char_crf": lambda: tagger(char_vocab=CHARS, char_embedding_dim=3, char_hidden_size=2, crf=True,
                                      span_scheme="IOB2", word_dropout=0.1),
    "tagger_softmax_gru": lambda: tagger(cell="gru", num_layers=2, connection="highway"),
    "classifier_mean": lambda: classifier(pooling="mean", num_layers=2),
    "classifier_final_rnn": lambda: classifier(pooling="final", cell="rnn_tanh", bidirectional=False),
}


def predictions(model):
    """What a user reads from the model: its raw outputs on fixed inputs and its decoded predictions."""
    model.eval()
    if isinstance(model, LanguageModel):
        ids = torch.tensor([model.encode_prompt(SENTENCES[0])])  # (1, T)
        with torch.no_grad():
            logits, state = model(ids)
        return {"logits": logits, "state": state, "sample": model.generate("the", max_new_tokens=12, seed=3),
                "greedy": model.generate("ann", max_new_tokens=6, greedy=True)}
    batch = model.encode_words([s.split() for s in SENTENCES], "sentences")
    with torch.no_grad():
        if isinstance(model, SequenceTagger):
            scores = model(batch["tokens"], batch["lengths"], batch.get("chars"), batch.get("char_lengths"))
            return {"scores": scores, "tags": model.tag(SENTENCES)}
        return {"scores": model(batch["tokens"], batch["lengths"]), "classes": model.classify(SENTENCES)}


def assert_same_model(loaded, model):
    assert type(loaded) is type(model)
    assert dict(loaded.hparams) == dict(model.hparams)
    assert loaded.tokenizer.to_str() == model.tokenizer.to_str()
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert list(theirs) == list(ours)
    for key in ours:
        assert theirs[key].dtype == ours[key].dtype and torch.equal(theirs[key], ours[key]), key
    buffers = dict(loaded.named_buffers())  # the non-persistent ones too (rebuilt from the config)
    for key, buffer in model.named_buffers():
        assert torch.equal(buffers[key], buffer), key
    got, want = predictions(loaded), predictions(model)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[key], value), key
        elif isinstance(value, tuple):  # an LSTM's (h, c)
            assert all(torch.equal(a, b) for a, b in zip(got[key], value, strict=True)), key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("name", list(MODELS))
def test_from_pretrained_gives_the_saved_model_bit_for_bit(tmp_path, name):
    model = MODELS[name]()
    folder = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                         "tokenizer.json"]
    loaded = type(model).from_pretrained(folder)
    assert not loaded.training  # ready to predict
    assert_same_model(loaded, model)
    if model.hparams.get("tie_weights"):  # still one tensor, as training needs
        assert loaded.net.decoder.weight is loaded.net.embedding.weight


@pytest.mark.parametrize("name", ["lm_tied", "tagger_char_crf", "classifier_mean"])
def test_a_double_precision_model_comes_back_in_double_precision(tmp_path, name):
    model = MODELS[name]().double()
    with torch.no_grad():
        next(model.parameters()).add_(1e-12)  # a change float32 cannot hold
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    assert_same_model(loaded, model)


@pytest.mark.parametrize("name", ["lm_awd", "tagger_char_crf"])
def test_the_weights_file_holds_exactly_the_state_dict(tmp_path, name):
    model = MODELS[name]()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")  # safetensors' own reader
    state = model.state_dict()
    assert set(tensors) == set(state)
    assert all(torch.equal(tensors[key], state[key]) for key in state)


@pytest.mark.parametrize("name, task, outputs, exact, close", [
    ("language_model", LanguageModel, language_model_outputs, ("greedy",), ("log_probs",)),
    ("tagger", SequenceTagger, tagger_outputs, ("tags",), ("scores", "crf_log_likelihood")),
    ("classifier", SequenceClassifier, classifier_outputs, ("classes",), ("scores",)),
])
def test_a_checkpoint_saved_as_a_folder_gives_the_checkpoints_outputs(tmp_path, name, task, outputs, exact, close):
    model = task.load_from_checkpoint(FIXTURES / f"{name}.ckpt", map_location="cpu")
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)  # through the base: the folder says which task
    assert type(loaded) is task
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    got, want = outputs(loaded), EXPECTED[name]  # what the checkpoint gave when it was written
    assert got == outputs(model)
    for key in exact:
        assert got[key] == want[key], key
    for key in close:
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(want[key]), rtol=1e-6, atol=1e-6, msg=key)


def test_loading_through_a_base_class_builds_the_saved_task_and_another_task_is_refused(tmp_path):
    MODELS["tagger_char_crf"]().save_pretrained(tmp_path / "tagger")
    MODELS["lm_tied"]().save_pretrained(tmp_path / "lm")
    assert type(RecurrentTask.from_pretrained(tmp_path / "tagger")) is SequenceTagger
    assert type(LabeledSequenceTask.from_pretrained(str(tmp_path / "tagger"))) is SequenceTagger
    assert type(load_pretrained(tmp_path / "lm")) is LanguageModel
    with pytest.raises(ValueError, match=r"'.*lm' holds a LanguageModel, not a SequenceTagger\. Load it with "
                                         r"`LanguageModel.from_pretrained`"):
        SequenceTagger.from_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="holds a LanguageModel, not a LabeledSequenceTask"):
        LabeledSequenceTask.from_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="holds a SequenceTagger, not a SequenceClassifier"):
        SequenceClassifier.from_pretrained(tmp_path / "tagger")


def test_overrides_change_settings_but_never_the_weights(tmp_path):
    model = MODELS["classifier_mean"]()
    model.save_pretrained(tmp_path)
    loaded = SequenceClassifier.from_pretrained(tmp_path, dropout=0.3)  # e.g. to fine-tune with other dropout
    assert loaded.hparams.dropout == 0.3
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"model.safetensors does not fit the SequenceClassifier .* with your "
                                         r"overrides \['hidden_size'\] \(size mismatch for .*; and \d+ more\)\. "
                                         r"Fix: leave out the overrides"):
        SequenceClassifier.from_pretrained(tmp_path, hidden_size=9)


def test_a_loaded_tagger_does_not_reread_its_word_vectors(tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("cat 1 2 3 4 5 6\nparis 6 5 4 3 2 1\n")
    model = tagger(pretrained_embeddings=str(vectors))
    model.pretrained.fill(model.word_embedding(), tokenizer=model.tokenizer, resumed=False)  # what a fit starts with
    embedding = model.word_embedding().weight
    assert embedding[model.tokenizer.token_to_id("cat")].tolist() == [1, 2, 3, 4, 5, 6]
    with torch.no_grad():
        embedding.add_(1.0)  # as training moves the vectors
    model.save_pretrained(tmp_path / "model")
    vectors.unlink()  # the vectors file need not travel with the model
    loaded = SequenceTagger.from_pretrained(tmp_path / "model")
    assert_same_model(loaded, model)
    assert loaded.hparams.pretrained_embeddings == str(vectors)  # recorded in the config and the card
    loaded.pretrained.fill(loaded.word_embedding(), tokenizer=loaded.tokenizer, resumed=False)  # a fit's first step
    assert torch.equal(loaded.word_embedding().weight, embedding)  # the trained vectors stay


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if key == "hparams":
            config["hparams"].update(value)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def test_bad_folders_get_errors_that_name_the_folder_the_problem_and_the_fix(tmp_path):
    def saved(name):
        folder = tmp_path / name
        MODELS["lm_tied"]().save_pretrained(folder)
        return folder

    folder = saved("no_weights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"'.*no_weights'.* has no model.safetensors \(the weights; it holds "
                                         r"\['README.md', 'config.json', 'tokenizer.json'\]\)\. Copy or download"):
        LanguageModel.from_pretrained(folder)
    folder = saved("no_tokenizer")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        LanguageModel.from_pretrained(folder)
    folder = saved("no_config")
    (folder / "config.json").unlink()
    shutil.copy(FIXTURES / "language_model.ckpt", folder / "last.ckpt")
    with pytest.raises(ValueError, match=r"has no config.json, so it was not written by `save_pretrained`.* It holds "
                                         r"a checkpoint: load it with `Task.load_from_checkpoint"):
        LanguageModel.from_pretrained(folder)
    folder = saved("newer")
    _edit_config(folder, format_version=2, library_version="9.0.0")
    with pytest.raises(ValueError, match=r"format version 2, written by rnn_lightning '9.0.0'; this rnn_lightning "
                                         r"\(0.1.0\) reads format 1\. Upgrade rnn_lightning"):
        LanguageModel.from_pretrained(folder)
    folder = saved("new_option")
    _edit_config(folder, hparams={"attention": True})
    with pytest.raises(ValueError, match=r"sets \['attention'\], which LanguageModel does not take: a newer"):
        LanguageModel.from_pretrained(folder)
    folder = saved("unknown_task")
    _edit_config(folder, task="rnn_lightning.tasks.transformer.TransformerLM")
    with pytest.raises(ValueError, match=r"task class 'rnn_lightning.tasks.transformer.TransformerLM', which is not an"
                                         r" imported rnn_lightning task: if it is your own subclass, import its"):
        load_pretrained(folder)
    folder = saved("foreign")
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 768}))
    with pytest.raises(ValueError, match=r"config.json is not an rnn_lightning model's"):
        load_pretrained(folder)
    folder = saved("damaged")
    (folder / "config.json").write_text('{"format": "rnn_lightning", ')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON .* damaged"):
        load_pretrained(folder)
    folder = saved("cut_short")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors is not a readable safetensors file"):
        load_pretrained(folder)
    folder = saved("mixed")
    MODELS["lm_gru_residual"]().save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors does not fit the LanguageModel its config.json describes"
                                         r" \(Missing key\(s\) .*\)\. Fix: the folder's files come from different "
                                         r"models"):
        load_pretrained(folder)


def test_a_path_that_is_no_folder_is_tried_as_a_hub_repo_and_the_error_says_both(tmp_path):
    with pytest.raises(ValueError, match=r"'nobody/no-such-model' is no local folder, and the Hugging Face Hub did "
                                         r"not give a repository of that name \(.*\)\. Check the folder's path"):
        load_pretrained("nobody/no-such-model", local_files_only=True, cache_dir=tmp_path)  # the cache only
    with pytest.raises(ValueError, match=r"is no local folder.*HFValidationError"):
        load_pretrained(str(tmp_path / "missing" / "model"))  # no valid repo id either: no request is made
    with pytest.raises(ValueError, match=r"'.*missing' does not exist: expected a folder written by `save_pretrained`"):
        load_pretrained(tmp_path / "missing")  # a Path is never a repo id
    with pytest.raises(ValueError, match=r"is a file; expected a folder written by `save_pretrained`.*"
                                         r"load_from_checkpoint"):
        load_pretrained(FIXTURES / "tagger.ckpt")


def test_a_hyperparameter_json_cannot_hold_is_named(tmp_path):
    model = MODELS["lm_tied"]()
    model.hparams["vocabulary"] = {"a", "b"}  # e.g. a subclass that saved a set
    with pytest.raises(TypeError, match=r"hyper-parameter `vocabulary` of this LanguageModel is a set .* "
                                        r"`save_hyperparameters\(ignore=\['vocabulary'\]\)"):
        model.save_pretrained(tmp_path)


def test_the_model_card_describes_task_architecture_data_recipe_and_metrics(tmp_path):
    model = MODELS["tagger_char_crf"]()
    recipe = tmp_path / "config.yaml"
    recipe.write_text("model:\n  class_path: rnn_lightning.SequenceTagger\n  init_args:\n    crf: true\n")
    model.save_pretrained(tmp_path / "model", metrics={"test/f1": torch.tensor(0.875), "test/acc": 0.93},
                          dataset="conll2003", recipe=recipe, license="apache-2.0", repo_id="me/ner")
    card = ModelCard.load(tmp_path / "model" / "README.md")
    data = card.data.to_dict()
    assert (data["library_name"], data["pipeline_tag"], data["license"]) == ("rnn-lightning",
                                                                               "token-classification", "apache-2.0")
    assert data["datasets"] == ["conll2003"] and {"crf", "lstm", "rnn_lightning"} <= set(data["tags"])
    results = data["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in results} == {"test/f1": 0.875, "test/acc": 0.93}
    text = card.text
    assert 'SequenceTagger.from_pretrained(\'me/ner\')' in text and "model.tag(" in text
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in text
    assert "`labels` (5): B-LOC, B-PER, I-LOC, I-PER, O" in text and "| `crf` | `true` |" in text
    assert "init_args:\n    crf: true" in text and "| `test/f1` | 0.875 |" in text
    with pytest.raises(TypeError, match=r"`metrics\['f1'\]` must be a number, got str"):
        model.save_pretrained(tmp_path / "again", metrics={"f1": "high"})
    with pytest.raises(ValueError, match="`recipe` must be the config file"):
        model.save_pretrained(tmp_path / "again", recipe=tmp_path / "missing.yaml")
    assert not (tmp_path / "again").exists()  # nothing half-written


def test_the_card_takes_the_metrics_the_trainer_logged(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    fit = trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=0)
    fit.fit(model, tiny_markov)
    model.save_pretrained(tmp_path / "model")
    text = (tmp_path / "model" / "README.md").read_text()
    ppl = float(fit.callback_metrics["val/ppl"])
    assert f"| `val/ppl` | {ppl:.6g} |" in text and "| `val/loss` |" in text
    assert_same_model(LanguageModel.from_pretrained(tmp_path / "model"), model)


def test_push_to_hub_uploads_the_folder_save_pretrained_writes(tmp_path, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):  # the two network calls, replaced: everything else is real
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = {"repo_id": repo_id, **kwargs}
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = MODELS["classifier_mean"]()
    result = model.push_to_hub("me/sentiment", private=True, metrics={"test/acc": 0.9}, dataset="sst2")
    assert result == "commit-info"
    assert calls["create_repo"] == {"repo_id": "me/sentiment", "private": True, "exist_ok": True}
    assert calls["upload_folder"]["repo_id"] == "me/sentiment" and calls["upload_folder"]["repo_type"] == "model"
    uploaded = tmp_path / "uploaded"
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                           "tokenizer.json"]
    assert "SequenceClassifier.from_pretrained('me/sentiment')" in (uploaded / "README.md").read_text()
    assert_same_model(SequenceClassifier.from_pretrained(uploaded), model)
