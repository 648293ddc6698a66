"""Packing with lengths on the host: the packed batch torch's packing gives, lengths kept on the CPU, trusted batches.

On a GPU, lengths there make packing copy them back, a wait for the GPU at every step; tests/test_cuda.py checks
that training steps make no such wait. These tests check, on the CPU, what makes that so.
"""

from __future__ import annotations

import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict
from test_characters import spelled_data  # noqa: F401 (fixture)
from test_tagging import rule_data  # noqa: F401 (fixture)
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader

from rnn_lightning import SequenceClassifier, SequenceTagger, TaggingDataModule, TextClassificationDataModule
from rnn_lightning.data.batching import RIGHT_PADDED, pad_batch
from rnn_lightning.nn import CharacterEncoder, RecurrentEncoder
from rnn_lightning.nn.packing import pack_batch, unpack_batch

META = torch.device("meta")  # a device that is not the CPU, on every machine
CPU = torch.device("cpu")


@pytest.mark.parametrize("lengths", [[5, 2, 5, 1, 3], [1], [4, 4, 4]])
def test_pack_batch_equals_torchs_pack_padded_sequence(lengths):
    torch.manual_seed(0)
    inputs = torch.randn(len(lengths), max(lengths), 3)
    ours = pack_batch(inputs, torch.tensor(lengths))
    theirs = pack_padded_sequence(inputs, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    assert torch.equal(ours.batch_sizes, theirs.batch_sizes)
    # rows of equal length may sort in another order: compare what the packing means, the unpacked batch
    for packed in (ours, theirs):
        padded, got = pad_packed_sequence(packed, batch_first=True)
        assert got.tolist() == lengths
        assert torch.equal(padded, inputs * (torch.arange(max(lengths)) < torch.tensor(lengths)[:, None])[..., None])
    lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    (out_a, (h_a, c_a)), (out_b, (h_b, c_b)) = lstm(ours), lstm(theirs)
    torch.testing.assert_close(unpack_batch(out_a, max(lengths) + 2),
                               pad_packed_sequence(out_b, batch_first=True, total_length=max(lengths) + 2)[0])
    torch.testing.assert_close(h_a, h_b)
    torch.testing.assert_close(c_a, c_b)


@pytest.mark.parametrize(
    ("lengths", "match"),
    [([3, 0], r"`lengths` must lie in \[1, T=3\], got min 0, max 3\. Drop empty sequences"),
     ([3, 4], r"`lengths` must lie in \[1, T=3\], got min 3, max 4"),
     ([3], r"`lengths` must have shape \(B,\) = \(2,\), got \(1,\)")],
)
def test_bad_lengths_are_refused_with_the_fix(lengths, match):
    encoder = RecurrentEncoder(2, 3, cell="lstm", bidirectional=True)
    with pytest.raises(ValueError, match=match):
        encoder(torch.randn(2, 3, 2), lengths=torch.tensor(lengths))


def test_datamodules_keep_lengths_on_the_cpu_and_move_the_rest(spelled_data):  # noqa: F811
    dm = TaggingDataModule(dataset=spelled_data, tag_scheme="IOB2", char_features=True, eval_batch_size=7)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    vocab = dm.char_vocab
    spelled = [["".join(vocab[i] for i in word if i) for word in row] for row in batch["chars"].tolist()]
    assert batch["char_lengths"].tolist() == [[len(word) for word in row] for row in spelled]
    moved = dm.transfer_batch_to_device(batch, META, 0)
    assert {k: getattr(v, "device", v) for k, v in moved.items()} == {"tokens": META, "tags": META, "chars": META,
                                                                     "lengths": CPU, "char_lengths": CPU,
                                                                     RIGHT_PADDED: True}
    assert moved["lengths"] is batch["lengths"] and moved["char_lengths"] is batch["char_lengths"]
    rows = [{"sentence": "a b", "label": "x"}, {"sentence": "b", "label": "y"}]
    splits = DatasetDict(train=Dataset.from_list(rows), validation=Dataset.from_list(rows))
    classes = TextClassificationDataModule(dataset=splits, batch_size=2)
    classes.setup("fit")
    moved = classes.transfer_batch_to_device(next(iter(classes.train_dataloader())), META, 0)
    assert {k: getattr(v, "device", v) for k, v in moved.items()} == {"tokens": META, "label": META, "lengths": CPU,
                                                                     RIGHT_PADDED: True}
    # the words of tag(): lengths on the CPU too, char_lengths counted like the loader's
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           char_vocab=dm.char_vocab)
    model.tokenizer = dm.tokenizer
    words = model.encode_words([["ab", "c"], ["d"]], "sentences")
    assert words["lengths"].tolist() == [2, 1] and words["char_lengths"].tolist() == [[2, 1], [1, 0]]


def test_character_encoder_with_given_lengths_equals_counting_them():
    torch.manual_seed(0)
    encoder = CharacterEncoder(num_chars=12, embedding_dim=4, hidden_size=3)
    chars = torch.tensor([[[3, 4, 5], [6, 0, 0], [0, 0, 0]], [[7, 8, 0], [0, 0, 0], [0, 0, 0]]])  # (2, 3, 3)
    lengths = torch.tensor([[3, 1, 0], [2, 0, 0]])
    torch.testing.assert_close(encoder(chars, lengths), encoder(chars), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"`lengths` must have the \(B, T\) = \(2, 3\) shape of `chars`, got \(2,\)"):
        encoder(chars, torch.tensor([3, 2]))


def test_crf_tagger_checks_only_batches_not_padded_by_pad_batch(tmp_path, rule_data):  # noqa: F811
    """Our DataModules' batches say they are right-padded by construction (``pad_batch``), so the CRF need not read
    them on a GPU; batches without the flag are checked, and a hole in the mask (a -100 tag inside a sentence, e.g.
    a subword's) is refused."""
    assert pad_batch([{"tokens": [3]}, {"tokens": [4, 5]}], 0)[RIGHT_PADDED] is True
    assert pad_batch([{"tokens": [3]}, {"tokens": []}], 0)[RIGHT_PADDED] is False  # an empty row: not what it says
    dm = TaggingDataModule(dataset=rule_data, tag_scheme="IOB2", batch_size=8)
    dm.setup("fit")
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           crf=True)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:  # what the trust rests on
            assert batch[RIGHT_PADDED] is True
            model.crf.check_values(batch["tags"] != -100, batch["tags"])
    checks = []
    model.crf.register_forward_pre_hook(lambda crf, args, kwargs: checks.append(kwargs["check_values"]),
                                        with_kwargs=True)
    trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, dm)
    assert checks == [False, False]
    holed = [{**batch, "tags": batch["tags"].clone()} for batch in dm.train_dataloader()]
    for batch in holed:
        batch["tags"][:, 1] = -100  # inside every sentence of two or more tokens (some have one)
        del batch[RIGHT_PADDED]  # changed after padding: no longer what pad_batch made
    fresh = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           crf=True)
    with pytest.raises(ValueError, match=r"`mask` must be right-padded"):
        trainer(tmp_path, max_steps=len(holed), limit_val_batches=0).fit(fresh, DataLoader(holed, batch_size=None))


def test_classifier_pools_with_cpu_lengths_like_device_lengths():
    torch.manual_seed(0)
    model = SequenceClassifier(vocab_size=20, num_labels=3, pooling="mean", embedding_dim=4, hidden_size=5)
    tokens, lengths = torch.randint(1, 20, (4, 6)), torch.tensor([6, 2, 5, 1])
    model.eval()
    expected = torch.stack([model(tokens[i:i + 1, :n], torch.tensor([n]))[0] for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(model(tokens, lengths), expected)
