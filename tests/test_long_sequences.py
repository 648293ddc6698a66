"""Long padded batches off CUDA run one length at a time: the values of torch's packing, in linear time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import trainer
from datasets import Dataset, DatasetDict
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_lightning import SequenceClassifier, TextClassificationDataModule
from rnn_lightning.nn import RecurrentEncoder
from rnn_lightning.nn.packing import BY_LENGTH_ABOVE, run_by_length
from rnn_lightning.nn.stack import ConnectedStack, make_rnn

pytestmark = pytest.mark.usefixtures("deadline")  # a hang fails the test (tests/conftest.py)


def _torch_packed(rnn, inputs, lengths, state):
    """The reference: torch's own packing and unpacking around the same module."""
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    out, final = rnn(packed, state)
    return pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])[0], final


def _flat(final):
    return list(final) if isinstance(final, tuple) else [final]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("connection", ["none", "residual"])
def test_by_length_equals_torchs_packing_in_float64(cell, bidirectional, connection):
    torch.manual_seed(0)
    rnn = (make_rnn(cell, 3, 4, num_layers=2, bidirectional=bidirectional, dropout=0.0) if connection == "none"
           else ConnectedStack(3, 4, num_layers=2, cell=cell, bidirectional=bidirectional, dropout=0.0,
                               connection=connection)).double()
    lengths = torch.tensor([6, 2, 6, 1, 4, 2])
    directions = 2 if bidirectional else 1
    h0 = torch.randn(2 * directions, len(lengths), 4, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    results = []
    for run in (run_by_length, _torch_packed):
        inputs = torch.randn(len(lengths), 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        inputs.requires_grad_(True)
        out, final = run(rnn, inputs, lengths, state)
        (out.square().sum() + sum(f.square().sum() for f in _flat(final))).backward()
        results.append((out, _flat(final), inputs.grad))
    (out, finals, grad), (ref_out, ref_finals, ref_grad) = results
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)  # zeros past each length included
    for got, want in zip(finals, ref_finals, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


def test_encoder_runs_a_long_batch_by_length_with_packings_values():
    torch.manual_seed(0)
    encoder = RecurrentEncoder(3, 4, num_layers=2, cell="lstm", bidirectional=True).double()
    lengths = torch.tensor([BY_LENGTH_ABOVE + 40, 5, BY_LENGTH_ABOVE + 1])
    inputs = torch.randn(3, BY_LENGTH_ABOVE + 45, 3, dtype=torch.float64)
    out, (h, c) = encoder(inputs, lengths=lengths)
    ref_out, (ref_h, ref_c) = _torch_packed(encoder.rnn, inputs, lengths, None)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, ref_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, ref_c, rtol=1e-12, atol=1e-12)


def test_one_long_text_among_short_ones_trains_an_epoch_quickly(tmp_path):
    # Packed, the long row's batch alone took tens of seconds in backward (quadratic in its length); by length it
    # is linear. The bound is generous for a shared machine.
    words = [f"w{i}" for i in range(50)]
    texts = [" ".join(words[(i * 7 + j) % 50] for j in range(3 + i % 9)) for i in range(60)]
    texts[17] = " ".join(words[i % 50] for i in range(10_000))
    rows = Dataset.from_dict({"sentence": texts, "label": [i % 2 for i in range(60)]})
    data = TextClassificationDataModule(dataset=DatasetDict(train=rows, validation=rows.select(range(8))),
                                        batch_size=16)
    model = SequenceClassifier(data.vocab_size, data.num_labels, pad_id=data.pad_id, embedding_dim=16, hidden_size=16)
    start = time.perf_counter()
    trainer(tmp_path, max_epochs=1).fit(model, data)
    assert model.trainer.global_step == 4  # the whole epoch, the long text's batch included
    assert time.perf_counter() - start < 12


@pytest.mark.deadline(360)  # the subprocess's own limit is 300 s
def test_long_input_benchmark_paths_agree(tmp_path):
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "benchmarks/bench_long_input.py", "--quick", "--out", str(tmp_path)], cwd=root,
                   check=True, capture_output=True, timeout=300)
    rows = json.loads((tmp_path / "bench_long_input.json").read_text())["rows"]
    assert [row["T"] for row in rows] == [256, 1024]
    assert all(row["max_abs_diff"] < 1e-5 for row in rows), rows  # float32: the same values by both paths
