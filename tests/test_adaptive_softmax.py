"""The adaptive softmax output of LanguageModel against a float64 adaptive softmax written out by hand: its
distribution sums to one, the training loss and the Trainer's perplexity are exact, and generation, the cache
pointer, predictions, checkpoints and bf16 work with it."""

import copy
import math

import pytest
import torch
from conftest import trainer

from rnn_lightning import LanguageModel
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.nn import EncoderConfig, RNNLanguageModelNet
from rnn_lightning.nn.output_layer import AdaptiveSoftmax

CUTOFFS = [8, 20]  # the tiny Markov corpus's ids: a head of 8 ids and two clusters


def by_hand(layer: AdaptiveSoftmax, h: torch.Tensor) -> torch.Tensor:
    """(N, E) -> (N, V) float64 log-probabilities from the layer's weights: the head's softmax over the shortlist
    and one entry per cluster, times each cluster's own softmax over its projected features."""
    h = h.double()
    head = layer.head
    head_weight = (torch.cat([head.shortlist_weight[: head.shortlist], head.cluster_weight])
                   if hasattr(head, "shortlist_weight") else head.weight)
    head_lp = (h @ head_weight.double().T).log_softmax(-1)  # (N, shortlist + K)
    shortlist = layer.cutoffs[0]
    parts = [head_lp[:, :shortlist]]
    for i, (down, out) in enumerate(layer.tail):
        cluster = (h @ down.weight.double().T @ out.weight.double().T).log_softmax(-1)  # (N, cluster size)
        parts.append(cluster + head_lp[:, shortlist + i, None])
    return torch.cat(parts, -1)


def adaptive_lm(dm, **kwargs):
    defaults = dict(embedding_dim=8, hidden_size=12, num_layers=1, dropout_embedding=0.0, dropout_between=0.0,
                    dropout_output=0.0, adaptive_softmax_cutoffs=CUTOFFS, adaptive_softmax_div_value=2.0)
    return LanguageModel(vocab_size=dm.vocab_size, pad_id=dm.pad_id, **{**defaults, **kwargs})


@pytest.mark.parametrize("tie_weights", [False, True])
def test_distribution_sums_to_one_everywhere_and_equals_the_hand_computed_one(tie_weights):
    torch.manual_seed(0)
    config = EncoderConfig(embedding_dim=8, hidden_size=10, num_layers=1)
    net = RNNLanguageModelNet(40, encoder=config, tie_weights=tie_weights, adaptive_softmax_cutoffs=[5, 15, 30],
                              adaptive_softmax_div_value=2.0).double().eval()
    tokens = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        log_p, _ = net(tokens)  # (3, 9, 40)
        h = net.projection(net.features(tokens)[0])  # (3, 9, E or H)
    assert log_p.dtype == torch.float64 and log_p.shape == (3, 9, 40)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(3, 9, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(log_p.flatten(0, 1), by_hand(net.decoder, h.flatten(0, 1)), rtol=0, atol=1e-12)
    targets = torch.randint(0, 40, (3, 9))
    targets[0, :2] = IGNORE_INDEX
    with torch.no_grad():
        nll = net.nll(net.features(tokens)[0], targets)  # the target-only path (projection inside)
    expected = -log_p.gather(-1, targets.clamp(min=0)[..., None])[..., 0].masked_fill(targets == IGNORE_INDEX, 0)
    torch.testing.assert_close(nll, expected, rtol=0, atol=1e-12)


def test_tied_head_shares_the_embedding_rows_of_the_shortlist_and_trains_them():
    config = EncoderConfig(embedding_dim=6, hidden_size=6, num_layers=1)  # H = E: no projection either way
    tied = RNNLanguageModelNet(40, encoder=config, tie_weights=True, adaptive_softmax_cutoffs=[5, 15],
                               adaptive_softmax_div_value=2.0)
    untied = RNNLanguageModelNet(40, encoder=config, adaptive_softmax_cutoffs=[5, 15], adaptive_softmax_div_value=2.0)
    assert tied.decoder.head.shortlist_weight is tied.embedding.weight
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731 (a shared parameter counts once)
    assert count(untied) - count(tied) == 5 * 6  # the shortlist's 5 head rows are embedding rows
    tokens = torch.tensor([[7, 8, 9]])  # inputs outside the shortlist: its rows learn from the head alone
    tied.nll(tied.features(tokens)[0], torch.tensor([[1, 2, 3]])).sum().backward()
    grad = tied.embedding.weight.grad  # (V, E)
    assert grad[1:5].abs().sum(-1).gt(0).all() and grad[7:10].abs().sum(-1).gt(0).all()
    assert grad[5:7].abs().sum() == 0 and grad[10:].abs().sum() == 0


def test_test_perplexity_through_the_trainer_equals_a_float64_brute_force(tmp_path, tiny_markov):
    model = adaptive_lm(tiny_markov, tie_weights=True)
    trainer(tmp_path, max_steps=8, limit_val_batches=0).fit(model, tiny_markov)
    (metrics,) = trainer(tmp_path).test(model, tiny_markov, verbose=False)
    windows = tiny_markov.windows("test")  # each stream row whole, in one float64 pass
    net = copy.deepcopy(model.net).double().eval()
    with torch.no_grad():
        h = net.projection(net.features(windows.inputs)[0])  # (S, L, E)
        log_p = by_hand(net.decoder, h.flatten(0, 1)).view(*h.shape[:2], -1)  # (S, L, V)
    scored = windows.targets != IGNORE_INDEX
    nll = -log_p.gather(-1, windows.targets.clamp(min=0)[..., None])[..., 0][scored]
    assert metrics["test/ppl"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
    assert metrics["test/loss"] == pytest.approx(float(nll.mean()), rel=1e-5)

    # predictions: the per-token NLL of the same targets (NaN where none)
    model._state["predict"] = None
    predicted = model.predict_step((windows.inputs, windows.targets), 0)["nll"]
    torch.testing.assert_close(predicted[scored].double(), nll, rtol=1e-4, atol=1e-5)
    assert predicted[~scored].isnan().all()

    # the cache pointer reads the full distribution; with lambda 0 it is the model's own
    model.hparams.cache_window, model.hparams.cache_lambda = 5, 0.0
    (cached,) = trainer(tmp_path).test(model, tiny_markov, verbose=False)
    assert cached["test/ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-5)


def test_generation_is_reproducible_and_greedy_follows_the_distribution(tmp_path, tiny_markov):
    model = adaptive_lm(tiny_markov)
    trainer(tmp_path, max_steps=5, limit_val_batches=0).fit(model, tiny_markov)
    sample = model.generate(max_new_tokens=15, seed=3, stop_at_eos=False)
    assert sample.strip() and sample == model.generate(max_new_tokens=15, seed=3, stop_at_eos=False)
    context = model.encode_prompt(None)
    greedy = model.generate_ids(context, max_new_tokens=4, greedy=True, stop_at_eos=False)
    with torch.no_grad():  # reference: argmax of the hand-computed distribution, fed back step by step
        ids, net = list(context), copy.deepcopy(model.net).double().eval()
        for _ in range(4):
            h = net.projection(net.features(torch.tensor([ids]))[0][:, -1])  # (1, E)
            ids.append(int(by_hand(net.decoder, h).argmax()))
    assert greedy == ids[len(context):]


def test_checkpoint_saves_and_loads_with_the_adaptive_softmax(tmp_path, tiny_markov):
    model = adaptive_lm(tiny_markov, tie_weights=True)
    t = trainer(tmp_path, max_steps=3, limit_val_batches=0)
    t.fit(model, tiny_markov)
    t.save_checkpoint(tmp_path / "adaptive.ckpt")
    loaded = LanguageModel.load_from_checkpoint(tmp_path / "adaptive.ckpt", map_location="cpu")
    assert loaded.hparams.adaptive_softmax_cutoffs == CUTOFFS
    assert loaded.net.decoder.head.shortlist_weight is loaded.net.embedding.weight  # still one parameter
    tokens = torch.randint(0, tiny_markov.vocab_size, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(tokens)[0], model.eval()(tokens)[0], rtol=0, atol=0)
    assert loaded.generate(max_new_tokens=8, seed=0) == model.generate(max_new_tokens=8, seed=0)


def test_bf16_autocast_step_is_finite_and_close_to_float32(tmp_path, tiny_markov):
    torch.manual_seed(0)
    model = adaptive_lm(tiny_markov, tie_weights=True)
    tokens = torch.randint(0, tiny_markov.vocab_size, (4, 12))
    targets = torch.randint(0, tiny_markov.vocab_size, (4, 12))
    loss32 = model.net.nll(model.net.features(tokens)[0], targets).mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll16 = model.net.nll(model.net.features(tokens)[0], targets)
        log_p16, _ = model(tokens)
    assert nll16.dtype == torch.float32 and log_p16.dtype == torch.float32  # log_softmax in float32
    assert nll16.mean().isfinite() and float(nll16.mean().detach()) == pytest.approx(float(loss32), rel=2e-2)
    nll16.mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.net.decoder.parameters())
    # and a real bf16-mixed training run
    bf16 = adaptive_lm(tiny_markov)
    trainer(tmp_path, max_steps=4, limit_val_batches=0, precision="bf16-mixed").fit(bf16, tiny_markov)
    assert math.isfinite(float(trainer(tmp_path, precision="bf16-mixed").validate(
        bf16, tiny_markov, verbose=False)[0]["val/loss"]))


@pytest.mark.parametrize(("cutoffs", "div_value", "match"), [
    ([], 4.0, "non-empty list of integers"),
    ([20, 8], 4.0, r"must increase strictly within \[1, vocab_size=34\)"),
    ([8, 34], 4.0, r"must increase strictly within \[1, vocab_size=34\)"),
    ([0, 8], 4.0, "must increase strictly"),
    ([8, 20], 0.5, "`adaptive_softmax_div_value` must be a number >= 1"),
    ([8, 20], 16.0, "shrinks the output layer's 12 features to 0"),
])
def test_bad_cutoffs_or_div_value_name_the_argument(cutoffs, div_value, match):
    with pytest.raises(ValueError, match=match):
        LanguageModel(vocab_size=34, embedding_dim=8, hidden_size=12, adaptive_softmax_cutoffs=cutoffs,
                      adaptive_softmax_div_value=div_value)


def test_every_parameter_gets_a_gradient_when_no_target_is_in_a_tail_cluster():
    """DDP (without ``find_unused_parameters``) reduces every parameter's gradient at every step: a rank whose
    window holds no rare word must still give its tail clusters a (zero) gradient."""
    net = RNNLanguageModelNet(40, encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
                              adaptive_softmax_cutoffs=[5, 15], adaptive_softmax_div_value=2.0)
    tokens, head_targets = torch.randint(0, 40, (2, 6)), torch.randint(0, 5, (2, 6))
    before = net.nll(net.features(tokens)[0], head_targets).detach()
    net.nll(net.features(tokens)[0], head_targets).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(p.grad.abs().sum() == 0 for p in net.decoder.tail.parameters())
    with torch.no_grad():  # the values are the layer's own
        log_p = net.decode(net.features(tokens)[0])
    torch.testing.assert_close(before, -log_p.gather(-1, head_targets[..., None])[..., 0], rtol=1e-5, atol=1e-6)


class _WindowLoss(torch.nn.Module):
    """The task's training loss of a window, as one module for DDP to wrap."""

    def __init__(self, net: RNNLanguageModelNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.net.nll(self.net.features(tokens)[0], targets).mean()


def _ddp_rank(rank: int, port: int, out: str) -> None:
    """Two SGD steps of the network under DDP (gloo); rank 1's targets are all head words."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    net = RNNLanguageModelNet(40, encoder=EncoderConfig(embedding_dim=8, hidden_size=8),
                              adaptive_softmax_cutoffs=[5, 15], adaptive_softmax_div_value=2.0)
    model, optimizer = DistributedDataParallel(_WindowLoss(net)), torch.optim.SGD(net.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(rank)
    for _ in range(2):
        tokens = torch.randint(0, 40, (2, 6), generator=generator)
        targets = torch.randint(0, 5 if rank else 40, (2, 6), generator=generator)
        optimizer.zero_grad()
        model(tokens, targets).backward()
        optimizer.step()
    torch.save(net.state_dict(), f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_ddp_steps_where_one_rank_has_no_tail_target_keep_the_ranks_equal(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)
