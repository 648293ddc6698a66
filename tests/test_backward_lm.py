"""Backward language models: the DataModule's reversed stream against text reversed by hand, perplexity against a
forward model's on that text, generation leftwards in reading order, and the direction checked and linked."""

import contextlib
import io

import numpy as np
import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModel, LanguageModelingDataModule
from rnn_lightning.cli import generate, main
from rnn_lightning.data.language_modeling import reverse_lines

LINES = ["the cat sat on the mat", "a dog ran", "", "the mat was red and the dog sat", "cats and dogs"] * 6


def _by_hand(lines, tokenizer):
    """The text read from its end, reversed by hand: the lines in reverse order, each read right to left (its
    characters for a character tokenizer, its words for a word tokenizer)."""
    flip = (lambda line: line[::-1]) if tokenizer == "char" else (lambda line: " ".join(line.split()[::-1]))
    return [flip(line) for line in reversed(lines)]


def _datamodule(lines, tokenizer, direction="forward", **kwargs):
    data = Dataset.from_dict({"text": lines})
    return LanguageModelingDataModule(dataset=DatasetDict(train=data, validation=data), tokenizer=tokenizer,
                                      direction=direction, batch_size=2, eval_batch_size=3, bptt=6, **kwargs)


def test_reverse_lines_keeps_each_lines_frame():
    ids = np.array([2, 5, 6, 7, 3, 2, 3, 2, 8, 3])  # <bos> 5 6 7 <eos> | <bos> <eos> | <bos> 8 <eos>
    assert reverse_lines(ids, np.array([0, 5, 7, 10])).tolist() == [2, 8, 3, 2, 3, 2, 7, 6, 5, 3]


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_backward_stream_is_the_text_reversed_by_hand(tokenizer):
    backward = _datamodule(LINES, tokenizer, "backward")
    reference = _datamodule(_by_hand(LINES, tokenizer), tokenizer)
    assert backward.tokenizer.get_vocab() == reference.tokenizer.get_vocab()  # the same tokens either way
    for split in ("train", "validation"):
        assert torch.equal(backward.token_ids(split), reference.token_ids(split))
    assert not torch.equal(backward.token_ids("train"), _datamodule(LINES, tokenizer).token_ids("train"))


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_backward_perplexity_equals_the_forward_computation_on_the_reversed_text(tmp_path, tokenizer):
    backward_data = _datamodule(LINES, tokenizer, "backward")
    settings = dict(vocab_size=backward_data.vocab_size, embedding_dim=8, hidden_size=12, num_layers=1)
    backward = LanguageModel(**settings, direction="backward")
    trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(backward, backward_data)
    forward = LanguageModel(**settings)
    forward.load_state_dict(backward.state_dict())
    (got,) = trainer(tmp_path).validate(backward, backward_data, verbose=False)
    (want,) = trainer(tmp_path).validate(forward, _datamodule(_by_hand(LINES, tokenizer), tokenizer), verbose=False)
    assert got["val/ppl"] == pytest.approx(want["val/ppl"], rel=1e-6)
    # and a forward model on the forward text sees other tokens: the direction matters
    (other,) = trainer(tmp_path).validate(forward, _datamodule(LINES, tokenizer), verbose=False)
    assert other["val/ppl"] != pytest.approx(want["val/ppl"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backward_model_generates_what_precedes_the_prompt_in_reading_order(tmp_path, seed):
    torch.manual_seed(seed)  # the weights and the training order: not whatever earlier tests left in the generator
    lines = ["abcdefgh", "xyz"] * 40
    data = _datamodule(lines, "char", "backward")
    model = LanguageModel(vocab_size=data.vocab_size, embedding_dim=16, hidden_size=32, num_layers=1,
                          dropout_embedding=0.0, dropout_between=0.0, dropout_output=0.0,
                          direction="backward", optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    trainer(tmp_path, max_epochs=30, limit_val_batches=0).fit(model, data)
    assert model.generate("efgh", greedy=True) == "abcd"  # leftwards to the start of the line
    assert model.generate("z", greedy=True) == "xy"
    # past the start of the line: the line before, whole (a line starts before it), then the start of this one
    assert model.generate("yz", greedy=True, stop_at_eos=False, max_new_tokens=11) == "\nabcdefgh\nx"


def test_a_model_and_data_of_other_directions_are_refused(tmp_path):
    data = _datamodule(LINES, "char")
    model = LanguageModel(vocab_size=data.vocab_size, embedding_dim=8, hidden_size=8, num_layers=1,
                          direction="backward")
    with pytest.raises(ValueError, match="model's `direction` is 'backward' but the DataModule serves the text "
                                         "'forward'"):
        trainer(tmp_path, max_steps=1).fit(model, data)
    with pytest.raises(ValueError, match="`direction` must be one of"):
        LanguageModel(vocab_size=10, direction="reverse")
    with pytest.raises(ValueError, match="`direction` must be one of"):
        _datamodule(LINES, "char", "backwards")


def test_cli_links_the_datamodules_direction_to_the_model_and_the_checkpoint_keeps_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--model", "rnn_lightning.LanguageModel", "--model.init_args.hidden_size", "8",
            "--model.init_args.embedding_dim", "8", "--model.init_args.num_layers", "1",
            "--data", "rnn_lightning.MarkovCorpusDataModule", "--data.init_args.train_tokens", "2000",
            "--data.init_args.validation_tokens", "500", "--data.init_args.test_tokens", "500",
            "--data.init_args.direction", "backward", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path)]
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    (ckpt,) = tmp_path.rglob("*.ckpt")
    model = LanguageModel.load_from_checkpoint(ckpt, map_location="cpu")
    assert model.hparams.direction == "backward"
    capsys.readouterr()
    (text,) = generate(["--ckpt_path", str(ckpt), "--prompt", "w3 w1", "--greedy", "--max_new_tokens", "5"])
    assert text == model.generate("w3 w1", max_new_tokens=5, greedy=True)
    assert capsys.readouterr().out == f"{text} w3 w1\n"  # what precedes the prompt, printed before it
