"""The GPU paths: same numbers as on CPU, bf16 training, and training steps that never wait for the GPU.

Skipped without CUDA (CI has none); `benchmarks/run_gpu.sh` runs this file first on a GPU machine.
"""

from __future__ import annotations

import traceback
import warnings

import lightning as L
import pytest
import torch
from conftest import trainer
from datasets import DatasetDict
from test_characters import random_stems, spelled_corpus
from test_classification import corpus
from test_tagging import rule_corpus

from rnn_lightning import (
    LanguageModel,
    Perplexity,
    SequenceClassifier,
    SequenceTagger,
    SpanF1,
    TaggingDataModule,
    TextClassificationDataModule,
)
from rnn_lightning.functional.tag_schemes import tag_spans
from rnn_lightning.nn import CRF, RecurrentEncoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(autouse=True)
def exact_float32():
    """No TF32: CUDA float32 results are then comparable with CPU float32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def gpu_trainer(tmp_path, **kwargs):
    return trainer(tmp_path, **{"accelerator": "cuda", **kwargs})


class RecordSyncs(L.Callback):
    """Record the Python stack of every synchronizing CUDA call (torch's sync debug mode) in steps ``first..last``."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.syncs = first, last, []
        self._saved = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            self._saved = warnings.showwarning, warnings.filters[:]
            warnings.simplefilter("always")
            warnings.showwarning = self._record
            torch.cuda.set_sync_debug_mode("warn")

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" in str(message) and not _inside_set_sync_debug_mode():
            frames = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1]]
            self.syncs.append(" <- ".join(reversed([f for f in frames if "/warnings.py" not in f][-6:])))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.last:  # (switching the mode back off itself warns as a sync: not counted)
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning, warnings.filters[:] = self._saved


def _inside_set_sync_debug_mode() -> bool:
    return any(frame.name == "set_sync_debug_mode" for frame in traceback.extract_stack())


def test_language_model_training_steps_never_wait_for_the_gpu(tiny_markov, tiny_lm, tmp_path):
    """Steady-state steps (not logging steps) queue their work and return: no .item(), no bool(cuda tensor)."""
    model = tiny_lm(tiny_markov)
    record = RecordSyncs(first=3, last=12)
    t = gpu_trainer(tmp_path, max_steps=14, log_every_n_steps=50, gradient_clip_val=0.25, callbacks=[record])
    t.fit(model, tiny_markov)
    assert record.syncs == [], "synchronizing CUDA calls in training steps:\n" + "\n".join(sorted(set(record.syncs)))
    # logging steps bring the loss to the host, for the loggers and the progress bar
    t = gpu_trainer(tmp_path, max_steps=6, log_every_n_steps=2, gradient_clip_val=0.25, limit_val_batches=0)
    t.fit(model, tiny_markov)
    assert t.progress_bar_metrics["train/loss"] == pytest.approx(float(t.logged_metrics["train/loss"]))
    assert float(t.logged_metrics["train/loss"]) == pytest.approx(float(model._last_loss))  # step 6 logs


def _tagging_or_classification(kind: str) -> tuple[L.LightningModule, L.LightningDataModule]:
    if kind == "classifier":
        dm = TextClassificationDataModule(dataset=DatasetDict(train=corpus(600, 0), validation=corpus(50, 1)),
                                          batch_size=16)
        return SequenceClassifier(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, pooling="mean"), dm
    stems = random_stems(40, 0)
    data = DatasetDict(train=spelled_corpus(300, 0, stems), validation=spelled_corpus(30, 1, stems))
    chars = kind == "char_crf_tagger"
    dm = TaggingDataModule(dataset=data, tag_scheme="IOB2", char_features=chars, batch_size=16)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           crf=chars,
                           char_vocab=dm.char_vocab, word_dropout=0.1)
    return model, dm


@pytest.mark.parametrize("kind", ["tagger", "char_crf_tagger", "classifier"])
def test_tagging_and_classification_steps_never_wait_for_the_gpu(kind, tmp_path):
    """Lengths stay on the CPU (packing reads them there) and the CRF trusts our DataModules' padding: no waits."""
    model, dm = _tagging_or_classification(kind)
    record = RecordSyncs(first=3, last=12)
    t = gpu_trainer(tmp_path, max_steps=14, log_every_n_steps=50, gradient_clip_val=1.0, callbacks=[record])
    t.fit(model, dm)
    assert record.syncs == [], "synchronizing CUDA calls in training steps:\n" + "\n".join(sorted(set(record.syncs)))


def test_non_finite_gradient_stops_one_step_later_naming_the_step(tiny_markov, tiny_lm, tmp_path):
    class Explodes(LanguageModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.global_step == 3 else loss

    model = Explodes(vocab_size=tiny_markov.vocab_size, pad_id=tiny_markov.pad_id, embedding_dim=8, hidden_size=8)
    t = gpu_trainer(tmp_path, max_steps=20, gradient_clip_val=0.25)
    with pytest.raises(FloatingPointError, match=r"not finite at step 3 .*update was applied.*last checkpoint"):
        t.fit(model, tiny_markov)
    assert model.global_step == 4  # the check of step 3 came back at step 4, before its update


def test_language_model_on_cuda_matches_cpu(tiny_markov, tiny_lm, tmp_path):
    """Same init, data and steps: the CUDA run's weights equal the CPU run's (float32, TF32 off)."""
    weights = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = tiny_lm(tiny_markov)
        trainer(tmp_path, accelerator=device, max_steps=20, gradient_clip_val=0.25).fit(model, tiny_markov)
        weights[device] = {k: v.cpu() for k, v in model.state_dict().items()}
    for name, cpu in weights["cpu"].items():
        torch.testing.assert_close(weights["cuda"][name], cpu, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_mixed_language_model_trains_and_evaluates(tiny_markov, tiny_lm, tmp_path):
    model = tiny_lm(tiny_markov, embedding_dim=32, hidden_size=32,
                    optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    t = gpu_trainer(tmp_path, max_epochs=3, precision="bf16-mixed", gradient_clip_val=1.0)
    t.fit(model, tiny_markov)
    val = t.validate(model, tiny_markov)[0]
    # the Markov source's entropy bounds the best perplexity; an untrained model scores ~vocab size
    assert val["val/ppl"] < 0.5 * tiny_markov.vocab_size


@pytest.mark.parametrize("crf", [False, True])
def test_tagger_on_cuda_in_bf16_learns_and_scores_like_span_counting(tmp_path, crf):
    data = DatasetDict(train=rule_corpus(600, 0), validation=rule_corpus(101, 1), test=rule_corpus(57, 2))
    torch.manual_seed(0)
    dm = TaggingDataModule(dataset=data, tag_scheme="IOB2", batch_size=16)
    model = SequenceTagger(dm.vocab_size, dm.num_labels, pad_id=dm.pad_id, labels=dm.labels, span_scheme="IOB2",
                           embedding_dim=16,
                           hidden_size=16, dropout=0.0, crf=crf, optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    t = gpu_trainer(tmp_path, max_epochs=6, precision="bf16-mixed")
    t.fit(model, dm)
    test = t.test(model, dm)[0]
    assert test["test/acc"] > 0.99 and test["test/f1"] > 0.98
    predicted, gold = model.tag(data["test"]["tokens"]), data["test"]["tags"]  # tag() runs on the GPU too
    pred_spans = {(i, *s) for i, tags in enumerate(predicted) for s in tag_spans(tags, "IOB2")}
    gold_spans = {(i, *s) for i, tags in enumerate(gold) for s in tag_spans(tags, "IOB2")}
    f1 = 2 * len(pred_spans & gold_spans) / (len(pred_spans) + len(gold_spans))
    assert test["test/f1"] == pytest.approx(f1, abs=1e-6)


def test_crf_on_cuda_equals_cpu_in_float64():
    torch.manual_seed(0)
    crf = CRF(7).double()
    emissions = torch.randn(8, 30, 7, dtype=torch.float64)
    tags = torch.randint(0, 7, (8, 30))
    mask = torch.arange(30)[None] < torch.randint(1, 31, (8,))[:, None]
    nll_cpu, paths_cpu = crf(emissions, tags, mask), crf.decode(emissions, mask)
    gpu = crf.cuda()
    nll_gpu = gpu(emissions.cuda(), tags.cuda(), mask.cuda())
    torch.testing.assert_close(nll_gpu.cpu(), nll_cpu, rtol=1e-10, atol=0)
    assert torch.equal(gpu.decode(emissions.cuda(), mask.cuda()).cpu(), paths_cpu)


def test_span_f1_and_perplexity_on_cuda_equal_cpu():
    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    preds, target = torch.randint(0, 5, (16, 40)), torch.randint(0, 5, (16, 40))
    mask = torch.arange(40)[None] < torch.randint(1, 41, (16,))[:, None]
    results = []
    for device in ("cpu", "cuda"):
        metric = SpanF1(labels).to(device)
        metric.update(preds.to(device), target.to(device), mask.to(device))
        results.append(metric.report())
    assert results[0] == results[1]

    logits = torch.randn(4, 50, 1000) * 4
    target = torch.randint(0, 1000, (4, 50))
    exact = torch.nn.functional.cross_entropy(logits.double().flatten(0, 1), target.flatten()).exp()
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 5e-3)):
        metric = Perplexity().cuda()
        metric.update(logits.to("cuda", dtype), target.cuda())
        value = metric.compute()
        assert torch.isfinite(value) and float(value) == pytest.approx(float(exact), rel=tol), dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_perplexity_update_needs_no_more_memory_than_its_logits(dtype):
    """Float32 log-probabilities in chunks: the working memory stays within the logits' own size (the torchmetrics
    peak), although CUDA's log_softmax copies bfloat16 input to float32 first."""
    torch.manual_seed(0)
    logits = (torch.randn(64 * 70, 33_278, device="cuda") * 4).to(dtype)
    target = torch.randint(0, 33_278, (64 * 70,), device="cuda")
    metric = Perplexity().cuda()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    metric.update(logits, target)
    torch.cuda.synchronize()
    working = torch.cuda.max_memory_allocated() - before
    assert working <= 1.05 * logits.numel() * logits.element_size(), (working, logits.numel())
    exact = torch.nn.functional.cross_entropy(logits.double(), target).exp()
    assert float(metric.compute()) == pytest.approx(float(exact), rel=1e-6)


@pytest.mark.parametrize("lengths_on", ["cpu", "cuda"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packed_bidirectional_encoder_on_cuda_equals_each_sequence_alone(cell, lengths_on):
    torch.manual_seed(0)  # float64: packed and unpacked runs take different kernels, float32 would differ by ~1e-6
    encoder = RecurrentEncoder(6, 5, num_layers=2, cell=cell, bidirectional=True).cuda().double()
    x = torch.randn(4, 9, 6, device="cuda", dtype=torch.float64)
    lengths = torch.tensor([9, 3, 1, 6], device=lengths_on)
    outputs, _ = encoder(x, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, _ = encoder(x[i:i + 1, :n])
        torch.testing.assert_close(outputs[i, :n], alone[0], rtol=1e-10, atol=1e-12)
        assert torch.all(outputs[i, n:] == 0)


@pytest.mark.parametrize("connection", ["residual", "dense", "highway"])
def test_connected_stack_on_cuda_equals_cpu_and_trains_in_bf16(connection, tiny_markov, tiny_lm, tmp_path):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(6, 5, num_layers=3, cell="lstm", bidirectional=True, connection=connection).double()
    x, lengths = torch.randn(4, 9, 6, dtype=torch.float64), torch.tensor([9, 3, 1, 6])
    cpu, _ = encoder(x, lengths=lengths)
    gpu, _ = encoder.cuda()(x.cuda(), lengths=lengths.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-12)
    model = tiny_lm(tiny_markov, num_layers=3, connection=connection)
    t = gpu_trainer(tmp_path, max_epochs=1, precision="bf16-mixed")
    t.fit(model, tiny_markov)
    assert torch.isfinite(torch.tensor(t.validate(model, tiny_markov)[0]["val/ppl"]))
