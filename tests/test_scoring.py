"""LanguageModel.score and `rnn-lightning score`: the test perplexity of the same lines through the DataModule, and a
float64 token-by-token recomputation."""

from __future__ import annotations

import copy
import json
import math

import datasets
import pytest
import torch
from conftest import trainer

from rnn_lightning import LanguageModel, LanguageModelingDataModule
from rnn_lightning.cli import main
from rnn_lightning.cli import score as cli_score
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data.tokenization import train_word_tokenizer

TRAIN = ["the cat sat on the mat", "a dog sat", "the dog ate the cat", "on a mat a cat sat"] * 3
# What the DataModule meets in a real file: an empty line, a word train lacks (<unk>), runs of spaces, a \r\n ending.
TEST_FILE = "the cat ate\n\na  bird sat on the mat \r\nthe dog\non the cat a dog sat\nmat\n"


def sharpen(model: torch.nn.Module) -> None:
    """Random weights large enough for peaked, unequal probabilities (an untrained model is near uniform)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)


def small_lm(vocab_size: int, pad_id: int = 0) -> LanguageModel:
    model = LanguageModel(vocab_size, pad_id=pad_id, embedding_dim=8, hidden_size=12, num_layers=2,
                          dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0)
    sharpen(model)
    return model


@pytest.fixture
def checkpoint(tmp_path):
    """A language model's checkpoint, its test metrics on ``test.txt`` through the DataModule, and the files.

    ``eval_batch_size=1``: the test split is one stream, every line's ``<bos> tokens <eos>`` in file order, the
    state carried from window to window (``bptt`` does not change the values) and ``<bos>`` never a target: the
    token sequence ``score(lines, carry_state=True)`` reads.
    """
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "test.txt").write_bytes(TEST_FILE.encode())
    files = {"train": str(tmp_path / "train.txt"), "test": str(tmp_path / "test.txt")}
    data = LanguageModelingDataModule("text", data_files=files, eval_batch_size=1, bptt=4,
                                      cache_dir=str(tmp_path / "cache"))
    model = small_lm(data.vocab_size, data.pad_id)
    t = trainer(tmp_path)
    metrics = t.test(model, data)[0]
    path = tmp_path / "lm.ckpt"
    t.save_checkpoint(path)
    targets = data.windows("test").targets
    return path, metrics, int((targets != IGNORE_INDEX).sum()), files


def test_carried_scores_give_the_test_perplexity_and_the_command_writes_them(checkpoint, tmp_path):
    path, metrics, num_targets, files = checkpoint
    out = tmp_path / "scores.jsonl"
    returned = cli_score(["--ckpt_path", str(path), files["test"], "--carry_state", "--batch_size", "2",
                          "--output", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # the command reads the file's lines as the `text` builder does (\r\n, empty line and all)
    lines = datasets.load_dataset("text", data_files=files["test"], cache_dir=str(tmp_path / "cache"))["train"]["text"]
    assert [r.pop("text") for r in records] == lines and len(lines) == 6
    model = LanguageModel.load_from_checkpoint(path)
    scores = model.score(lines, carry_state=True, batch_size=2)
    assert returned == scores and records == [vars(s) for s in scores]  # one JSON line per line, equal to score()
    assert scores[1].tokens == ["<eos>"] and scores[2].tokens == ["a", "<unk>", "sat", "on", "the", "mat", "<eos>"]
    total = math.fsum(s.total_log_prob for s in scores)
    count = sum(s.num_tokens for s in scores)
    assert count == num_targets
    assert -total / count == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert math.exp(-total / count) == pytest.approx(metrics["test/ppl"], rel=1e-5)
    for s in scores:
        assert s.total_log_prob == pytest.approx(math.fsum(s.log_probs)) and s.num_tokens == len(s.log_probs)
        assert s.perplexity == pytest.approx(math.exp(-s.total_log_prob / s.num_tokens))
    # without the carried state each line starts afresh: other values (what the test above tells apart)
    alone = model.score(lines)
    assert math.exp(-math.fsum(s.total_log_prob for s in alone) / count) != pytest.approx(metrics["test/ppl"],
                                                                                         rel=1e-3)


@pytest.mark.parametrize("carry_state", [False, True])
def test_token_log_probs_equal_a_float64_step_by_step_recomputation(carry_state):
    tok = train_word_tokenizer(TRAIN)
    model = small_lm(tok.get_vocab_size())
    model.tokenizer = tok
    texts = ["the cat sat", "", "a zebra ate the mat on the dog", "cat"]
    scores = model.score(texts, carry_state=carry_state, batch_size=3)  # one padded batch, then one more
    reference = copy.deepcopy(model.net).double().eval()
    vocab, unk = tok.get_vocab(), tok.token_to_id("<unk>")
    bos, eos = tok.token_to_id("<bos>"), tok.token_to_id("<eos>")
    state = None
    for text, score in zip(texts, scores, strict=True):
        ids = [bos, *(vocab.get(w, unk) for w in text.split()), eos]
        assert score.tokens == [tok.id_to_token(i) for i in ids[1:]]
        state = state if carry_state else None
        expected = []
        with torch.no_grad():
            for current, following in zip(ids, [*ids[1:], None]):
                logits, state = reference(torch.tensor([[current]]), state)  # (1, 1, V), one token at a time
                if following is not None:
                    expected.append(torch.log_softmax(logits[0, 0], dim=-1)[following].item())
        assert score.log_probs == pytest.approx(expected, abs=1e-5)
    assert len({round(lp, 3) for s in scores for lp in s.log_probs}) > 5  # not a uniform model


@pytest.mark.parametrize("texts, kwargs, error, match", [
    ("the cat", {}, TypeError, r"`texts` must be a list of strings, got str 'the cat'. Wrap a single text"),
    (["the cat", 3], {}, TypeError, r"`texts\[1\]` must be a string, got int 3"),
    (["the cat"], dict(batch_size=0), ValueError, r"`batch_size` must be a positive integer .* got 0"),
    (["the cat"], dict(carry_state="yes"), TypeError, r"`carry_state` must be True or False, got str 'yes'"),
])
def test_score_refuses_bad_input(texts, kwargs, error, match):
    tok = train_word_tokenizer(TRAIN)
    model = small_lm(tok.get_vocab_size())
    model.tokenizer = tok
    with pytest.raises(error, match=match):
        model.score(texts, **kwargs)
    assert model.score([]) == []  # no line, no score (as tag([]) and classify([]))
    model.tokenizer = None
    with pytest.raises(RuntimeError, match="this LanguageModel has no tokenizer"):
        model.score(["the cat"])


def test_score_command_names_a_missing_file(tmp_path, capsys):
    for path, what in [(tmp_path / "nope.txt", "does not exist"), (tmp_path, "is a folder")]:
        with pytest.raises(SystemExit) as exit_:
            main(["score", "--ckpt_path", str(tmp_path / "lm.ckpt"), str(path)])
        assert exit_.value.code == 2
        assert f"error: FILE '{path}' {what}: give a text file" in capsys.readouterr().err
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin1"))
    with pytest.raises(SystemExit):
        main(["score", "--ckpt_path", str(tmp_path / "lm.ckpt"), str(tmp_path / "latin1.txt")])
    assert "is not valid UTF-8 (byte offset 3). Re-encode the file as UTF-8" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("carry_state", [False, True])
def test_scores_on_a_gpu_equal_the_cpu_ones(carry_state, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 on the GPU, comparable with CPU
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    tok = train_word_tokenizer(TRAIN)
    model = small_lm(tok.get_vocab_size())
    model.tokenizer = tok
    texts = ["the cat sat", "", "a zebra ate the mat on the dog", "cat"]
    on_cpu = model.score(texts, carry_state=carry_state, batch_size=3)
    on_gpu = model.cuda().score(texts, carry_state=carry_state, batch_size=3)
    for cpu, gpu in zip(on_cpu, on_gpu, strict=True):
        assert gpu.tokens == cpu.tokens and gpu.log_probs == pytest.approx(cpu.log_probs, abs=1e-5)


@pytest.mark.parametrize("carry_state", [True, False])
def test_backward_scores_give_the_backward_test_perplexity(tmp_path, carry_state):
    """A backward model scores each line from its end (and, carrying the state, the last line first), as its
    DataModule serves the split: with the carried state the total equals ``trainer.test`` on that stream; each
    line's tokens come in that reading order either way."""
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "test.txt").write_bytes(TEST_FILE.encode())
    files = {"train": str(tmp_path / "train.txt"), "test": str(tmp_path / "test.txt")}
    data = LanguageModelingDataModule("text", data_files=files, eval_batch_size=1, bptt=4, direction="backward",
                                      cache_dir=str(tmp_path / "cache"))
    model = LanguageModel(data.vocab_size, pad_id=data.pad_id, embedding_dim=8, hidden_size=12, num_layers=2,
                          dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0, direction="backward")
    sharpen(model)
    metrics = trainer(tmp_path).test(model, data)[0]
    lines = datasets.load_dataset("text", data_files=files["test"], cache_dir=str(tmp_path / "cache"))["train"]["text"]
    scores = model.score(lines, carry_state=carry_state, batch_size=2)
    assert scores[2].tokens == ["mat", "the", "on", "sat", "<unk>", "a", "<eos>"]
    total = math.fsum(s.total_log_prob for s in scores)
    count = sum(s.num_tokens for s in scores)
    if carry_state:
        assert math.exp(-total / count) == pytest.approx(metrics["test/ppl"], rel=1e-5)
    else:  # each line from a zero state: a different number, so the test tells the two apart
        assert math.exp(-total / count) != pytest.approx(metrics["test/ppl"], rel=1e-3)
