"""Export to TorchScript and ONNX: the exported graphs compute what the eager model computes.

References: the eager task itself (packed batches, ``CRF.decode``, ``LanguageModel.generate_ids``) on small models in
the recipes' shapes, run on batches of other sizes and lengths than the traced example.
"""

import json
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from rnn_lightning import LanguageModel, SequenceClassifier, SequenceTagger
from rnn_lightning.data.tokenization import BOS, EOS, train_word_tokenizer
from rnn_lightning.export import export

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]

WORDS = "the cat sat on a mat and dog ran to big red house in city of paris john mary lives near".split()
TOKENIZER = train_word_tokenizer([" ".join(WORDS)])
V = TOKENIZER.get_vocab_size()
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
UPOS = ["NOUN", "VERB", "DET", "ADP", "PROPN"]
CHARS = ["<pad>", "<unk>", *"abcdefghijklmnopqrstuvwxyz"]
SMALL = dict(embedding_dim=6, hidden_size=5, dropout=0.0)


def _tagger(**kwargs):
    labels = IOBES if kwargs.get("span_scheme") else UPOS
    return SequenceTagger(vocab_size=V, num_labels=len(labels), labels=labels, **{**SMALL, **kwargs})


MODELS = {  # the recipes' shapes, small
    "bilstm tagger": lambda: _tagger(),  # ud_ewt_upos_bilstm
    "bilstm-crf tagger, 2 GRU layers": lambda: _tagger(span_scheme="IOBES", crf=True, cell="gru", num_layers=2),
    "char bilstm-crf tagger": lambda: _tagger(span_scheme="IOBES", crf=True, char_vocab=CHARS, char_embedding_dim=4,
                                              char_hidden_size=3),  # conll2003_ner_char_bilstm_crf
    "dense bilstm tagger, 3 layers": lambda: _tagger(num_layers=3, connection="dense"),
    "highway bigru classifier, mean": lambda: SequenceClassifier(vocab_size=V, num_labels=2, cell="gru", num_layers=2,
                                                                 connection="highway", pooling="mean", **SMALL),
    "residual bilstm classifier, final": lambda: SequenceClassifier(vocab_size=V, num_labels=2, num_layers=2,
                                                                    connection="residual", **SMALL),
    "bilstm classifier, max": lambda: SequenceClassifier(vocab_size=V, num_labels=2, labels=["neg", "pos"],
                                                         pooling="max", **SMALL),  # sst2_bilstm
    "bigru classifier, final, 2 layers": lambda: SequenceClassifier(vocab_size=V, num_labels=3, cell="gru",
                                                                    num_layers=2, pooling="final", **SMALL),
    "rnn classifier, mean": lambda: SequenceClassifier(vocab_size=V, num_labels=3, cell="rnn_tanh",
                                                       bidirectional=False, pooling="mean", **SMALL),
    "lstm classifier, concat": lambda: SequenceClassifier(vocab_size=V, num_labels=2, bidirectional=False,
                                                          num_layers=2, pooling="concat", **SMALL),  # sst2_ulmfit
}
LMS = {
    "tied lstm lm": lambda: LanguageModel(vocab_size=V, embedding_dim=6, hidden_size=6, num_layers=2,
                                          tie_weights=True),  # wikitext2_lstm_650x2_tied
    "gru lm": lambda: LanguageModel(vocab_size=V, embedding_dim=6, hidden_size=5, cell="gru"),
    "awd lstm lm": lambda: LanguageModel(vocab_size=V, embedding_dim=4, hidden_size=7, num_layers=3,
                                         last_hidden_size=4, tie_weights=True, weight_drop=0.5,
                                         locked_dropout=True),  # awd_lstm_wikitext2
    "rnn_tanh lm": lambda: LanguageModel(vocab_size=V, embedding_dim=6, hidden_size=5, cell="rnn_tanh"),
}


def _build(make):
    torch.manual_seed(0)
    model = make()
    model.tokenizer = Tokenizer.from_str(TOKENIZER.to_str())
    with torch.no_grad():  # CRF and biases away from their small initial values: decoding must follow them
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def _batches(with_chars: bool):
    """Two batches unlike the traced example (2 x 3): 4 sequences of lengths 7, 1, 4, 3 and one of length 5."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for lengths in ([7, 1, 4, 3], [5]):
        lengths = torch.tensor(lengths)
        steps = int(lengths.max())
        real = torch.arange(steps) < lengths[:, None]  # (B, T)
        tokens = torch.randint(2, V, (len(lengths), steps), generator=generator) * real
        inputs = {"tokens": tokens, "lengths": lengths}
        if with_chars:
            chars = torch.randint(2, len(CHARS), (len(lengths), steps, 6), generator=generator)
            word_lengths = torch.randint(1, 7, (len(lengths), steps), generator=generator) * real  # padding words: 0
            inputs["chars"] = chars * (torch.arange(6) < word_lengths[..., None])
        batches.append(inputs)
    return batches


def _eager(model, inputs):
    """The eager model's outputs for ``inputs``: what each exported graph must reproduce."""
    with torch.no_grad():
        if isinstance(model, SequenceClassifier):
            logits = model(inputs["tokens"], inputs["lengths"])
            return {"logits": logits, "probabilities": logits.softmax(-1)}
        emissions = model(inputs["tokens"], inputs["lengths"], inputs.get("chars"))
        mask = torch.arange(emissions.shape[1]) < inputs["lengths"][:, None]
        return {"emissions": emissions, "tags": model.decode(emissions, mask), "mask": mask}


def _check(outputs, expected, names):
    mask = expected.get("mask")
    for name, got in zip(names, outputs):
        got, want = torch.as_tensor(got), expected[name]
        if mask is not None:  # a tagger's outputs are compared on real tokens
            got, want = got[mask], want[mask]
        if want.is_floating_point():
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        else:
            assert torch.equal(got, want), name


SLOW = {"dense bilstm tagger, 3 layers", "residual bilstm classifier, final", "rnn_tanh lm"}  # paths the others cover


def _params(names):
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in names]


@pytest.fixture(scope="module", params=_params(MODELS))
def exported(request, tmp_path_factory):
    model = _build(MODELS[request.param]).eval()
    directory = tmp_path_factory.mktemp("export")
    manifest = export(model, directory)
    return model, directory, manifest


def test_exported_graphs_equal_the_eager_model(exported):
    model, directory, manifest = exported
    names = [spec["name"] for spec in manifest["outputs"]]
    scripted = torch.jit.load(str(directory / "model.pt"))
    session = ort.InferenceSession(str(directory / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == [spec["name"] for spec in manifest["inputs"]]
    for inputs in _batches(with_chars=len(manifest["inputs"]) == 3):
        expected = _eager(model, inputs)
        _check(scripted(*inputs.values()), expected, names)
        _check(session.run(names, {k: v.numpy() for k, v in inputs.items()}), expected, names)


@pytest.mark.parametrize("name", [name for name in MODELS if "crf" in name])
def test_a_crf_tagger_never_decodes_a_forbidden_move(name, tmp_path):
    model = _build(MODELS[name]).eval()
    with torch.no_grad():  # every move IOBES forbids scores far above the others: only the masks keep them out
        model.crf.transitions.add_(50.0 * ~model.crf.allowed_transitions)
        model.crf.start.add_(50.0 * ~model.crf.allowed_start)
        model.crf.end.add_(50.0 * ~model.crf.allowed_end)
    export(model, tmp_path, formats="onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    allowed = model.crf.allowed_transitions
    for inputs in _batches(with_chars=model.char_vocab is not None):
        tags = torch.as_tensor(session.run(["tags"], {k: v.numpy() for k, v in inputs.items()})[0])
        assert torch.equal(tags, _eager(model, inputs)["tags"])
        for row, n in zip(tags.tolist(), inputs["lengths"].tolist()):
            assert model.crf.allowed_start[row[0]] and model.crf.allowed_end[row[n - 1]]
            assert all(allowed[a, b] for a, b in zip(row[:n - 1], row[1:n]))


def test_side_files_and_manifest(exported):
    model, directory, manifest = exported
    assert json.loads((directory / "export.json").read_text()) == manifest
    assert manifest["task"] == type(model).__name__
    assert Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab() == TOKENIZER.get_vocab()
    assert (directory / "labels.json").exists() == (model.labels is not None)
    if model.labels is not None:
        assert json.loads((directory / "labels.json").read_text()) == manifest["labels"] == model.labels
    assert manifest["versions"]["torch"] == metadata.version("torch")
    assert [spec["name"] for spec in manifest["outputs"]][0] in ("emissions", "logits")
    if getattr(model, "char_vocab", None):
        assert json.loads((directory / "char_vocab.json").read_text()) == CHARS


def _greedy(step, context, *, max_new_tokens, eos, bos, state):
    """Greedy decoding through an exported step, one token per call: generate's rules (``stop_at_eos=False``)."""
    for token in context:
        logits, *state = step(token, state)
    new = []
    while True:
        new.append(int(torch.as_tensor(logits).argmax(-1)))
        if len(new) == max_new_tokens:
            return new
        for token in [new[-1], bos] if new[-1] == eos else [new[-1]]:  # a new line starts with <bos>
            logits, *state = step(token, state)


@pytest.mark.parametrize("name", _params(LMS))
def test_generation_through_the_exported_step_equals_generate(name, tmp_path):
    model = _build(LMS[name]).eval()
    context = model.encode_prompt("the cat sat")
    eos, bos = TOKENIZER.token_to_id(EOS), TOKENIZER.token_to_id(BOS)
    for _ in range(40):  # raise <eos> until greedy lines break, so that the <eos> -> <bos> rule is exercised too
        expected = model.generate_ids(context, max_new_tokens=30, greedy=True, stop_at_eos=False)
        if eos in expected[:-1]:
            break
        with torch.no_grad():
            model.net.decoder.bias[eos] += 0.25
    assert eos in expected[:-1]
    manifest = export(model, tmp_path)
    layers, _, width = manifest["inputs"][1]["shape"]
    zeros = [torch.zeros(layers, 1, width) for _ in manifest["inputs"][1:]]
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    names = [spec["name"] for spec in manifest["inputs"]]

    def ts_step(token, state):
        return scripted(torch.tensor([[token]]), *state)

    def onnx_step(token, state):
        feeds = dict(zip(names, [torch.tensor([[token]]).numpy(), *(torch.as_tensor(s).numpy() for s in state)]))
        return session.run(None, feeds)

    for step in (ts_step, onnx_step):
        assert _greedy(step, context, max_new_tokens=30, eos=eos, bos=bos, state=zeros) == expected
    # a batch of three other states: the logits and new states equal the eager network's
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, V, (3, 1), generator=generator)
    state = [torch.randn(layers, 3, width, generator=generator) for _ in names[1:]]
    if width > model.net.encoder.hidden_size or width > model.net.encoder.last_hidden_size:
        state = [s * 0 for s in state]  # rows zero-padded past a layer's size: only zeros are meaningful there
    with torch.no_grad():
        logits, new = model.net(tokens, tuple(state) if len(state) == 2 else state[0], last_only=True)
    new = list(new) if isinstance(new, tuple) else [new]
    for outputs in (scripted(tokens, *state), session.run(None, dict(zip(names, [tokens.numpy(), *(s.numpy()
                                                                                  for s in state)])))):
        for got, want in zip(outputs, [logits.squeeze(1), *new]):
            torch.testing.assert_close(torch.as_tensor(got), want, atol=1e-5, rtol=0)


def test_export_leaves_the_model_as_it_was(tmp_path):
    model = _build(MODELS["bilstm tagger"]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export(model, tmp_path, formats="torchscript")
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "labels.json", "model.pt", "tokenizer.json"]


@pytest.mark.parametrize("kwargs, match", [
    ({"formats": "tflite"}, r"`formats` must be one or more of \('torchscript', 'onnx'\), got 'tflite'"),
    ({"formats": []}, r"`formats` must be one or more of"),
    ({"opset": 9}, r"`opset` must be an integer >= 13, got 9"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export(_build(MODELS["bilstm tagger"]), tmp_path, **kwargs)


def test_an_output_that_is_a_file_or_a_model_that_is_no_task(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"`directory` '.*file' is a file: expected a folder"):
        export(_build(MODELS["bilstm tagger"]), tmp_path / "file")
    with pytest.raises(TypeError, match=r"`model` must be a SequenceTagger, SequenceClassifier or LanguageModel, got "
                                        r"Linear"):
        export(torch.nn.Linear(2, 2), tmp_path)


@pytest.fixture(scope="module")
def tagger_checkpoint(tmp_path_factory):
    """A char BiLSTM-CRF tagger fitted for two steps by the real Trainer on a TaggingDataModule, and its checkpoint."""
    from conftest import trainer
    from datasets import Dataset, DatasetDict

    from rnn_lightning import TaggingDataModule

    rows = Dataset.from_dict({"tokens": [["John", "lives", "in", "Paris"], ["Mary", "ran"]] * 4,
                              "tags": [["B-PER", "O", "O", "B-LOC"], ["B-PER", "O"]] * 4})
    dm = TaggingDataModule(dataset=DatasetDict(train=rows, validation=rows), batch_size=4, tag_scheme="IOB2",
                           char_features=True)
    dm.setup("fit")
    model = SequenceTagger(vocab_size=dm.vocab_size, num_labels=dm.num_labels, pad_id=dm.pad_id, labels=dm.labels,
                           span_scheme=dm.scheme, char_vocab=dm.char_vocab, crf=True, **SMALL)
    tmp_path = tmp_path_factory.mktemp("ckpt")
    fit = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    fit.fit(model, dm)
    fit.save_checkpoint(tmp_path / "tagger.ckpt")
    return tmp_path / "tagger.ckpt"


@pytest.mark.slow
def test_export_command_writes_what_the_checkpoint_computes(tagger_checkpoint, tmp_path, capsys):
    from rnn_lightning.cli import main

    main(["export", "--ckpt_path", str(tagger_checkpoint), "--output", str(tmp_path / "out"), "--format", "onnx"])
    assert "model.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "char_vocab.json", "export.json", "labels.json", "model.onnx", "tokenizer.json"]
    model = SequenceTagger.load_from_checkpoint(tagger_checkpoint).eval()
    sentences = [["John", "lives", "in", "Paris"], ["Mary"], ["unseen", "words", "ran"]]
    batch = model.encode_words(sentences, "sentences")  # encoded as a user of the files would encode them
    inputs = {"tokens": batch["tokens"], "lengths": batch["lengths"], "chars": batch["chars"].long()}
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    tags = session.run(["tags"], {k: v.numpy() for k, v in inputs.items()})[0]
    labels = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert [[labels[i] for i in row[:n]] for row, n in zip(tags.tolist(), [4, 1, 3])] == model.tag(sentences)


@pytest.mark.parametrize("case, match", [
    ("format", r"argument --format: invalid choice: 'tflite'"),
    ("output is a file", r"^error: `--output` '.*file' is a file: expected a folder"),
    ("not a task", r"^error: `--ckpt_path` '.*other\.ckpt' is a Lightning checkpoint of no rnn_lightning task .*"
                   r"its class: my\.Module"),
    ("missing", r"^error: `--ckpt_path` '.*nope\.ckpt' does not exist"),
])
def test_export_command_refuses_bad_input_with_status_2(tagger_checkpoint, tmp_path, capsys, case, match):
    from rnn_lightning.cli import main

    args = ["--ckpt_path", str(tagger_checkpoint), "--output", str(tmp_path / "out")]
    if case == "format":
        args += ["--format", "tflite"]
    elif case == "output is a file":
        (tmp_path / "file").write_text("x")
        args[3] = str(tmp_path / "file")
    elif case == "not a task":
        torch.save({"state_dict": {}, "hyper_parameters": {"lr": 0.1, "_class_path": "my.Module"}},
                   tmp_path / "other.ckpt")
        args[1] = str(tmp_path / "other.ckpt")
    else:
        args[1] = str(tmp_path / "nope.ckpt")
    with pytest.raises(SystemExit) as info:
        main(["export", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(match, err.strip().splitlines()[-1]) and "Traceback" not in err


def _recipe_settings(recipe: str) -> dict:
    import yaml

    settings = yaml.safe_load((ROOT / "recipes" / recipe).read_text())["model"]["init_args"]
    return {k: v for k, v in settings.items() if k not in ("optimizer", "lr_scheduler")}


@pytest.mark.slow
def test_the_recipes_networks_at_full_size_export_to_within_1e_5(tmp_path):
    """The shipped recipes' network sizes (CoNLL char BiLSTM-CRF, SST-2 BiLSTM, the 650 x 2 tied LSTM's step; a
    small vocabulary): TorchScript and onnxruntime equal the eager model to 1e-5 there too, not only on tiny nets."""
    torch.manual_seed(0)
    models = {
        "tagger": SequenceTagger(vocab_size=V, num_labels=len(IOBES), labels=IOBES, span_scheme="IOBES",
                                 char_vocab=CHARS, **_recipe_settings("tagging/conll2003_ner_char_bilstm_crf.yaml")),
        "classifier": SequenceClassifier(vocab_size=V, num_labels=2,
                                         **_recipe_settings("classification/sst2_bilstm.yaml")),
    }
    for name, model in models.items():
        model.tokenizer = Tokenizer.from_str(TOKENIZER.to_str())
        manifest = export(model.eval(), tmp_path / name)
        names = [spec["name"] for spec in manifest["outputs"]]
        scripted = torch.jit.load(str(tmp_path / name / "model.pt"))
        session = ort.InferenceSession(str(tmp_path / name / "model.onnx"))
        for inputs in _batches(with_chars=len(manifest["inputs"]) == 3):
            expected = _eager(model, inputs)
            _check(scripted(*inputs.values()), expected, names)
            _check(session.run(names, {k: v.numpy() for k, v in inputs.items()}), expected, names)
    lm = LanguageModel(vocab_size=V, **_recipe_settings("lm/wikitext2_lstm_650x2_tied.yaml")).eval()
    lm.tokenizer = Tokenizer.from_str(TOKENIZER.to_str())
    export(lm, tmp_path / "lm")
    tokens, h, c = torch.randint(2, V, (3, 1)), torch.randn(2, 3, 650) * 0.5, torch.randn(2, 3, 650) * 0.5
    with torch.no_grad():
        logits, (h_out, c_out) = lm.net(tokens, (h, c))  # (3, 1, V)
    onnx_out = ort.InferenceSession(str(tmp_path / "lm" / "model.onnx")).run(
        None, {"tokens": tokens.numpy(), "h": h.numpy(), "c": c.numpy()})
    scripted_out = torch.jit.load(str(tmp_path / "lm" / "model.pt"))(tokens, h, c)
    for got in (onnx_out, scripted_out):
        for value, want in zip(got, (logits[:, -1], h_out, c_out)):
            torch.testing.assert_close(torch.as_tensor(value).reshape(want.shape), want, atol=1e-5, rtol=0)


def test_an_adaptive_softmax_language_model_exports_its_normalised_step(tmp_path):
    """With ``adaptive_softmax_cutoffs`` the step's logits are the layer's log-probabilities: the exported step
    equals the eager network's, and greedy generation through it equals ``generate``'s."""
    model = _build(lambda: LanguageModel(vocab_size=V, embedding_dim=16, hidden_size=16,
                                         adaptive_softmax_cutoffs=[8, 16])).eval()
    context = model.encode_prompt("the cat sat")
    expected = model.generate_ids(context, max_new_tokens=20, greedy=True, stop_at_eos=False)
    manifest = export(model, tmp_path)
    names = [spec["name"] for spec in manifest["inputs"]]
    layers, _, width = manifest["inputs"][1]["shape"]
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    eos, bos = TOKENIZER.token_to_id(EOS), TOKENIZER.token_to_id(BOS)
    zeros = [torch.zeros(layers, 1, width) for _ in names[1:]]
    assert _greedy(lambda token, state: scripted(torch.tensor([[token]]), *state), context, max_new_tokens=20,
                   eos=eos, bos=bos, state=zeros) == expected
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, V, (3, 1), generator=generator)
    state = [torch.randn(layers, 3, width, generator=generator) for _ in names[1:]]
    with torch.no_grad():
        logits, new = model.net(tokens, tuple(state), last_only=True)
    assert torch.allclose(logits.squeeze(1).double().exp().sum(-1), torch.ones(3, dtype=torch.float64), atol=1e-5)
    for outputs in (scripted(tokens, *state), session.run(None, dict(zip(names, [tokens.numpy(),
                                                                                *(s.numpy() for s in state)])))):
        for got, want in zip(outputs, [logits.squeeze(1), *new]):
            torch.testing.assert_close(torch.as_tensor(got), want, atol=1e-5, rtol=0)
