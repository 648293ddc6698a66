"""Bad input on the tasks, metrics, generation, checkpoints and predictions: a clear error naming the argument, what
arrived and the fix, or a correct result."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import (
    LanguageModel,
    LanguageModelingDataModule,
    MarkovCorpusDataModule,
    Perplexity,
    SequenceClassifier,
    SequenceTagger,
    SpanF1,
    TaggingDataModule,
    TextClassificationDataModule,
    WritePredictions,
)
from rnn_lightning.callbacks import GenerateSamples
from rnn_lightning.cli import generate as cli_generate
from rnn_lightning.data.tokenization import train_word_tokenizer
from rnn_lightning.functional import mean_nll, perplexity_from_nll
from rnn_lightning.nn import EncoderConfig
from rnn_lightning.nn.sampling import filter_logits

pytestmark = pytest.mark.usefixtures("deadline")  # a hang fails the test (tests/conftest.py)

WORDS = "a b c d e f"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lm():
    torch.manual_seed(0)
    tok = train_word_tokenizer([WORDS])
    model = LanguageModel(vocab_size=tok.get_vocab_size(), embedding_dim=4, hidden_size=4, num_layers=1)
    model.tokenizer = tok
    return model


@pytest.fixture
def classifier():
    tok = train_word_tokenizer([WORDS])
    model = SequenceClassifier(tok.get_vocab_size(), 2, labels=["neg", "pos"], embedding_dim=4, hidden_size=4)
    model.tokenizer = tok
    return model


@pytest.fixture
def tagger():
    tok = train_word_tokenizer([WORDS])
    model = SequenceTagger(tok.get_vocab_size(), 3, labels=["O", "B-X", "I-X"], embedding_dim=4, hidden_size=4)
    model.tokenizer = tok
    return model


# -- generation: arguments that ask for no output or no distribution --
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(max_new_tokens=0), ValueError, r"`max_new_tokens` must be >= 1, got 0: that asks for no output"),
    (dict(max_new_tokens=-3), ValueError, r"`max_new_tokens` must be >= 1, got -3"),
    (dict(max_new_tokens=2.5), TypeError, r"`max_new_tokens` must be an integer, got 2.5"),
    (dict(top_k=0), ValueError, r"`top_k` must be a positive integer or None, got 0: top_k=0 keeps no token"),
    (dict(top_p=0.0), ValueError, r"`top_p` must be in \(0, 1\] or None, got 0.0.*Pass e.g. 0.9"),
    (dict(top_p=1.5), ValueError, r"`top_p` must be in \(0, 1\] or None, got 1.5"),
    (dict(top_p=math.nan), ValueError, r"`top_p` must be in \(0, 1\] or None, got nan"),
    (dict(temperature=0.0), ValueError, r"`temperature` must be a finite number > 0, got 0.0.*greedy=True"),
    (dict(temperature=-1.0), ValueError, r"`temperature` must be a finite number > 0, got -1.0"),
    (dict(temperature=math.nan), ValueError, r"`temperature` must be a finite number > 0, got nan"),
    (dict(temperature=math.inf), ValueError, r"`temperature` must be a finite number > 0, got inf"),
    (dict(seed="x"), TypeError, r"`seed` must be an integer or None, got 'x'"),
    (dict(prompt=123), TypeError, r"`prompt` must be a string or None, got int"),
    (dict(prompt=["a", "b"]), TypeError, r"`prompt` must be a string or None, got list.*one prompt per call"),
])
def test_generation_arguments_that_ask_for_nothing_are_refused(lm, kwargs, error, match):
    with pytest.raises(error, match=match):
        lm.generate(**{"max_new_tokens": 3, **kwargs})


def test_greedy_ignores_the_temperature_and_equals_the_argmax(lm):
    ids = lm.generate_ids(lm.encode_prompt("a b"), max_new_tokens=4, greedy=True, temperature=0.0, stop_at_eos=False)
    state, expected, step = None, [], torch.tensor([lm.encode_prompt("a b")])
    lm.eval()
    with torch.no_grad():  # the argmax, one token at a time, with the carried state
        for _ in range(4):
            logits, state = lm(step, state)
            expected.append(int(logits[0, -1].argmax()))
            step = torch.tensor([[expected[-1]]] if expected[-1] != lm.tokenizer.token_to_id("<eos>")
                                else [[expected[-1], lm.tokenizer.token_to_id("<bos>")]])
    assert ids == expected


def test_context_ids_outside_the_vocabulary_are_refused(lm):
    with pytest.raises(ValueError, match=r"`context` must hold token ids in \[0, vocab_size=\d+\), got 99.*"
                                         r"encode_prompt"):
        lm.generate_ids([99], max_new_tokens=2)


def test_filter_logits_and_the_samples_callback_share_the_checks():
    with pytest.raises(ValueError, match=r"`top_k` must be a positive integer"):
        filter_logits(torch.zeros(1, 3), top_k=0)
    with pytest.raises(ValueError, match=r"`max_new_tokens` must be >= 1, got 0"):
        GenerateSamples(max_new_tokens=0)  # at construction, not after the first validation


def test_cli_generate_refuses_zero_samples(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_generate(["--ckpt_path", "unused.ckpt", "--num_samples", "0"])
    assert exit_.value.code == 2
    assert "--num_samples must be >= 1, got 0: that asks for no sample" in capsys.readouterr().err


# -- tag / classify inputs --
@pytest.mark.parametrize("texts, error, match", [
    ("a b c", TypeError, r"`texts` must be a list of strings, got str 'a b c'. Wrap a single text in a list"),
    ([None], TypeError, r"`texts\[0\]` must be a string, got NoneType None"),
    (["a b", 7], TypeError, r"`texts\[1\]` must be a string, got int 7"),
    (["a", ""], ValueError, r"`texts` at positions \[1\] are empty"),
])
def test_classify_refuses_what_is_not_a_list_of_texts(classifier, texts, error, match):
    with pytest.raises(error, match=match):
        classifier.classify(texts)


@pytest.mark.parametrize("sentences, match", [
    ("a b c", r"`sentences` must be a list of strings \(or lists of string tokens\), got str"),
    ([["a", 2]], r"`sentences\[0\]` must be a string or a list of string tokens, got list \['a', 2\]"),
])
def test_tag_refuses_what_is_not_a_list_of_sentences(tagger, sentences, match):
    with pytest.raises(TypeError, match=match):
        tagger.tag(sentences)


def test_no_text_gets_no_prediction_and_texts_equal_token_lists(classifier, tagger):
    assert classifier.classify([]) == [] and tagger.tag([]) == []
    assert tagger.tag(["a b  c"]) == tagger.tag([["a", "b", "c"]])
    assert len(classifier.classify(["a b", "c"])) == 2


# -- constructors --
@pytest.mark.parametrize("make, match", [
    (lambda: LanguageModel(10, pad_id=10), r"`pad_id` must be a token id in \[0, vocab_size=10\) or None, got 10"),
    (lambda: LanguageModel(10, pad_id=-1), r"`pad_id` must be a token id in \[0, vocab_size=10\) or None, got -1"),
    (lambda: SequenceClassifier(10, 2, unk_id=50), r"`unk_id` must be a token id in \[0, vocab_size=10\)"),
    (lambda: SequenceTagger(10, 1), r"`num_labels` must be an integer >= 2 \(a tagger chooses among tags\), got 1"),
    (lambda: SequenceTagger(10, 2, labels=["B-X", "I-X"], span_scheme="XYZ"),
     r"`span_scheme` must be one of \('IOB1', 'IOB2', 'IOBES', 'BILOU'\) or None, got 'XYZ'"),
])
def test_constructor_arguments_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- checkpoints --
def test_a_file_that_is_no_checkpoint_is_named_with_the_fix(tmp_path, classifier):
    garbage, empty, cut = tmp_path / "garbage.ckpt", tmp_path / "empty.ckpt", tmp_path / "cut.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    empty.write_bytes(b"")
    torch.save({"state_dict": classifier.state_dict(), "hyper_parameters": dict(classifier.hparams)}, cut)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    for path in (garbage, empty, cut):
        with pytest.raises(ValueError, match=rf"`checkpoint_path` '.*{path.name}' is not a readable checkpoint: it is "
                                             r"empty, truncated.*Pass a checkpoint written by"):
            SequenceClassifier.load_from_checkpoint(path)


def test_another_tasks_checkpoint_names_the_task_that_loads_it(tmp_path, tiny_markov, tiny_lm):
    model = tiny_lm(tiny_markov)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(model, tiny_markov)
    t.save_checkpoint(tmp_path / "lm.ckpt")
    with pytest.raises(ValueError, match=r"'.*lm\.ckpt' holds a LanguageModel, not a SequenceClassifier \(its "
                                         r"hyper-parameters \[.*'tie_weights'.*\] are not arguments of "
                                         r"SequenceClassifier\)\. Load it with LanguageModel.load_from_checkpoint"):
        SequenceClassifier.load_from_checkpoint(tmp_path / "lm.ckpt")
    loaded = LanguageModel.load_from_checkpoint(tmp_path / "lm.ckpt")  # its own task loads it, the same weights
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)


def test_a_cli_checkpoint_with_a_linked_none_loads_in_its_own_task(tmp_path):
    """The CLI links the DataModule's ``char_vocab`` (None without character features) into every model's saved
    hyper-parameters, also a classifier's, which takes no ``char_vocab``: that checkpoint is still the classifier's."""
    classifier = SequenceClassifier(12, 2, embedding_dim=4, hidden_size=4)
    path = tmp_path / "cli.ckpt"
    torch.save({"state_dict": classifier.state_dict(), "pytorch-lightning_version": "2.6.0",
                "hyper_parameters": {**classifier.hparams, "char_vocab": None,
                                     "_class_path": "rnn_lightning.SequenceClassifier"}}, path)
    loaded = SequenceClassifier.load_from_checkpoint(path)
    for name, value in classifier.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)



def _save(model, path, **extra):
    """A Lightning checkpoint of ``model`` written without a Trainer (the keys ``load_from_checkpoint`` reads)."""
    import lightning

    hparams = {**model.hparams, **extra}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, path)
    return path


def test_a_path_that_names_no_checkpoint_file_is_named_with_the_fix(tmp_path, lm):
    for path, what in [(tmp_path / "nope.ckpt", "does not exist"), (tmp_path, "is a directory")]:
        with pytest.raises(FileNotFoundError, match=rf"`checkpoint_path` '.*' {what}: expected a checkpoint file .* "
                                                    r"Check the path\.$") as info:
            LanguageModel.load_from_checkpoint(path)
        assert isinstance(info.value, ValueError)  # bad input to the CLI, and what Lightning raised before
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"'.*plain\.pt' is a PyTorch file but not a Lightning checkpoint \(no "
                                         r"`hyper_parameters` and `state_dict`\)\. Pass a checkpoint written by"):
        LanguageModel.load_from_checkpoint(tmp_path / "plain.pt")


def test_the_class_the_cli_saved_names_the_task(tmp_path, lm):
    path = _save(lm, tmp_path / "lm.ckpt", _class_path="rnn_lightning.SequenceTagger")  # as LightningCLI saves it
    with pytest.raises(ValueError, match=r"'.*lm\.ckpt' holds a SequenceTagger, not a LanguageModel\. Load it with "
                                         r"SequenceTagger\.load_from_checkpoint\.$"):
        LanguageModel.load_from_checkpoint(path)
    loaded = LanguageModel.load_from_checkpoint(_save(lm, tmp_path / "own.ckpt", _class_path="rnn_lightning."
                                                      "LanguageModel"))
    for name, value in lm.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)


def test_a_checkpoint_a_weights_only_load_refuses_loads_when_trusted(tmp_path, lm):
    from fractions import Fraction  # a class torch's weights-only unpickler does not allow

    path = _save(lm, tmp_path / "lm.ckpt", _note=Fraction(1, 3))
    with pytest.raises(ValueError, match=r"'.*lm\.ckpt' holds objects that a weights-only load refuses \(.*"
                                         r"fractions\.Fraction.*\)\. If you trust the file, load it with "
                                         r"`weights_only=False`\."):
        LanguageModel.load_from_checkpoint(path)
    loaded = LanguageModel.load_from_checkpoint(path, weights_only=False)
    for name, value in lm.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)

@pytest.mark.parametrize("change", [dict(batch_size=3), dict(bptt=5)])
def test_resuming_mid_epoch_with_other_windows_is_refused(tmp_path, change):
    def data(**kwargs):
        return MarkovCorpusDataModule(**{**dict(num_words=30, branching=4, train_tokens=3000, validation_tokens=800,
                                                test_tokens=800, batch_size=4, eval_batch_size=3, bptt=7), **kwargs})

    first = data()
    model = LanguageModel(first.vocab_size, pad_id=first.pad_id, embedding_dim=8, hidden_size=8, num_layers=1)
    t = trainer(tmp_path, max_steps=5, limit_val_batches=0)
    t.fit(model, first)
    t.save_checkpoint(tmp_path / "mid.ckpt")  # mid-epoch: 5 of ~100 windows
    other = data(**change)
    fresh = LanguageModel(other.vocab_size, pad_id=other.pad_id, embedding_dim=8, hidden_size=8, num_layers=1)
    with pytest.raises(ValueError, match=r"this run cuts the training streams into windows of batch_size=\d, "
                                         r"bptt=\d, the mid-epoch checkpoint .* into batch_size=4, bptt=7.*Resume "
                                         r"with the checkpoint's batch_size and bptt"):
        trainer(tmp_path, max_steps=8, limit_val_batches=0).fit(fresh, other, ckpt_path=tmp_path / "mid.ckpt")


# -- metrics --
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(nll_sum=1.0, count=-3), ValueError, r"Perplexity: `count` must be >= 0 .*got -3"),
    (dict(nll_sum=5.0, count=0), ValueError, r"`nll_sum` is 5.0 but `count` is 0: a loss over no token"),
    (dict(nll_sum=-1.0, count=2), ValueError, r"`nll_sum` must be >= 0 .*got -1.0.*not the log-likelihood"),
    (dict(nll_sum=1.0, count=2.0), TypeError, r"`count` must be an integer token count .*got float"),
    (dict(nll_sum=1.0, count=torch.tensor(2.0)), TypeError, r"`count` must be an integer .*got torch.float32"),
    (dict(nll_sum=1.0, count=True), TypeError, r"`count` must be an integer token count .*got bool"),
])
def test_perplexity_refuses_impossible_sums_and_counts(kwargs, error, match):
    with pytest.raises(error, match=match):
        Perplexity().update(**kwargs)


def test_perplexity_with_nothing_counted_and_a_zero_sum_is_an_empty_batch():
    metric = Perplexity()
    metric.update(nll_sum=0.0, count=0)  # a batch of padding only: nothing to add
    metric.update(nll_sum=2 * math.log(3.0), count=2)
    assert metric.compute().item() == pytest.approx(3.0)
    assert metric.mean_nll().item() == pytest.approx(math.log(3.0), rel=1e-12)
    assert metric.mean_nll().dtype == torch.float64


@pytest.mark.parametrize("call, error, match", [
    (lambda: mean_nll(1.0, 0), ValueError, r"mean_nll: `count` must be positive, got 0"),
    (lambda: mean_nll(1.0, -2), ValueError, r"mean_nll: `count` must be positive, got -2.*wrong count upstream"),
    (lambda: mean_nll(-1.0, 2), ValueError, r"mean_nll: `nll_sum` must be >= 0"),
    (lambda: perplexity_from_nll(1.0, 2.5), TypeError, r"perplexity_from_nll: `count` must be an integer"),
])
def test_functional_sums_and_counts(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mean_nll_stays_finite_where_the_float32_perplexity_overflows():
    metric = Perplexity()
    metric.update(nll_sum=1000.0, count=10)  # 100 nats per token
    assert metric.compute().item() == math.inf
    assert metric.mean_nll().item() == 100.0


def test_span_f1_refuses_bad_labels_and_ids():
    with pytest.raises(ValueError, match=r"`labels` must be a sequence of tags .*got 'B-X'"):
        SpanF1("B-X")
    metric = SpanF1(["O", "B-X", "I-X"])
    with pytest.raises(ValueError, match=r"`preds` must hold label ids in \[0, 3\).*got 5"):
        metric.update(torch.tensor([[5, 0]]), torch.tensor([[0, 0]]))
    with pytest.raises(TypeError, match=r"`target` must be an integer tensor of label ids, got torch.float32"):
        metric.update(torch.tensor([[1, 0]]), torch.tensor([[0.0, 0.0]]))


# -- predictions: every line strict JSON --
def _strict(line: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


class OddPredictions(SequenceClassifier):
    """Predictions with what JSON has no word for: NaN and infinite scores, numpy values, tuple keys, non-strings."""

    def predict_step(self, batch, batch_idx):
        n = len(batch["label"])
        return [{"label": np.int64(i), "score": [math.nan, math.inf, -math.inf, np.float32(0.5)][i % 4],
                 "scores": torch.tensor([math.nan, 1.0]), "extra": {(1, 2): "tuple key", 3: object}}
                for i in range(n)]


def test_written_predictions_are_strict_json_lines(tmp_path, tiny_markov, tiny_lm):
    rows = Dataset.from_dict({"sentence": ["a b", "c d e", "f", "a c"], "label": [0, 1, 0, 1]})
    data = TextClassificationDataModule(dataset=DatasetDict(train=rows, validation=rows, test=rows), batch_size=4,
                                        eval_batch_size=4)
    model = OddPredictions(data.vocab_size, data.num_labels, pad_id=data.pad_id, embedding_dim=4, hidden_size=4)
    out = tmp_path / "odd.jsonl"
    data.setup("test")
    trainer(tmp_path, callbacks=[WritePredictions(str(out))]).predict(model, data.test_dataloader())
    lines = [_strict(line) for line in out.read_text().splitlines()]
    assert [row["prediction"]["score"] for row in lines] == [None, None, None, 0.5]
    assert lines[0]["prediction"]["scores"] == [None, 1.0] and lines[1]["prediction"]["label"] == 1
    assert lines[0]["prediction"]["extra"]["(1, 2)"] == "tuple key"

    lm_out = tmp_path / "lm.jsonl"  # a language model's per-token NLL is NaN where a position has no target
    model = tiny_lm(tiny_markov)
    trainer(tmp_path, callbacks=[WritePredictions(str(lm_out))]).predict(model, tiny_markov)
    records = [_strict(line) for line in lm_out.read_text().splitlines()]
    nll = [x for record in records for row in record["prediction"]["nll"] for x in row]
    targets = [t for record in records for row in record["prediction"]["targets"] for t in row]
    assert None in nll  # the <bos> targets that are ignored
    assert all((x is None) == (t == -100) for x, t in zip(nll, targets, strict=True))


# -- found by benchmarks/bad_inputs.py (issue 12's audit) --
def test_save_pretrained_refuses_a_file_and_metrics_that_are_no_dict(tmp_path, lm):
    (tmp_path / "a.txt").write_text("x")
    for path, where in [(tmp_path / "a.txt", "is a file"), (tmp_path / "a.txt" / "model", "lies inside '.*a.txt', "
                                                                                         "which is a file")]:
        with pytest.raises(ValueError, match=rf"^`save_directory` '.*' {where}: expected a folder to write the "
                                             r"model's files into\. Pass a new or existing folder\.$"):
            lm.save_pretrained(path)
    with pytest.raises(TypeError, match=r"^`metrics` must be a dict of metric name -> number, got str 'ppl 3'\. "
                                        r"Pass e\.g\. \{'val/ppl': 120\.5\}"):
        lm.save_pretrained(tmp_path / "hub", metrics="ppl 3")
    assert not (tmp_path / "hub").exists()  # refused before anything is written
    assert (lm.save_pretrained(tmp_path / "hub", metrics={"val/ppl": 3.0}) / "config.json").is_file()


def test_write_predictions_refuses_a_folder_or_a_path_inside_a_file(tmp_path):
    with pytest.raises(ValueError, match=r"^`path` '.*' is a folder: expected a file to write the predictions to\. "
                                         r"Pass a file name, e\.g\. '.*predictions\.jsonl'\.$"):
        WritePredictions(str(tmp_path))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"`path` '.*a\.txt/p\.jsonl' lies inside '.*a\.txt', which is a file"):
        WritePredictions(str(tmp_path / "a.txt" / "p.jsonl"))
    assert WritePredictions(str(tmp_path / "new" / "p.jsonl")).path.endswith("p.jsonl")  # a folder made later


@pytest.mark.parametrize("prompts", ["the", ["the", 3], 7])
def test_generate_samples_refuses_prompts_that_are_no_list_of_prompts(prompts):
    with pytest.raises(TypeError, match=r"^`prompts` must be a list of prompts \(strings, or None to start from "
                                        r"<bos>\), got .* Wrap a single prompt in a list: \['the'\]\.$"):
        GenerateSamples(prompts=prompts)  # a string was iterated: one sample per character
    assert GenerateSamples(prompts=["the", None]).prompts == ["the", None]


def _lm_checkpoint(tmp_path, data, **sizes):
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, **{"embedding_dim": 8, "hidden_size": 8,
                                                                   "num_layers": 1, **sizes})
    t = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    t.fit(model, data)
    t.save_checkpoint(tmp_path / "lm.ckpt")
    return tmp_path / "lm.ckpt"


def test_resuming_from_another_tasks_checkpoint_names_the_task(tmp_path, tiny_markov):
    rows = Dataset.from_dict({"sentence": ["a b", "c d e"] * 4, "label": [0, 1] * 4})
    data = TextClassificationDataModule(dataset=DatasetDict(train=rows, validation=rows), batch_size=4)
    classifier = SequenceClassifier(data.vocab_size, data.num_labels, pad_id=data.pad_id, embedding_dim=4,
                                    hidden_size=4)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=0)
    t.fit(classifier, data)
    t.save_checkpoint(tmp_path / "classifier.ckpt")
    model = LanguageModel(tiny_markov.vocab_size, pad_id=tiny_markov.pad_id, embedding_dim=4, hidden_size=4,
                          num_layers=1)
    with pytest.raises(ValueError, match=r"^`ckpt_path` '.*classifier\.ckpt' holds a SequenceClassifier, not a "
                                         r"LanguageModel .* Resume from a LanguageModel checkpoint, or load this one "
                                         r"with its own task\.$"):  # it said: the vocabularies differ
        trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, tiny_markov, ckpt_path=tmp_path /
                                                                "classifier.ckpt")


def test_resuming_with_other_sizes_names_the_settings_that_differ(tmp_path, tiny_markov):
    ckpt = _lm_checkpoint(tmp_path, tiny_markov)
    model = LanguageModel(tiny_markov.vocab_size, pad_id=tiny_markov.pad_id, embedding_dim=8, hidden_size=16,
                          num_layers=1)
    with pytest.raises(ValueError, match=r"^`ckpt_path` '.*lm\.ckpt' does not fit this LanguageModel because "
                                         r"settings differ \(hidden_size=8 saved, 16 here\): \d+ weights have other "
                                         r"shapes, e\.g\. .* resume with the settings it was saved with, or start a "
                                         r"new run without `ckpt_path`\.$"):  # it was torch's size-mismatch error
        trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, tiny_markov, ckpt_path=ckpt)
    with pytest.raises(ValueError, match=r"^the checkpoint does not fit this LanguageModel: \d+ weights have other "
                                         r"shapes, e\.g\. net\.encoder\.rnn\.weight_ih_l0 \(32, 8\) saved, \(64, 8\) "
                                         r"here\."):  # an override (Lightning writes it into the saved settings too)
        LanguageModel.load_from_checkpoint(ckpt, hidden_size=16)


def test_a_checkpoint_saved_from_python_resumes_through_the_cli(tmp_path, monkeypatch, capsys):
    """LightningCLI reads ``--ckpt_path``'s hyper-parameters as the model's arguments, which needs the class: without
    it, resuming a checkpoint saved from Python stopped at 'Parsing of ckpt_path hyperparameters failed!'."""
    from rnn_lightning.cli import main

    recipe = ["-c", "recipes/quickstart.yaml", "--data.init_args.train_tokens=4000",
              "--data.init_args.validation_tokens=1000", "--data.init_args.test_tokens=1000",
              "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", "--trainer.logger=false",
              "--trainer.enable_checkpointing=false", "--model.init_args.embedding_dim=8",
              "--model.init_args.hidden_size=8", "--trainer.callbacks=[]"]
    data = MarkovCorpusDataModule(num_words=200, branching=8, train_tokens=4000, validation_tokens=1000,
                                  test_tokens=1000, batch_size=32)
    ckpt = _lm_checkpoint(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    with pytest.raises(SystemExit) as info:  # mid-epoch, other windows: the run cannot continue, and says why
        main(["fit", *recipe, "--data.init_args.batch_size=16", f"--ckpt_path={ckpt}", "--trainer.max_steps=4"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(r"^error: this run cuts the training streams into windows of batch_size=16", err[-1]), err[-3:]
    main(["test", *recipe, f"--ckpt_path={ckpt}"])  # the same checkpoint tests through the CLI
    assert "test/ppl" in capsys.readouterr().out


def test_the_cli_shows_a_diverged_run_as_a_message(tmp_path, monkeypatch, capsys):
    """The quickstart with SGD at lr 1e6 and no clipping: the divergence stop's message and exit status 2, not a
    traceback."""
    from rnn_lightning.cli import TRACEBACK_ENV, main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    with pytest.raises(SystemExit) as info:
        main(["fit", "-c", "recipes/quickstart.yaml", "--data.init_args.train_tokens=20000",
              "--data.init_args.validation_tokens=1000", "--data.init_args.test_tokens=1000",
              "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", "--trainer.logger=false",
              "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.log_every_n_steps=1",
              "--trainer.gradient_clip_val=null", "--model.init_args.optimizer=torch.optim.SGD",
              "--model.init_args.optimizer.lr=1e6", "--model.init_args.lr_scheduler=null",
              "--model.init_args.hidden_size=16", "--model.init_args.embedding_dim=8"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(r"^error: training diverged at step \d+ \(epoch 0\): .*Lower the optimizer's lr", err[-1])
    assert "Traceback" not in "\n".join(err)


def test_score_refuses_an_output_path_inside_a_file_before_loading(tmp_path, capsys):
    from rnn_lightning.cli import main

    (tmp_path / "lines.txt").write_text("a b\n")
    with pytest.raises(SystemExit) as info:  # the checkpoint is never read
        main(["score", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--output", str(tmp_path / "lines.txt" / "o"),
              str(tmp_path / "lines.txt")])
    assert info.value.code == 2
    assert re.search(r"^error: `--output` '.*lines\.txt/o' lies inside '.*lines\.txt', which is a file",
                     capsys.readouterr().err.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.deadline(660)
def test_the_bad_inputs_table_has_no_hang_no_silent_acceptance_and_names_each_argument(tmp_path):
    """benchmarks/bad_inputs.py tries every public entry point (each case in a child process with a time limit):
    every case gets an error from rnn_lightning whose last line names the argument or file the case lists (the CLI:
    `error:` and exit status 2, no traceback), or, for the few where returning is right, the result its check
    expects."""
    import subprocess
    import sys

    command = [sys.executable, "benchmarks/bad_inputs.py", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    table = json.loads((tmp_path / "bad_inputs.json").read_text())
    rows = table["rows"]
    assert len(rows) >= 120 and len({row["entry point"] for row in rows}) >= 40
    for entry in ("LanguageModelingDataModule", "TaggingDataModule", "TextClassificationDataModule", "Perplexity",
                  "SpanF1", "CRF", "SequenceTagger.tag", "SequenceClassifier.classify", "LanguageModel.generate",
                  "LanguageModel.score", "export", "LanguageModel.save_pretrained", "LanguageModel.from_pretrained",
                  "GenerateSamples", "WritePredictions", "CLI fit", "CLI test", "CLI generate", "CLI score",
                  "CLI export"):
        assert any(row["entry point"] == entry for row in rows), entry
    assert table["counts"]["HANGS"] == table["counts"]["accepted silently"] == 0, done.stdout
    assert [row for row in rows if row["verdict"] not in ("clear", "correct (by design)")] == [], done.stdout
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("build, name", [
    (lambda: EncoderConfig(locked_dropout="yes"), "locked_dropout"),
    (lambda: LanguageModelingDataModule(dataset=DatasetDict(train=Dataset.from_dict({"text": ["a b"]})),
                                        variable_bptt="yes"), "variable_bptt"),
    (lambda: TaggingDataModule(dataset=DatasetDict(train=Dataset.from_dict({"tokens": [["a"]], "tags": [["O"]]})),
                               serve_words="no"), "serve_words"),
])
def test_on_off_settings_refuse_anything_but_a_bool_with_one_message(build, name):
    with pytest.raises(TypeError, match=rf"^`{name}` must be True or False, got str '(yes|no)'\.$"):
        build()  # ("no" is truthy: taken as is it would switch the setting on)
