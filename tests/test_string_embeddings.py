"""ContextualStringEmbeddings against the definition, in float64: each word's forward feature is the forward LM's last
output over ``<bos>`` + the sentence up to the word's end, its backward feature the backward LM's last output over
``<bos>`` + the sentence from its end back to the word's start (one run per word, one sentence at a time)."""

import pytest
import torch

from rnn_lightning.nn import ContextualStringEmbeddings, EncoderConfig, RNNLanguageModelNet

VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", " ", *"abcdeHLT.,"]
SENTENCES = [["The", "cab", "."], ["Lead", "bead", "ace", ",", "dab", "ebb"], ["a"], ["zz", "Ha"]]  # z: <unk>


def _lm(seed, vocab_size=None, **kwargs):
    torch.manual_seed(seed)
    settings = {**dict(embedding_dim=6, hidden_size=7, num_layers=2, dropout=0.3), **kwargs}
    return RNNLanguageModelNet(vocab_size or len(VOCAB), encoder=EncoderConfig(**settings))


def _last_output(lm, text):
    """The LM's last-layer output after reading ``<bos>`` + ``text``, one character at a time by its vocabulary."""
    ids = [VOCAB.index("<bos>")] + [VOCAB.index(c) if c in VOCAB else VOCAB.index("<unk>") for c in text]
    return lm.features(torch.tensor([ids]))[0][0, -1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_word_features_equal_the_states_read_off_runs_by_hand_in_float64(cell):
    strings = ContextualStringEmbeddings(_lm(0, cell=cell), _lm(1, cell=cell, hidden_size=5), forward_vocab=VOCAB,
                                         backward_vocab=VOCAB).double()
    strings.train()  # frozen: the LMs stay in eval mode (no dropout), so the runs by hand need no seed
    got = strings(SENTENCES)
    assert got.shape == (4, 6, 7 + 5) and got.dtype == torch.float64
    with torch.no_grad():
        for b, words in enumerate(SENTENCES):
            text = " ".join(words)
            for i, word in enumerate(words):
                start = text.index(word, sum(len(w) + 1 for w in words[:i]))
                forward = _last_output(strings.forward_lm, text[: start + len(word)])
                backward = _last_output(strings.backward_lm, text[start:][::-1])
                torch.testing.assert_close(got[b, i], torch.cat([forward, backward]), rtol=1e-12, atol=1e-12)
            assert not got[b, len(words):].any()  # padded words are zeros


def test_frozen_lms_get_no_gradient_and_trainable_ones_do():
    frozen = ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB)
    out = frozen(SENTENCES)
    assert not out.requires_grad and not frozen.forward_lm.training
    tuned = ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB, trainable=True)
    tuned(SENTENCES).sum().backward()
    assert tuned.forward_lm.training
    assert all(p.grad is not None for p in tuned.backward_lm.encoder.parameters())


def test_bad_language_models_and_vocabularies_are_refused():
    words = ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "sat", "on", "a", " "]
    with pytest.raises(ValueError, match=r"`backward_vocab` is not a character vocabulary: it holds \['the', 'cat', "
                                         r"'sat'\].*tokenizer: char"):
        ContextualStringEmbeddings(_lm(0), _lm(1, vocab_size=len(words)), forward_vocab=VOCAB, backward_vocab=words)
    with pytest.raises(ValueError, match="`forward_vocab` has 5 tokens but its language model predicts 15"):
        ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB[:5], backward_vocab=VOCAB)
    with pytest.raises(ValueError, match=r"`forward_vocab` lacks \[' '\]"):
        no_space = [t if t != " " else "x" for t in VOCAB]
        ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=no_space, backward_vocab=VOCAB)
    with pytest.raises(TypeError, match="`backward_lm` must be an RNNLanguageModelNet"):
        ContextualStringEmbeddings(_lm(0), torch.nn.LSTM(3, 3), forward_vocab=VOCAB, backward_vocab=VOCAB)


def _counting(strings):
    """Count the sentences each language model run reads."""
    read = []
    features = strings.forward_lm.features
    strings.forward_lm.features = lambda ids, *args: (read.append(ids.shape[0]), features(ids, *args))[1]
    return read


def test_cached_features_equal_computed_ones_and_only_new_sentences_run_the_models():
    strings = ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB,
                                         cache=True).double()
    reference = ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB).double()
    read = _counting(strings)
    first = strings([SENTENCES[0], SENTENCES[1], SENTENCES[0]])
    assert read == [2]  # the repeated sentence once
    torch.testing.assert_close(first, reference([SENTENCES[0], SENTENCES[1], SENTENCES[0]]), rtol=1e-12, atol=0)
    mixed = [SENTENCES[2], SENTENCES[1], SENTENCES[3]]  # one cached, two new, another batch width
    torch.testing.assert_close(strings(mixed), reference(mixed), rtol=1e-12, atol=0)
    assert read == [2, 2]
    assert strings(mixed[1:2]).shape == (1, 6, 14) and read == [2, 2]  # all cached: no run
    for key, features in strings.cache.items():  # each holds its own words' features, not its padded batch
        assert features.shape == (len(key), 14)
        assert features.untyped_storage().nbytes() == features.numel() * features.element_size()


def test_the_cache_empties_when_weights_load_or_the_module_moves():
    strings = ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB, cache=True)
    strings(SENTENCES)
    other = ContextualStringEmbeddings(_lm(2), _lm(3), forward_vocab=VOCAB, backward_vocab=VOCAB)
    strings.load_state_dict(other.state_dict())
    torch.testing.assert_close(strings(SENTENCES), other(SENTENCES), rtol=0, atol=0)
    torch.testing.assert_close(strings.double()(SENTENCES), other.double()(SENTENCES), rtol=0, atol=0)  # float64


def test_a_cache_of_fine_tuned_models_is_refused():
    with pytest.raises(ValueError, match=r"`cache=True` keeps features of frozen language models, but "
                                         r"`trainable=True`"):
        ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB, trainable=True,
                                   cache=True)
    with pytest.raises(TypeError, match="`cache`"):
        ContextualStringEmbeddings(_lm(0), _lm(1), forward_vocab=VOCAB, backward_vocab=VOCAB, cache="yes")
