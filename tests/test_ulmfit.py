"""ULMFiT (Howard & Ruder 2018): a classifier encoder started from a word LanguageModel checkpoint, discriminative
learning rates, gradual unfreezing and the slanted triangular schedule, each checked step by step with a real
Trainer against values computed here by hand."""

import math

import pytest
import torch
from conftest import sgd, trainer
from datasets import Dataset, DatasetDict
from lightning.pytorch.callbacks import Callback

from rnn_lightning import (
    GradualUnfreezing,
    LanguageModel,
    LanguageModelingDataModule,
    SequenceClassifier,
    SequenceTagger,
    SlantedTriangularLR,
    TextClassificationDataModule,
)
from rnn_lightning.nn.transfer import copy_rows_by_word

LM_LINES = ["the cat sat on the mat", "a dog ran to the park", "the film was good", "a bad movie", "on and on"]
TEXTS = ["the film was great", "a terrible unseenword movie", "good dog", "bad cat", "the park was fine"]
LABELS = [1, 0, 1, 0, 1]
SIZES = dict(embedding_dim=8, hidden_size=8, num_layers=2)


def write_lm(tmp_path, *, name="lm.ckpt", direction="forward", tokenizer="word", **kwargs):
    """A LanguageModel trained two steps on LM_LINES, saved by the Trainer (tokenizer included)."""
    lines = Dataset.from_dict({"text": LM_LINES * 8})
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=lines, validation=lines), batch_size=2, bptt=5,
                                    direction=direction, tokenizer=tokenizer)
    lm = LanguageModel(dm.vocab_size, pad_id=dm.pad_id, direction=direction, **{**SIZES, **kwargs})
    t = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    t.fit(lm, dm)
    t.save_checkpoint(tmp_path / name)
    return tmp_path / name


def texts_dm(repeat=4, batch_size=4):
    rows = Dataset.from_dict({"sentence": TEXTS * repeat, "label": LABELS * repeat})
    return TextClassificationDataModule(dataset=DatasetDict(train=rows, validation=rows), batch_size=batch_size)


def classifier(dm, **kwargs):
    settings = dict(SIZES, bidirectional=False, dropout=0.0, optimizer=sgd(0.0))
    return SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, **{**settings, **kwargs})


@pytest.mark.parametrize("lm_settings", [{}, {"locked_dropout": True}, {"cell": "gru", "tie_weights": True}],
                         ids=["lstm", "lstm-layer-by-layer", "gru-tied"])
def test_init_from_lm_copies_the_lm_rows_by_word_and_its_encoder(tmp_path, lm_settings):
    lm_path = write_lm(tmp_path, **lm_settings)
    dm = texts_dm()
    model = classifier(dm, init_from_lm=str(lm_path), cell=lm_settings.get("cell", "lstm"))
    before = model.net.body.embedding.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"init_from_lm: 4 of the classifier's \d+ vocabulary words"):
        trainer(tmp_path, max_steps=1, limit_val_batches=1).fit(model, dm)  # lr 0: the weights stay as copied

    lm = LanguageModel.load_from_checkpoint(lm_path, map_location="cpu")
    ours, theirs = dm.tokenizer.get_vocab(), lm.tokenizer.get_vocab()
    table, lm_table = model.net.body.embedding.weight.detach(), lm.net.embedding.weight.detach()
    shared = [w for w in ours if w in theirs and w != "<pad>"]
    assert any(ours[w] != theirs[w] for w in shared)  # the ids differ: only a copy by word passes
    for word in shared:
        assert torch.equal(table[ours[word]], lm_table[theirs[word]]), word
    missing = ["fine", "great", "terrible", "unseenword"]  # TEXTS' words that LM_LINES lack
    assert sorted(model.lm_missing_words) == missing
    for word in missing:
        assert torch.equal(table[ours[word]], before[ours[word]]), word  # random init kept
    assert not table[dm.pad_id].any()

    x = torch.randn(3, 5, SIZES["embedding_dim"])  # the encoders compute the same function
    lm.eval(), model.eval()
    torch.testing.assert_close(model.net.body.encoder(x)[0], lm.net.encoder(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("tie_weights", [False, True])
def test_an_lm_fine_tuned_on_other_words_starts_from_the_general_lms_rows_by_word(tmp_path, tie_weights):
    """ULMFiT's second stage: the task's own vocabulary, the general LM's rows (embedding, decoder) by word."""
    lm_path = write_lm(tmp_path, tie_weights=tie_weights)
    lines = Dataset.from_dict({"text": TEXTS * 8})
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=lines, validation=lines), batch_size=2, bptt=5)
    model = LanguageModel(dm.vocab_size, pad_id=dm.pad_id, init_from=str(lm_path), tie_weights=tie_weights,
                          optimizer=sgd(0.0), **SIZES)
    fresh = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.warns(UserWarning, match=r"init_from: 4 of the DataModule's \d+ vocabulary words"):
        trainer(tmp_path, max_steps=1, limit_val_batches=1).fit(model, dm)  # lr 0: the weights stay as copied

    general = LanguageModel.load_from_checkpoint(lm_path, map_location="cpu")
    ours, theirs = dm.tokenizer.get_vocab(), general.tokenizer.get_vocab()
    missing = ["fine", "great", "terrible", "unseenword"]  # TEXTS' words that LM_LINES lack
    assert sorted(model.init_missing_words) == missing
    assert any(ours[w] != theirs[w] for w in ours if w in theirs)
    for key in ("net.embedding.weight", "net.decoder.weight", "net.decoder.bias"):
        for word in ours:
            expected = fresh[key][ours[word]] if word in missing else general.state_dict()[key][theirs[word]]
            if word != "<pad>":
                assert torch.equal(model.state_dict()[key][ours[word]], expected), (key, word)
    x = torch.randn(3, 5, SIZES["embedding_dim"])
    general.eval(), model.eval()
    torch.testing.assert_close(model.net.encoder(x)[0], general.net.encoder(x)[0], rtol=0, atol=0)


def test_the_classifier_checkpoint_loads_and_trains_on_without_the_lm_file(tmp_path):
    lm_path = write_lm(tmp_path)
    dm = texts_dm()
    model = classifier(dm, init_from_lm=str(lm_path), optimizer=sgd(0.5))
    t = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    with pytest.warns(UserWarning, match="init_from_lm"):
        t.fit(model, dm)
    t.save_checkpoint(tmp_path / "classifier.ckpt")
    lm_path.unlink()

    loaded = SequenceClassifier.load_from_checkpoint(tmp_path / "classifier.ckpt", map_location="cpu")
    assert "init_from_lm" not in loaded.hparams
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    trained = {name: value.clone() for name, value in loaded.state_dict().items()}
    loaded.optimizer = sgd(0.0)
    trainer(tmp_path, max_steps=1, limit_val_batches=1).fit(loaded, dm)  # would read the deleted LM if it refilled
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, trained[name]), name


def write_tagger(tmp_path):
    tagger = SequenceTagger(20, 3, **SIZES)
    torch.save({"hyper_parameters": dict(tagger.hparams), "state_dict": tagger.state_dict()}, tmp_path / "tag.ckpt")
    return tmp_path / "tag.ckpt"


@pytest.mark.parametrize(("lm", "settings", "error"), [
    (lambda tmp: tmp / "missing.ckpt", {}, r"`init_from_lm` '.*missing.ckpt' does not exist"),
    (lambda tmp: write_lm(tmp, hidden_size=12), {}, r"hidden_size=8 here\): set `hidden_size: 12`"),
    (lambda tmp: write_lm(tmp, cell="gru"), {}, r"cell='lstm' here\): set `cell: gru`"),
    (lambda tmp: write_lm(tmp, last_hidden_size=4), {}, r"`last_hidden_size`.*Train the LM without"),
    (lambda tmp: write_lm(tmp, direction="backward"), {}, r"is a backward language model"),
    (lambda tmp: write_lm(tmp, tokenizer="char"), {}, r"is a character language model"),
    (write_tagger, {}, r"`init_from_lm` '.*tag.ckpt' holds a SequenceTagger, not a LanguageModel"),
    (write_lm, {"bidirectional": True}, r"has `bidirectional: true`. Set `bidirectional: false`"),
], ids=["missing", "other-size", "other-cell", "last-hidden-size", "backward", "char-lm", "tagger", "bidirectional"])
def test_an_lm_that_does_not_fit_is_a_clear_error(tmp_path, lm, settings, error):
    dm = texts_dm()
    model = classifier(dm, init_from_lm=str(lm(tmp_path)), **settings)
    with pytest.raises(ValueError, match=error):
        trainer(tmp_path, max_steps=1, limit_val_batches=1).fit(model, dm)


def test_init_from_lm_and_pretrained_embeddings_are_one_or_the_other():
    with pytest.raises(ValueError, match="`init_from_lm` and `pretrained_embeddings` both fill"):
        SequenceClassifier(20, 2, init_from_lm="lm.ckpt", pretrained_embeddings="glove.txt")


def rnn_names(prefix, layer):
    """A torch RNN layer's parameters in both directions (bidirectional)."""
    return {f"{prefix}{kind}_l{layer}{reverse}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for reverse in ("", "_reverse")}


GROUPS = {  # the layer groups of a bidirectional classifier by parameter name, bottom first, written out by hand
    "none": [{"net.body.embedding.weight"}, rnn_names("net.body.encoder.rnn.", 0),
             rnn_names("net.body.encoder.rnn.", 1), {"net.classifier.weight", "net.classifier.bias"}],
    "highway": [{"net.body.embedding.weight"}, rnn_names("net.body.encoder.rnn.layers.0.", 0),
                rnn_names("net.body.encoder.rnn.layers.1.", 0)
                | {"net.body.encoder.rnn.gates.0.weight", "net.body.encoder.rnn.gates.0.bias"},  # the gate into 1
                {"net.classifier.weight", "net.classifier.bias"}],
}


@pytest.mark.parametrize("connection", sorted(GROUPS))
def test_discriminative_rates_divide_the_lr_by_2_6_per_group_below_the_head(connection):
    model = SequenceClassifier(20, 2, **SIZES, connection=connection, bidirectional=True, discriminative_lr=2.6,
                               optimizer=lambda params: torch.optim.Adam(params, lr=0.01))
    names = {id(p): name for name, p in model.named_parameters()}
    optimizer = model.configure_optimizers()
    assert [{names[id(p)] for p in g["params"]} for g in optimizer.param_groups] == GROUPS[connection]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01 / 2.6**3, 0.01 / 2.6**2, 0.01 / 2.6, 0.01])


def test_the_taggers_layer_groups_hold_each_parameter_once_with_the_crf_in_the_head():
    tagger = SequenceTagger(20, 3, **SIZES, crf=True, discriminative_lr=2.0,
                            optimizer=lambda params: torch.optim.SGD(params, lr=0.8))
    groups = tagger.layer_groups()
    assert sorted(id(p) for g in groups for p in g) == sorted(id(p) for p in tagger.parameters())
    assert {id(p) for p in tagger.crf.parameters()} <= {id(p) for p in groups[-1]}
    assert len(groups) == 1 + SIZES["num_layers"] + 1
    assert [g["lr"] for g in tagger.configure_optimizers().param_groups] == pytest.approx([0.1, 0.2, 0.4, 0.8])


class Snapshots(Callback):
    """Which layer groups got gradients and which changed in each epoch."""

    def __init__(self):
        self.changed, self.with_grad = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = [[p.detach().clone() for p in g] for g in pl_module.layer_groups()]
        self.with_grad.append([False] * len(self.start))

    def on_after_backward(self, trainer, pl_module):
        got = [any(p.grad is not None for p in g) for g in pl_module.layer_groups()]
        self.with_grad[-1] = [a or b for a, b in zip(self.with_grad[-1], got)]

    def on_train_epoch_end(self, trainer, pl_module):
        groups = pl_module.layer_groups()
        self.changed.append([any(not torch.equal(p, q) for p, q in zip(g, s)) for g, s in zip(groups, self.start)])


def test_gradual_unfreezing_trains_one_more_group_each_epoch_from_the_top(tmp_path):
    dm = texts_dm()
    model = classifier(dm, optimizer=lambda params: torch.optim.Adam(params, lr=0.01))
    snapshots = Snapshots()
    t = trainer(tmp_path, max_epochs=5, limit_train_batches=2, limit_val_batches=1,
                callbacks=[GradualUnfreezing(), snapshots])
    t.fit(model, dm)
    expected = [[False, False, False, True], [False, False, True, True], [False, True, True, True],
                [True, True, True, True], [True, True, True, True]]  # groups: embedding, layer 1, layer 2, head
    assert snapshots.changed == expected
    assert snapshots.with_grad == expected
    assert all(p.requires_grad for p in model.parameters())  # everything trains again after the fit


def stlr_by_hand(t, total, cut_frac=0.1, ratio=32):
    """Howard & Ruder 2018, eq. 3."""
    cut = math.floor(total * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return (1 + p * (ratio - 1)) / ratio


class LearningRates(Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def test_slanted_triangular_lr_follows_the_papers_formula_at_every_step(tmp_path):
    dm = texts_dm(repeat=8, batch_size=2)  # 20 batches an epoch
    model = classifier(dm, discriminative_lr=2.6, optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
                       lr_scheduler=SlantedTriangularLR)
    rates = LearningRates()
    t = trainer(tmp_path, max_epochs=2, limit_val_batches=1, callbacks=[rates])
    t.fit(model, dm)
    total = 40  # 2 epochs x 20 batches, the Trainer's estimate
    assert t.lr_scheduler_configs[0].scheduler.total_steps == total
    assert len(rates.seen) == total
    for step, lrs in enumerate(rates.seen):
        expected = [0.1 / 2.6**k * stlr_by_hand(step, total) for k in (3, 2, 1, 0)]
        assert lrs == pytest.approx(expected, rel=1e-12), step
    assert rates.seen[4][-1] == pytest.approx(0.1)  # the peak at the cut, floor(40 * 0.1) = 4


def test_slanted_triangular_lr_refuses_bad_settings():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="`cut_frac` must be in"):
        SlantedTriangularLR(optimizer, 10, cut_frac=1.5)
    with pytest.raises(ValueError, match="`total_steps` must be a positive number"):
        SlantedTriangularLR(optimizer, float("inf"))
    unknown = SlantedTriangularLR(optimizer)
    optimizer.step()
    with pytest.raises(RuntimeError, match="does not know the run's length"):
        unknown.step()


class StopAfterFirstEpoch(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_a_resumed_ulmfit_run_continues_its_schedule_and_unfreezing_exactly(tmp_path):
    """Two epochs in one go, and a two-epoch run stopped after one then resumed from its checkpoint: the same rates
    at every step and the same final weights."""
    dm = texts_dm(repeat=8, batch_size=2)

    def run(*callbacks, ckpt_path=None):
        torch.manual_seed(0)
        model = classifier(dm, discriminative_lr=2.6, optimizer=lambda params: torch.optim.Adam(params, lr=0.01),
                           lr_scheduler=SlantedTriangularLR)
        rates = LearningRates()
        t = trainer(tmp_path, max_epochs=2, limit_val_batches=1, callbacks=[GradualUnfreezing(), rates, *callbacks])
        t.fit(model, dm, ckpt_path=ckpt_path)
        return t, model, rates.seen

    _, whole, whole_rates = run()
    first, _, first_rates = run(StopAfterFirstEpoch())
    first.save_checkpoint(tmp_path / "epoch1.ckpt")
    _, resumed, resumed_rates = run(ckpt_path=tmp_path / "epoch1.ckpt")
    assert len(first_rates) == len(resumed_rates) == 20
    assert first_rates + resumed_rates == whole_rates
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_a_word_the_source_has_only_in_another_case_takes_the_row_of_its_most_frequent_casing():
    """A lower-cased task corpus (SST-2) meets a cased LM vocabulary (WikiText-2): rows by exact word first, else by
    lower case, the most frequent casing (the lowest row) winning; the rest are reported and left alone."""
    source_vocab = {"<pad>": 0, "the": 1, "The": 2, "Hollywood": 3, "HOLLYWOOD": 4, "film": 5, "Film": 6}
    source = torch.arange(7, dtype=torch.float64).repeat(2, 1).T * 10  # row i holds (10 i, 10 i)
    target_vocab = {"<pad>": 0, "hollywood": 1, "the": 2, "The": 3, "FILM": 4, "unseen": 5}
    target = torch.full((6, 2), -1.0, dtype=torch.float64)
    missing = copy_rows_by_word(target, target_vocab, source, source_vocab, skip={0})
    assert missing == ["unseen"]
    expected = {"<pad>": -1.0, "hollywood": 30.0, "the": 10.0, "The": 20.0, "FILM": 50.0, "unseen": -1.0}
    for word, row in target_vocab.items():
        assert target[row].tolist() == [expected[word]] * 2, word
