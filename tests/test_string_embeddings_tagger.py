"""A SequenceTagger (and a SequenceClassifier) reading contextual string embeddings from two LanguageModel
checkpoints: trained by the real Trainer with the LMs frozen (bit-identical afterwards) or fine-tuned, and predicting
from its own checkpoint alone."""

import re
import shutil

import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModel, LanguageModelingDataModule, SequenceTagger, TaggingDataModule
from rnn_lightning.export import export

SENTENCES = [(["Ann", "met", "Bob", "in", "Rome", "."], ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]),
             (["Carl", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]),
             (["the", "man", "from", "Oslo", "saw", "Dana", "Lee"], ["O", "O", "O", "B-LOC", "O", "B-PER", "I-PER"]),
             (["Rome", "and", "Paris", "are", "far"], ["B-LOC", "O", "B-LOC", "O", "O"])] * 4


def _train_lm(folder, direction, tokenizer="char", lines=None):
    lines = lines or [" ".join(words) for words, _ in SENTENCES]
    data = Dataset.from_dict({"text": lines})
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=data, validation=data), tokenizer=tokenizer,
                                    direction=direction, batch_size=2, eval_batch_size=2, bptt=8)
    model = LanguageModel(vocab_size=dm.vocab_size, embedding_dim=8, hidden_size=10, num_layers=1,
                          direction=direction)
    t = trainer(folder, max_steps=2, limit_val_batches=0)
    t.fit(model, dm)
    path = folder / f"{direction}-{tokenizer}.ckpt"
    t.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lms")
    return {name: _train_lm(folder, *name.split("-")) for name in ("forward-char", "backward-char", "forward-word")}


def _data(**kwargs):
    rows = Dataset.from_dict({"tokens": [w for w, _ in SENTENCES], "tags": [t for _, t in SENTENCES]})
    return TaggingDataModule(dataset=DatasetDict(train=rows, validation=rows), tag_scheme="IOB2", batch_size=4,
                             eval_batch_size=8, **{"serve_words": True, **kwargs})


def _tagger(dm, lm_checkpoints, **kwargs):
    settings = dict(embedding_dim=8, hidden_size=16, dropout=0.0, crf=True,
                    optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    return SequenceTagger(vocab_size=dm.vocab_size, num_labels=dm.num_labels, labels=dm.labels,
                          span_scheme=dm.scheme, pad_id=dm.pad_id, unk_id=dm.unk_id, lm_checkpoints=lm_checkpoints,
                          **{**settings, **kwargs})


def _lm_weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


def test_frozen_string_embeddings_train_the_tagger_and_leave_the_lms_bit_identical(tmp_path, lms):
    dm = _data()
    tagger = _tagger(dm, [lms["backward-char"], lms["forward-char"]])  # either order
    strings = tagger.net.body.strings
    assert strings.output_dim == 20 and tagger.net.body.encoder.rnn.input_size == 8 + 20
    (before,) = trainer(tmp_path).validate(tagger, dm, verbose=False)
    trainer(tmp_path, max_steps=30, limit_val_batches=0).fit(tagger, dm)
    (after,) = trainer(tmp_path).validate(tagger, dm, verbose=False)
    assert after["val/loss"] < 0.5 * before["val/loss"]
    for direction, lm in (("forward", strings.forward_lm), ("backward", strings.backward_lm)):
        saved = _lm_weights(lms[f"{direction}-char"])
        assert lm.state_dict().keys() == saved.keys()
        assert all(torch.equal(lm.state_dict()[k], saved[k]) for k in saved), direction


def test_a_tagger_with_cached_string_embeddings_trains_as_one_without(tmp_path, lms):
    dm = _data()
    paths = [lms["forward-char"], lms["backward-char"]]
    torch.manual_seed(0)
    plain = _tagger(dm, paths)
    torch.manual_seed(0)
    cached = _tagger(dm, paths, string_embeddings_cache=True)
    for model in (plain, cached):
        trainer(tmp_path, max_steps=12, limit_val_batches=0).fit(model, dm)  # 3 epochs of 4 batches
    assert len(cached.net.body.strings.cache) == 4  # the four distinct sentences, each computed once
    for (name, a), b in zip(plain.state_dict().items(), cached.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    t = trainer(tmp_path)
    expected = t.validate(plain, dm, verbose=False)
    torch.testing.assert_close(t.validate(cached, dm, verbose=False), expected)
    t.save_checkpoint(tmp_path / "cached.ckpt")
    assert SequenceTagger.load_from_checkpoint(tmp_path / "cached.ckpt").net.body.strings.cache == {}


def test_fine_tuned_lms_change(tmp_path, lms):
    dm = _data()
    tagger = _tagger(dm, [lms["forward-char"], lms["backward-char"]], string_embeddings_trainable=True)
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(tagger, dm)
    saved = _lm_weights(lms["forward-char"])
    tuned = tagger.net.body.strings.forward_lm.state_dict()
    assert not torch.equal(tuned["embedding.weight"], saved["embedding.weight"])


def test_tag_works_from_the_taggers_checkpoint_alone(tmp_path, lms):
    folder = tmp_path / "lms"
    folder.mkdir()
    paths = [shutil.copy(lms[name], folder) for name in ("forward-char", "backward-char")]
    dm = _data()
    tagger = _tagger(dm, paths, embedding_dim=0)  # the LM features alone, no word embeddings
    t = trainer(tmp_path, max_steps=3, limit_val_batches=0)
    t.fit(tagger, dm)
    t.save_checkpoint(tmp_path / "tagger.ckpt")
    sentences = [["Bob", "saw", "Oslo"], "Zoe met Ann in Rome ."]  # Z: a character the LMs never saw
    expected = tagger.tag(sentences)
    shutil.rmtree(folder)
    loaded = SequenceTagger.load_from_checkpoint(tmp_path / "tagger.ckpt", map_location="cpu")  # strict
    assert loaded.tag(sentences) == expected and [len(tags) for tags in expected] == [3, 6]
    words = [["Bob", "saw", "Oslo"]]
    torch.testing.assert_close(loaded.net.body.strings(words), tagger.net.body.strings(words), rtol=0, atol=0)


def test_bad_language_models_and_data_get_clear_errors(tmp_path, lms):
    dm = _data()
    with pytest.raises(ValueError, match=r"the vocabulary of `lm_checkpoints\[1\]` .*forward-word.ckpt' is not a "
                                         r"character vocabulary.*tokenizer: char"):
        _tagger(dm, [lms["backward-char"], lms["forward-word"]])
    with pytest.raises(ValueError, match=r"`lm_checkpoints` holds two forward language models.*`direction: backward`"):
        _tagger(dm, [lms["forward-char"], lms["forward-char"]])
    with pytest.raises(ValueError, match=r"`lm_checkpoints\[0\]` '.*missing.ckpt' does not exist"):
        _tagger(dm, [str(tmp_path / "missing.ckpt"), lms["backward-char"]])
    with pytest.raises(ValueError, match="`lm_checkpoints` must list two checkpoints"):
        _tagger(dm, [lms["forward-char"]])
    without_words = _data(serve_words=False)
    tagger = _tagger(without_words, [lms["forward-char"], lms["backward-char"]])
    with pytest.raises(ValueError, match="needs the words themselves.*`serve_words: true`"):
        trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(tagger, without_words)
    with pytest.raises(ValueError, match="reads contextual string embeddings.*Export a model without"):
        export(tagger, tmp_path / "exported", formats="torchscript")


def test_served_words_are_each_batchs_sentences_and_pieces():
    dm = _data(max_length=3)
    dm.setup("fit")
    (batch,) = list(dm.val_dataloader())[:1]
    assert batch["words"] == [words for words, _ in SENTENCES[:8]]  # whole sentences, in order
    for batch in dm.train_dataloader():  # training pieces of at most 3 words, each with its own words
        assert [len(words) for words in batch["words"]] == batch["lengths"].tolist()
        vocab = dm.tokenizer.get_vocab()
        assert [[vocab[w] for w in words] for words in batch["words"]] == [
            row[:n].tolist() for row, n in zip(batch["tokens"], batch["lengths"], strict=True)]
    assert "words" not in next(iter(_data(serve_words=False).val_dataloader()))


def test_a_classifier_reads_string_embeddings_too_and_classifies_from_its_checkpoint_alone(tmp_path, lms):
    from rnn_lightning import SequenceClassifier, TextClassificationDataModule

    texts = [" ".join(words) for words, _ in SENTENCES]
    rows = Dataset.from_dict({"sentence": texts, "label": ["places" if "Rome" in t else "other" for t in texts]})
    dm = TextClassificationDataModule(dataset=DatasetDict(train=rows, validation=rows), serve_words=True,
                                      batch_size=4)
    folder = tmp_path / "lms"
    folder.mkdir()
    paths = [shutil.copy(lms[name], folder) for name in ("forward-char", "backward-char")]
    model = SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, embedding_dim=8,
                               hidden_size=8, pooling="max", lm_checkpoints=paths)
    assert model.net.body.strings.output_dim == 20
    t = trainer(tmp_path, max_steps=3, limit_val_batches=0)
    t.fit(model, dm)
    t.save_checkpoint(tmp_path / "classifier.ckpt")
    expected = model.classify(["Ann met Bob in Rome .", "the man saw Dana"])
    shutil.rmtree(folder)
    loaded = SequenceClassifier.load_from_checkpoint(tmp_path / "classifier.ckpt", map_location="cpu")
    assert loaded.classify(["Ann met Bob in Rome .", "the man saw Dana"]) == expected
    strings = loaded.net.body.strings
    for direction, lm in (("forward", strings.forward_lm), ("backward", strings.backward_lm)):
        saved = _lm_weights(lms[f"{direction}-char"])
        assert all(torch.equal(lm.state_dict()[k], saved[k]) for k in saved), direction  # frozen through training


@pytest.mark.slow  # two language models, then the CLI's fit and test
def test_the_test_command_reads_a_taggers_checkpoint_whose_lm_vocabulary_holds_yaml_symbols(tmp_path, monkeypatch,
                                                                                           capsys):
    """``rnn-lightning test --ckpt_path`` puts the checkpoint's hyperparameters back into the model's arguments. The
    language models' vocabularies there held characters that YAML reads as other things (``?`` a mapping key, ``~``
    null, ``1`` a number): the command failed on a real corpus's LMs (WikiText-2 has ``?``). It now evaluates the
    checkpoint and prints what evaluating it in Python gives."""
    import json

    from rnn_lightning.cli import main

    monkeypatch.chdir(tmp_path)
    odd = ["Who met Ann ? 1 ~ : - [x] # a , b", *[" ".join(words) for words, _ in SENTENCES]]
    paths = [_train_lm(tmp_path, direction, lines=odd) for direction in ("forward", "backward")]
    rows = "\n\n".join("\n".join(f"{w} NNP I-NP {t}" for w, t in zip(words, tags)) for words, tags in SENTENCES)
    (tmp_path / "eng.txt").write_text(rows + "\n")
    files = {split: str(tmp_path / "eng.txt") for split in ("train", "validation", "test")}
    settings = dict(path="conll", data_files=files, tag_scheme="IOB2", serve_words=True, batch_size=4,
                    eval_batch_size=8, cache_dir=str(tmp_path / "cache"))
    data = [f"--data.init_args.{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in settings.items()]
    command = ["--model", "rnn_lightning.SequenceTagger", f"--model.init_args.lm_checkpoints={json.dumps(paths)}",
               "--model.init_args.embedding_dim=8", "--model.init_args.hidden_size=16", "--model.init_args.crf=true",
               "--data", "rnn_lightning.TaggingDataModule", *data, "--trainer.logger=false",
               "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0"]
    main(["fit", *command, "--trainer.max_steps=2"])
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    loaded = SequenceTagger.load_from_checkpoint(ckpt, map_location="cpu")
    assert "?" in loaded.hparams.lm_settings["forward"]["vocab"]
    (expected,) = trainer(tmp_path).test(loaded, TaggingDataModule(**settings), verbose=False)
    capsys.readouterr()
    main(["test", *command, "--ckpt_path", str(ckpt)])
    printed = dict(re.findall(r"(test/\w+)\s+([0-9.]+)", capsys.readouterr().out))
    assert printed.keys() == expected.keys(), printed
    assert all(float(printed[k]) == pytest.approx(v, abs=1e-6) for k, v in expected.items()), (printed, expected)
