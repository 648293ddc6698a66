"""Generation: <bos> start, <eos> stop, seeded determinism, top-k / top-p support, one step per token."""

import pytest
import torch

from rnn_lightning import LanguageModel
from rnn_lightning.data.tokenization import train_word_tokenizer
from rnn_lightning.nn.sampling import filter_logits

WORDS = "a b c d e f g h i j k l"


@pytest.fixture
def recorded_lm():
    """A small untrained LM whose net records the input ids and the logits of every call."""
    torch.manual_seed(0)
    tok = train_word_tokenizer([WORDS])
    lm = LanguageModel(vocab_size=tok.get_vocab_size(), embedding_dim=8, hidden_size=16, num_layers=1)
    lm.tokenizer = tok
    with torch.no_grad():  # a peaked but varied distribution, so top-k / top-p sets are small and real
        lm.net.decoder.weight.mul_(40)
    calls = []
    lm.net.register_forward_hook(lambda mod, args, out: calls.append((args[0].clone(), out[0].detach())))
    return lm, tok, calls


def test_starts_from_bos_then_feeds_one_token_at_a_time(recorded_lm):
    lm, tok, calls = recorded_lm
    ids = lm.generate_ids(lm.encode_prompt(None), max_new_tokens=8, seed=0)
    assert calls[0][0].tolist() == [[tok.token_to_id("<bos>")]]
    assert all(inp.shape == (1, 1) for inp, _ in calls[1:])  # cost per new token does not grow
    fed = [int(inp) for inp, _ in calls[1:]]
    assert fed == ids[: len(fed)]  # each sampled token is fed back


def test_prompt_is_encoded_after_bos(recorded_lm):
    lm, tok, calls = recorded_lm
    lm.generate("c d", max_new_tokens=1, seed=0)
    assert calls[0][0].tolist() == [[tok.token_to_id(t) for t in ("<bos>", "c", "d")]]


def test_stops_at_eos():
    tok = train_word_tokenizer([WORDS])
    lm = LanguageModel(vocab_size=tok.get_vocab_size(), embedding_dim=4, hidden_size=4, num_layers=1)
    lm.tokenizer = tok
    eos = tok.token_to_id("<eos>")
    with torch.no_grad():
        lm.net.decoder.bias.fill_(-30.0)
        lm.net.decoder.bias[tok.token_to_id("e")] = 0.0
        lm.net.decoder.bias[eos] = 0.0  # only "e" and <eos> are possible
    for seed in range(20):
        ids = lm.generate_ids(lm.encode_prompt(None), max_new_tokens=500, seed=seed)
        assert ids[-1] == eos and eos not in ids[:-1]
        assert set(ids[:-1]) <= {tok.token_to_id("e")}
    assert lm.generate(max_new_tokens=500, seed=0) == " ".join(["e"] * (len(
        lm.generate_ids(lm.encode_prompt(None), max_new_tokens=500, seed=0)) - 1))


def test_seeded_sampling_is_deterministic(recorded_lm):
    lm, _, _ = recorded_lm
    a = [lm.generate(max_new_tokens=20, seed=s) for s in range(5)]
    b = [lm.generate(max_new_tokens=20, seed=s) for s in range(5)]
    assert a == b and len(set(a)) > 1
    greedy = {lm.generate(max_new_tokens=20, greedy=True, seed=s) for s in range(5)}
    assert len(greedy) == 1


@pytest.mark.parametrize("top_k, top_p", [(1, None), (3, None), (None, 0.5), (None, 0.9), (4, 0.8)])
def test_top_k_top_p_never_emit_a_token_outside_the_kept_set(recorded_lm, top_k, top_p):
    lm, _, calls = recorded_lm
    for seed in range(10):
        calls.clear()
        ids = lm.generate_ids(lm.encode_prompt(None), max_new_tokens=15, top_k=top_k, top_p=top_p, seed=seed)
        for (_, logits), token in zip(calls, ids):
            probs = logits[0, -1].double().softmax(-1)  # float64 reference of the kept set
            order = probs.argsort(descending=True).tolist()
            kept = order[:top_k] if top_k else order
            if top_p is not None:
                mass, nucleus = 0.0, []
                for i in order:
                    if mass >= top_p:
                        break
                    nucleus.append(i)
                    mass += float(probs[i])
                kept = [i for i in kept if i in nucleus]
            assert token in kept


def test_filter_logits_and_sampling_argument_errors(recorded_lm):
    lm, _, _ = recorded_lm
    with pytest.raises(ValueError, match="`top_k` must be a positive integer"):
        filter_logits(torch.zeros(1, 3), top_k=0)
    with pytest.raises(ValueError, match=r"`top_p` must be in \(0, 1\]"):
        filter_logits(torch.zeros(1, 3), top_p=1.5)
    with pytest.raises(ValueError, match="`temperature` must be a finite number > 0"):
        lm.generate(temperature=0.0)


def test_multiline_goes_on_after_eos_with_bos_as_in_training(recorded_lm):
    lm, tok, calls = recorded_lm
    eos, bos = tok.token_to_id("<eos>"), tok.token_to_id("<bos>")
    with torch.no_grad():  # make <eos> likely so several lines appear
        lm.net.decoder.bias[eos] = 4.0
    ids = lm.generate_ids(lm.encode_prompt(None), max_new_tokens=40, seed=0, stop_at_eos=False)
    assert len(ids) == 40 and ids.count(eos) >= 2  # went on past <eos>
    for (inp, _), prev in zip(calls[1:], ids):
        expected = [[eos, bos]] if prev == eos else [[prev]]  # a new line starts with <eos> <bos>
        assert inp.tolist() == expected
    text = lm.generate(max_new_tokens=40, seed=0, stop_at_eos=False)
    words = {tok.id_to_token(i) for i in range(tok.get_vocab_size())}
    lines = text.split("\n")
    assert len(lines) == ids.count(eos) + 1
    assert all(set(line.split()) <= words - {"<eos>", "<bos>", "<pad>"} for line in lines)
    assert lm.generate(max_new_tokens=40, seed=0) == lines[0]  # stopping at <eos> gives the first line
