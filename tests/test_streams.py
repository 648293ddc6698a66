"""Stream splitting and rank sharding: every target predicted exactly once, in order, after its context."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data.streams import StreamWindows, TokenStreams, split_streams


def _pairs(inputs, targets):
    keep = targets != IGNORE_INDEX
    return list(zip(inputs[keep].tolist(), targets[keep].tolist()))


@settings(max_examples=60, deadline=None)
@given(
    num_ids=st.integers(2, 300),
    ranks=st.integers(1, 4),
    per_rank=st.integers(1, 5),
    bptt=st.integers(1, 40),
)
def test_eval_streams_cover_every_target_once_across_ranks(num_ids, ranks, per_rank, bptt):
    streams = ranks * per_rank
    if num_ids - 1 < streams:
        with pytest.raises(ValueError, match="cannot cut"):
            split_streams(torch.arange(num_ids), streams, pad_id=-1, drop_remainder=False)
        return
    ids = torch.arange(num_ids) * 7  # distinct ids so each (input, target) pair names its position
    inputs, targets = split_streams(ids, streams, pad_id=-1, drop_remainder=False)
    seen = []
    for rank in range(ranks):
        windows = StreamWindows(TokenStreams(ids, streams, pad_id=-1, drop_remainder=False), bptt, rank=rank,
                                world_size=ranks)
        assert len(list(windows)) == len(windows)
        for x, y in windows:
            assert x.shape == y.shape and x.shape[0] == per_rank and x.shape[1] <= bptt
            seen += _pairs(x, y)
    expected = list(zip(ids[:-1].tolist(), ids[1:].tolist()))  # brute force: every consecutive pair
    assert sorted(seen) == sorted(expected)


@settings(max_examples=40, deadline=None)
@given(num_ids=st.integers(10, 300), streams=st.integers(1, 9))
def test_train_streams_are_contiguous_equal_rows_dropping_less_than_one_row(num_ids, streams):
    ids = torch.arange(num_ids)
    if num_ids - 1 < streams:
        return
    inputs, targets = split_streams(ids, streams, pad_id=-1, drop_remainder=True)
    length = (num_ids - 1) // streams
    assert inputs.shape == (streams, length)
    assert (targets == inputs + 1).all()  # targets are the next id in each row
    assert (inputs[1:, 0] == inputs[:-1, -1] + 1).all()  # rows continue one another
    assert (num_ids - 1) - streams * length < streams


def test_ignored_target_ids_are_masked():
    ids = torch.tensor([2, 5, 6, 3, 2, 7, 3])  # <bos>=2 a b <eos>=3 <bos> c <eos>
    inputs, targets = split_streams(ids, 1, pad_id=0, drop_remainder=False, ignore_ids=(2,))
    assert targets.tolist() == [[5, 6, 3, IGNORE_INDEX, 7, 3]]
    assert inputs.tolist() == [[2, 5, 6, 3, 2, 7]]


def test_windows_reject_bad_bptt():
    with pytest.raises(ValueError, match="`bptt` must be a positive integer, got 0"):
        StreamWindows(TokenStreams(torch.arange(10), 1, pad_id=0, drop_remainder=True), bptt=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_loader_keeps_order_with_workers_and_resumes_from_its_state(workers):
    from rnn_lightning.data.streams import StreamLoader

    streams = TokenStreams(torch.arange(200), 3, pad_id=0, drop_remainder=True)
    windows = [x for x, _ in StreamWindows(streams, bptt=7)]
    loader = StreamLoader(StreamWindows(streams, bptt=7), num_workers=workers)
    seen = []
    for i, (x, _) in enumerate(loader):
        seen.append(x)
        if i == 4:
            state = loader.state_dict()
    assert len(seen) == len(windows) and all(torch.equal(a, b) for a, b in zip(seen, windows))
    assert state == {"batches_done": 5, "epoch": 0}
    fresh = StreamLoader(StreamWindows(streams, bptt=7), num_workers=workers)
    fresh.load_state_dict(state)
    rest = [x for x, _ in fresh]  # resumes at window 5 ...
    assert all(torch.equal(a, b) for a, b in zip(rest, windows[5:])) and len(rest) == len(windows) - 5
    assert len([x for x, _ in fresh]) == len(windows)  # ... and the next epoch starts from the first window


@pytest.mark.parametrize("workers", [0, 2])
def test_shuffled_loader_resumes_from_its_state_with_workers(workers):
    """The sampler is read twice when a loader starts its workers; the skip of a resumed epoch must survive that."""
    from rnn_lightning.data.resumable import ResumableLoader, ResumableSampler

    def loader():
        data = list(range(20))
        return ResumableLoader(data, sampler=ResumableSampler(data, shuffle=True, seed=3), batch_size=3,
                               num_workers=workers)

    whole = [batch.tolist() for batch in loader()]
    first = loader()
    for i, _ in enumerate(first):
        if i == 2:
            state = first.state_dict()
            break
    fresh = loader()
    fresh.load_state_dict(state)
    assert [batch.tolist() for batch in fresh] == whole[3:]  # resumes at batch 3 ...
    assert [batch.tolist() for batch in fresh] == whole  # ... and the next epoch is whole


def test_variable_windows_tile_every_rank_alike_once_per_epoch_and_change_with_the_epoch():
    """AWD's windows (``variable_bptt``): each epoch's cut covers every train target once, in order; all ranks cut
    alike (one seed), so their streams move through the same steps; the lengths are the rule's draws, stretched."""
    from rnn_lightning.data.streams import SEED_STRIDE, variable_bounds
    from rnn_lightning.nn.variable_bptt import VariableBPTT

    inputs, targets = split_streams(torch.arange(4001), 4, pad_id=0, drop_remainder=True)  # 4 rows of 1000
    streams = TokenStreams(torch.arange(4001), 4, pad_id=0, drop_remainder=True)
    cuts = {}
    for epoch in (0, 1):
        per_rank = []
        for rank in range(2):
            windows = StreamWindows(streams, bptt=35, rank=rank, world_size=2, variable_seed=3)
            windows.set_epoch(epoch)
            items = list(windows)
            assert torch.equal(torch.cat([x for x, _, _ in items], 1), inputs[2 * rank:2 * rank + 2])
            assert torch.equal(torch.cat([y for _, y, _ in items], 1), targets[2 * rank:2 * rank + 2])
            assert all(scale == x.shape[1] / 35 for x, _, scale in items)
            per_rank.append([x.shape[1] for x, _, _ in items])
        assert per_rank[0] == per_rank[1]
        cuts[epoch] = per_rank[0]
    assert cuts[0] != cuts[1] and len(cuts[0]) == len(cuts[1]) == round(1000 / VariableBPTT(35).expected_length())
    rule = VariableBPTT(35, seed=3 * SEED_STRIDE + 1)  # the draws of epoch 1, before the stretch
    drawn = torch.tensor([rule.sample().length for _ in cuts[1]], dtype=torch.float64)
    stretched = drawn.cumsum(0) * 1000 / drawn.sum()
    bounds = variable_bounds(1000, 35, seed=3, epoch=1)
    assert torch.equal(bounds[1:], stretched.round().long())


@pytest.mark.slow
def test_importing_the_library_leaves_the_warning_filters_alone():
    """Importing any rnn_lightning module installs no warning filter (a clean interpreter; the libraries it builds
    on are imported first, so only the library's own changes count)."""
    root = Path(__file__).resolve().parents[1]
    code = f"""
import importlib, pkgutil, sys, warnings
import datasets, lightning, tokenizers, torch, torchmetrics
sys.path.insert(0, {str(root)!r})
before = list(warnings.filters)
import rnn_lightning
for module in pkgutil.walk_packages(rnn_lightning.__path__, "rnn_lightning."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
added = [f for f in warnings.filters if f not in before]
assert warnings.filters == before, added
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 40), replicas=st.integers(1, 4), data=st.data())
def test_in_order_sampler_yields_distributed_samplers_indices_lazily(n, replicas, data):
    """The in-order sampler computes its indices instead of listing them; they are DistributedSampler's own (the
    reference, padded by wrapping around), less the first ``skip``."""
    from torch.utils.data import DistributedSampler

    from rnn_lightning.data.resumable import ResumableSampler

    rank, skip = data.draw(st.integers(0, replicas - 1)), data.draw(st.integers(0, n + 2))
    ours = ResumableSampler(range(n), replicas, rank, shuffle=False)
    ours.skip = skip
    assert list(ours) == list(DistributedSampler(range(n), replicas, rank, shuffle=False))[skip:]


def test_backward_view_reads_reverse_lines_stream_and_travels_as_a_file_name(tmp_path):
    """BackwardIds, read at any positions, equals reverse_lines' copy of the flipped split; pickled, a memory map
    goes as its file name and reopens."""
    import pickle

    import numpy as np

    from rnn_lightning.data.language_modeling import reverse_lines
    from rnn_lightning.data.streams import BackwardIds

    rng = np.random.default_rng(0)
    bos, eos, lines = 2, 3, [rng.integers(4, 50, size=n) for n in (5, 0, 1, 7, 3)]
    ids = np.concatenate([np.concatenate([[bos], line, [eos]]) for line in lines]).astype(np.uint16)  # (M,)
    offsets = np.concatenate([[0], np.cumsum([len(line) + 2 for line in lines])])
    expected = reverse_lines(ids.astype(np.int64), offsets)
    path = tmp_path / "train.bin"
    ids.tofile(path)
    view = BackwardIds(np.memmap(path, dtype=np.uint16, mode="r"), bos_id=bos, eos_id=eos)
    at = rng.integers(0, len(ids), size=(3, 4))
    assert len(view) == len(ids) and np.array_equal(view[at], expected[at])
    assert np.array_equal(view[np.arange(len(ids))], expected) and np.array_equal(np.asarray(view), expected)
    payload = pickle.dumps(view)
    assert len(payload) < 400  # the name, not the contents
    assert np.array_equal(pickle.loads(payload)[np.arange(len(ids))], expected)
