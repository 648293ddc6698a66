"""Confidences of predictions: tag(return_scores=True, top_k=), classify(return_probabilities=True) and
WritePredictions(scores=True, top_k=), against a float64 brute force over every tag path and torch.softmax."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import (
    LanguageModel,
    SequenceClassifier,
    SequenceTagger,
    TaggingDataModule,
    TextClassificationDataModule,
    WritePredictions,
)
from rnn_lightning.data.tokenization import train_word_tokenizer
from rnn_lightning.functional.tag_schemes import tag_spans
from rnn_lightning.tasks.confidences import Classification, TaggedSentence

LABELS = ["O", "B-X", "I-X", "B-Y", "I-Y"]
WORDS = "a b c d e f"
SENTENCES = ["a", "b c", "a zz c", "f e d c", "c c a b e"]  # zz: <unk>


def sharpen(model: torch.nn.Module, seed: int = 3) -> None:
    """Random weights large enough for peaked, unequal probabilities (an untrained model is near uniform)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.8)


def make_tagger(crf: bool, scheme: str | None = "IOB2") -> SequenceTagger:
    tok = train_word_tokenizer([WORDS])
    model = SequenceTagger(tok.get_vocab_size(), len(LABELS), labels=LABELS, span_scheme=scheme, embedding_dim=6,
                           hidden_size=5, dropout=0.0, crf=crf)
    model.tokenizer = tok
    sharpen(model)
    return model


def emissions_of(model: SequenceTagger, sentence: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, L, C) the model's label scores for one sentence, encoded and run alone (no padding)."""
    vocab, unk = model.tokenizer.get_vocab(), model.tokenizer.token_to_id("<unk>")
    tokens = torch.tensor([[vocab.get(w, unk) for w in sentence.split()]])
    net = model.net.to(dtype).eval()
    with torch.no_grad():
        return net(tokens, torch.tensor([tokens.shape[1]]))


def brute_force(model: SequenceTagger, sentence: str) -> list[tuple[tuple[int, ...], float]]:
    """Every allowed tag path of ``sentence`` and its probability, float64, most likely first."""
    emissions = emissions_of(model, sentence, torch.float64)[0]  # (L, C)
    crf = model.crf
    start, trans, end = (torch.where(allowed, p.detach().double(), -math.inf) for p, allowed in (
        (crf.start, crf.allowed_start), (crf.transitions, crf.allowed_transitions), (crf.end, crf.allowed_end)))
    scored = []
    for path in itertools.product(range(len(LABELS)), repeat=len(emissions)):
        s = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        s = s + sum(trans[a, b] for a, b in itertools.pairwise(path))
        scored.append((path, float(s)))
    log_z = torch.logsumexp(torch.tensor([s for _, s in scored]), dim=0).item()
    return sorted(((path, math.exp(s - log_z)) for path, s in scored), key=lambda item: -item[1])


def test_crf_tag_scores_equal_a_brute_force_over_all_paths():
    model = make_tagger(crf=True)
    results = model.tag(SENTENCES, return_scores=True, top_k=4)
    assert model.tag(SENTENCES) == [r.tags for r in results]  # the default return value is unchanged
    for sentence, result in zip(SENTENCES, results, strict=True):
        assert isinstance(result, TaggedSentence)
        paths = brute_force(model, sentence)
        best = [LABELS[i] for i in paths[0][0]]
        assert result.tags == best
        # per token: the marginal of the chosen tag, summed over every path through it
        for t, tag in enumerate(result.tags):
            marginal = sum(p for path, p in paths if LABELS[path[t]] == tag)
            assert result.probabilities[t] == pytest.approx(marginal, abs=1e-5)
        # the same numbers as CRF.marginals of the model's own emissions, computed on their own
        marginals = model.crf.marginals(emissions_of(model, sentence))[0]  # (L, C)
        chosen = [marginals[t, LABELS.index(tag)].item() for t, tag in enumerate(result.tags)]
        assert result.probabilities == pytest.approx(chosen, abs=1e-6)
        # spans: where tag_spans puts them, each with the mass of the paths carrying its tags
        assert [(s.start, s.end, s.label) for s in result.spans] == tag_spans(result.tags, "IOB2")
        for span in result.spans:
            window = range(span.start, span.end + 1)
            mass = sum(p for path, p in paths if all(LABELS[path[t]] == result.tags[t] for t in window))
            assert span.probability == pytest.approx(mass, abs=1e-5)
        # k best: the brute force's order and probabilities (a 1-token sentence has only 3 allowed paths)
        allowed = [(path, p) for path, p in paths if p > 0]
        assert len(result.best_paths) == min(4, len(allowed))
        for got, (path, p) in zip(result.best_paths, allowed, strict=False):
            assert got.tags == [LABELS[i] for i in path]
            assert got.probability == pytest.approx(p, abs=1e-5)
    assert any(r.spans for r in results) and any(len(r.tags) > 2 for r in results)


def test_softmax_tag_scores_are_the_softmax_of_the_label_scores():
    model = make_tagger(crf=False)
    results = model.tag(SENTENCES, return_scores=True)
    for sentence, result in zip(SENTENCES, results, strict=True):
        probs = torch.softmax(emissions_of(model, sentence)[0], dim=-1)  # (L, C)
        best = probs.argmax(-1).tolist()
        assert result.tags == [LABELS[i] for i in best]
        assert result.probabilities == pytest.approx([probs[t, i].item() for t, i in enumerate(best)], abs=1e-6)
        assert result.best_paths is None
        for span in result.spans:  # independent tokens: the product of the span's token probabilities
            assert span.probability == pytest.approx(math.prod(result.probabilities[span.start:span.end + 1]))
    assert any(r.spans for r in results)
    with pytest.raises(ValueError, match=r"`top_k=2` asks for the k best tag paths.*Train the tagger with `crf=True`"):
        model.tag(SENTENCES, top_k=2)


def test_a_tagger_without_span_scheme_gives_no_spans():
    (result,) = make_tagger(crf=True, scheme=None).tag(["a b c"], return_scores=True)
    assert result.spans is None and len(result.probabilities) == 3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(top_k=0), ValueError, r"`top_k` must be a positive integer .* got 0"),
    (dict(top_k=1.5), ValueError, r"`top_k` must be a positive integer .* got 1.5"),
    (dict(return_scores="yes"), TypeError, r"`return_scores` must be True or False, got str 'yes'"),
])
def test_tag_refuses_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_tagger(crf=True).tag(["a b"], **kwargs)


def make_classifier() -> SequenceClassifier:
    tok = train_word_tokenizer([WORDS])
    model = SequenceClassifier(tok.get_vocab_size(), 3, labels=["neg", "neu", "pos"], embedding_dim=6,
                               hidden_size=5, dropout=0.0)
    model.tokenizer = tok
    sharpen(model, seed=1)
    return model


def test_classify_probabilities_are_the_softmax_of_the_logits():
    model = make_classifier()
    results = model.classify(SENTENCES, return_probabilities=True)
    assert [r.label for r in results] == model.classify(SENTENCES)
    vocab, unk = model.tokenizer.get_vocab(), model.tokenizer.token_to_id("<unk>")
    for text, result in zip(SENTENCES, results, strict=True):
        assert isinstance(result, Classification) and list(result.probabilities) == ["neg", "neu", "pos"]
        tokens = torch.tensor([[vocab.get(w, unk) for w in text.split()]])
        with torch.no_grad():
            probs = torch.softmax(model(tokens, torch.tensor([tokens.shape[1]]))[0], dim=-1)
        assert list(result.probabilities.values()) == pytest.approx(probs.tolist(), abs=1e-6)
        assert math.fsum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert result.label == ["neg", "neu", "pos"][int(probs.argmax())]
    assert len({r.label for r in results}) > 1
    with pytest.raises(TypeError, match=r"`return_probabilities` must be True or False, got int 1"):
        model.classify(["a"], return_probabilities=1)
    assert model.classify([], return_probabilities=True) == []


def assert_same(written, expected, path="prediction", tol=1e-6):
    """JSON values equal, numbers to ``tol`` (the file's batches are padded otherwise than tag()'s)."""
    if isinstance(expected, float):
        assert written == pytest.approx(expected, abs=tol), path
    elif isinstance(expected, dict):
        assert list(written) == list(expected), path
        for key in expected:
            assert_same(written[key], expected[key], f"{path}.{key}", tol)
    elif isinstance(expected, list):
        assert len(written) == len(expected), path
        for i, (w, e) in enumerate(zip(written, expected)):
            assert_same(w, e, f"{path}[{i}]", tol)
    else:
        assert written == expected, path


def test_written_scores_equal_what_tag_and_classify_return(tmp_path):
    rows = [s.split() for s in SENTENCES] * 3
    tags = [["B-X" if w == "a" else "I-X" if i and r[i - 1] == "a" else "O" for i, w in enumerate(r)] for r in rows]
    split = Dataset.from_dict({"tokens": rows, "tags": tags})
    data = TaggingDataModule(dataset=DatasetDict(train=split, validation=split, test=split), tag_scheme="IOB2",
                             eval_batch_size=4)
    model = SequenceTagger(data.vocab_size, data.num_labels, pad_id=data.pad_id, labels=data.labels,
                           span_scheme="IOB2", embedding_dim=6, hidden_size=5, crf=True)
    sharpen(model)
    out = tmp_path / "tags.jsonl"
    trainer(tmp_path, callbacks=[WritePredictions(str(out), scores=True, top_k=3)]).predict(model, data)
    assert model.prediction_options == {}  # the run's options are given back
    written = [json.loads(line) for line in out.read_text().splitlines()]
    expected = model.tag(rows, return_scores=True, top_k=3)
    assert [w["index"] for w in written] == list(range(len(rows)))
    assert_same([w["prediction"] for w in written], [dataclasses.asdict(e) for e in expected])
    assert any(w["prediction"]["spans"] for w in written)

    texts = Dataset.from_dict({"sentence": SENTENCES * 2, "label": ["neg", "pos", "neu"] * 3 + ["pos"]})
    data = TextClassificationDataModule(dataset=DatasetDict(train=texts, validation=texts, test=texts),
                                        eval_batch_size=3)
    model = SequenceClassifier(data.vocab_size, data.num_labels, pad_id=data.pad_id, labels=data.labels,
                               embedding_dim=6, hidden_size=5)
    sharpen(model, seed=2)
    out = tmp_path / "labels.jsonl"
    trainer(tmp_path, callbacks=[WritePredictions(str(out), scores=True)]).predict(model, data)
    written = [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
    expected = model.classify(SENTENCES * 2, return_probabilities=True)
    assert_same(written, [dataclasses.asdict(e) for e in expected])
    out.write_text("")
    trainer(tmp_path, callbacks=[WritePredictions(str(out))]).predict(model, data)  # no options: names only
    assert [json.loads(line)["prediction"] for line in out.read_text().splitlines()] == [e.label for e in expected]


def test_write_predictions_refuses_options_a_task_cannot_serve(tmp_path, tiny_markov, tiny_lm):
    with pytest.raises(ValueError, match=r"`top_k` must be a positive integer"):
        WritePredictions("x.jsonl", top_k=0)
    with pytest.raises(TypeError, match=r"`scores` must be True or False"):
        WritePredictions("x.jsonl", scores="true")
    with pytest.raises(ValueError, match=r"WritePredictions\(scores=True\) asks the task for confidences, which "
                                         r"LanguageModel's predict_step does not give"):
        trainer(tmp_path, callbacks=[WritePredictions(str(tmp_path / "lm.jsonl"), scores=True)]).predict(
            tiny_lm(tiny_markov), tiny_markov)
    assert isinstance(tiny_lm(tiny_markov), LanguageModel)
    texts = Dataset.from_dict({"sentence": SENTENCES, "label": [0, 1, 0, 1, 0]})
    data = TextClassificationDataModule(dataset=DatasetDict(train=texts, validation=texts, test=texts))
    model = SequenceClassifier(data.vocab_size, data.num_labels, pad_id=data.pad_id, embedding_dim=4, hidden_size=4)
    with pytest.raises(ValueError, match=r"`top_k=2` asks for the k best tag paths of a SequenceTagger with a CRF"):
        trainer(tmp_path, callbacks=[WritePredictions(str(tmp_path / "c.jsonl"), top_k=2)]).predict(model, data)
    assert model.prediction_options == {}  # given back after the failed run too


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_confidences_on_a_gpu_equal_the_cpu_ones(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 on the GPU, comparable with CPU
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    for model, run in [(make_tagger(crf=True), lambda m: m.tag(SENTENCES, return_scores=True, top_k=3)),
                       (make_tagger(crf=False), lambda m: m.tag(SENTENCES, return_scores=True)),
                       (make_classifier(), lambda m: m.classify(SENTENCES, return_probabilities=True))]:
        on_cpu = [dataclasses.asdict(r) for r in run(model)]
        assert_same([dataclasses.asdict(r) for r in run(model.cuda())], on_cpu, tol=1e-5)


@pytest.mark.slow
def test_cli_predict_writes_the_scores_tag_returns(tmp_path, monkeypatch):
    """`rnn-lightning predict` with `--trainer.callbacks.scores=true --trainer.callbacks.top_k=2` (a CRF tagger)."""
    from test_distributed_tagging import write_conll

    from rnn_lightning.cli import main

    write_conll(tmp_path / "train.txt", 40, 0)
    sentences = write_conll(tmp_path / "test.txt", 9, 5)
    files = json.dumps({"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "test.txt"),
                        "test": str(tmp_path / "test.txt")})
    common = ["--model", "rnn_lightning.SequenceTagger", "--model.init_args.embedding_dim=8",
              "--model.init_args.hidden_size=8", "--model.init_args.crf=true",
              "--data", "rnn_lightning.TaggingDataModule",
              "--data.init_args.path=conll", "--data.init_args.tag_scheme=IOB2", "--data.init_args.eval_batch_size=4",
              "--data.init_args.data_files", files, "--trainer.accelerator=cpu", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false"]
    monkeypatch.chdir(tmp_path)
    main(["fit", *common, "--trainer.max_steps=3", "--trainer.limit_val_batches=1",
          "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", "--trainer.callbacks.dirpath=ckpt",
          "--trainer.callbacks.save_last=true"])
    main(["predict", *common, "--ckpt_path", "ckpt/last.ckpt", "--trainer.callbacks+=rnn_lightning.WritePredictions",
          "--trainer.callbacks.path=out/tags.jsonl", "--trainer.callbacks.scores=true", "--trainer.callbacks.top_k=2"])
    rows = [json.loads(line)["prediction"] for line in (tmp_path / "out" / "tags.jsonl").read_text().splitlines()]
    model = SequenceTagger.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert_same(rows, [dataclasses.asdict(r) for r in model.tag(sentences, return_scores=True, top_k=2)])
    assert all(len(r["best_paths"]) == 2 for r in rows)
