"""Character features: ids, the character BiLSTM against torch.nn.LSTM, batches, and a tagger that reads spelling."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict

from rnn_lightning import SequenceTagger, TaggingDataModule
from rnn_lightning.data.characters import MAX_WORD_LENGTH, build_char_vocab, encode_chars
from rnn_lightning.nn import CharacterEncoder


def test_encode_chars_pads_caps_long_words_and_maps_unknown_characters():
    vocab = build_char_vocab(["abcdefghijklmnopqrstuvwxyz"])
    long = "abcdefghijklmnopqrstuvwxy"  # 25 > MAX_WORD_LENGTH: keeps the first and last 10
    ids = encode_chars(["ab", "z!", long], vocab)
    decode = ["".join(vocab[i] for i in row if i) for row in ids.tolist()]
    assert decode == ["ab", "z<unk>", long[: MAX_WORD_LENGTH // 2] + long[-MAX_WORD_LENGTH // 2:]]
    assert ids.shape == (3, MAX_WORD_LENGTH) and ids[0, 2:].tolist() == [0] * (MAX_WORD_LENGTH - 2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_character_encoder_is_each_directions_final_state_of_an_lstm_run_on_the_word_alone(cell):
    torch.manual_seed(0)
    encoder = CharacterEncoder(num_chars=12, embedding_dim=4, hidden_size=3, cell=cell).double()
    chars = torch.tensor([[[3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0]],
                          [[7, 8, 9, 10], [11, 2, 0, 0], [5, 5, 0, 0]]])  # (B=2, T=3, L=4); one padding word
    vectors = encoder(chars)  # (2, 3, 6)
    rnn = encoder.encoder.rnn  # the reference: torch's own RNN on each word alone, no padding, no packing
    for b in range(2):
        for t in range(3):
            word = chars[b, t][chars[b, t] != 0]
            if len(word) == 0:
                assert torch.equal(vectors[b, t], torch.zeros(6, dtype=torch.float64))
                continue
            _, state = rnn(encoder.embedding(word)[None])
            h = state[0] if cell == "lstm" else state  # (2, 1, H): forward, backward
            torch.testing.assert_close(vectors[b, t], torch.cat([h[0, 0], h[1, 0]]), rtol=0, atol=1e-12)


def spelled_corpus(n: int, seed: int, stems: list[str]) -> Dataset:
    """Tags told by spelling alone: '-ville' words are places, capitalised '-son' words are names, the rest O."""
    rng = random.Random(seed)
    rows, tags = [], []
    for _ in range(n):
        words, labels = [], []
        for _ in range(rng.randint(2, 8)):
            kind, stem = rng.choice(["LOC", "PER", "O", "O"]), rng.choice(stems)
            words.append({"LOC": stem + "ville", "PER": stem.capitalize() + "son", "O": stem}[kind])
            labels.append("O" if kind == "O" else f"B-{kind}")
        rows.append(words)
        tags.append(labels)
    return Dataset.from_dict({"tokens": rows, "tags": tags})


def random_stems(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("bcdfgklmnprstaeiou") for _ in range(rng.randint(3, 6))) for _ in range(n)]


@pytest.fixture
def spelled_data():
    train_stems, new_stems = random_stems(60, 0), random_stems(40, 1)  # test words: (almost) all unseen
    return DatasetDict(train=spelled_corpus(500, 0, train_stems), validation=spelled_corpus(60, 1, train_stems),
                       test=spelled_corpus(100, 2, new_stems))


def test_batches_carry_each_tokens_characters(spelled_data):
    dm = TaggingDataModule(dataset=spelled_data, tag_scheme="IOB2", char_features=True, eval_batch_size=7)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    vocab = dm.char_vocab
    assert vocab[:2] == ["<pad>", "<unk>"] and batch["chars"].shape[:2] == batch["tokens"].shape
    for row, words in enumerate(spelled_data["test"]["tokens"][:7]):
        spelled = ["".join(vocab[i] for i in word if i) for word in batch["chars"][row].tolist()]
        assert spelled[: len(words)] == words and set(spelled[len(words):]) <= {""}
    assert TaggingDataModule(dataset=spelled_data, tag_scheme="IOB2").char_vocab is None  # off by default


@pytest.mark.slow
def test_characters_let_a_tagger_tag_words_it_never_saw(spelled_data, tmp_path):
    """Unseen test words are all <unk> to the word embeddings: only the character features can tell them apart."""
    accuracy = {}
    for chars in (False, True):
        torch.manual_seed(0)
        dm = TaggingDataModule(dataset=spelled_data, tag_scheme="IOB2", char_features=chars, batch_size=16)
        model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                               unk_id=dm.unk_id,
                               embedding_dim=16, hidden_size=16, dropout=0.0, char_vocab=dm.char_vocab,
                               char_embedding_dim=8, char_hidden_size=16, word_dropout=0.1,
                               optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
        t = trainer(tmp_path, max_epochs=8)
        t.fit(model, dm)
        accuracy[chars] = t.test(model, dm)[0]["test/acc"]
        if chars:  # tag() from a checkpoint spells the words the same way, and agrees with the logged accuracy
            t.save_checkpoint(tmp_path / "chars.ckpt")
            loaded = SequenceTagger.load_from_checkpoint(tmp_path / "chars.ckpt")
            predicted, gold = loaded.tag(spelled_data["test"]["tokens"]), spelled_data["test"]["tags"]
            hits = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
            assert accuracy[True] == pytest.approx(hits / sum(map(len, gold)), abs=1e-6)
    # the tag mix is 1/4 LOC, 1/4 PER, 1/2 O: without characters an unseen word can only be guessed
    assert accuracy[True] > 0.98 and accuracy[False] < 0.75, accuracy


def test_checkpoint_with_another_character_vocabulary_is_refused(spelled_data, tmp_path):
    dm = TaggingDataModule(dataset=spelled_data, tag_scheme="IOB2", char_features=True)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=8,
                           hidden_size=8, char_vocab=dm.char_vocab)
    t = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    t.fit(model, dm)
    t.save_checkpoint(tmp_path / "a.ckpt")
    other = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=8,
                           hidden_size=8, char_vocab=[*dm.char_vocab[:-1], "é"])
    with pytest.raises(ValueError, match="character vocabulary .* differs"):
        trainer(tmp_path).validate(other, dm, ckpt_path=tmp_path / "a.ckpt")


def test_a_network_with_character_features_needs_chars():
    from rnn_lightning.nn import EncoderConfig, SequenceTaggerNet

    net = SequenceTaggerNet(10, 3, encoder=EncoderConfig(embedding_dim=4, hidden_size=4, num_chars=6))
    with pytest.raises(ValueError, match="built with character features, so `chars`"):
        net(torch.ones(1, 2, dtype=torch.long), torch.tensor([2]))
    with pytest.raises(ValueError, match="`chars` must have shape \\(B, T, L\\)"):
        net(torch.ones(1, 2, dtype=torch.long), torch.tensor([2]), torch.ones(1, 2, dtype=torch.long))
