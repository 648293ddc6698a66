"""Scoring given text with a language model: each line's log-probability, tokenized as the DataModule's stream."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from rnn_lightning.data.tokenization import encode_lines
from rnn_lightning.nn.encoder import State


@dataclass(frozen=True)
class TextScore:
    """How likely a language model finds one line of text.

    Attributes:
        tokens: the predicted tokens: the line's tokens (``<unk>`` for words outside the vocabulary), then ``<eos>``
            (``<bos>``, the start symbol, is read but never predicted, as in the DataModule's stream).
        log_probs: each token's natural-log probability given the tokens before it.
        total_log_prob: their sum, the line's log-probability.
        num_tokens: ``len(tokens)``.
        perplexity: ``exp(-total_log_prob / num_tokens)``.
    """

    tokens: list[str]
    log_probs: list[float]
    total_log_prob: float
    num_tokens: int
    perplexity: float

    @classmethod
    def of(cls, tokens: list[str], log_probs: list[float]) -> TextScore:
        total = math.fsum(log_probs)
        return cls(tokens, log_probs, total, len(tokens), math.exp(-total / len(tokens)))


@torch.no_grad()
def score_lines(
    net: nn.Module, tokenizer: Tokenizer, texts: list[str], *, carry_state: bool, batch_size: int,
    device: torch.device, backward: bool = False,
) -> list[TextScore]:
    """Score ``texts`` with ``net`` (an :class:`~rnn_lightning.nn.RNNLanguageModelNet`, in eval mode).

    Each line is encoded as the DataModule encodes it (``<bos> ids <eos>``, :func:`encode_lines`). Without
    ``carry_state`` every line starts from a zero state, ``batch_size`` lines padded into one batch. With it the
    lines form one stream in order, as the DataModule's stream with a single stream (``eval_batch_size=1``): each
    line starts from the state after the previous line's ``<eos>``, and ``batch_size`` consecutive lines run as one
    sequence. ``backward``: a backward model's reading, each line ``<bos> xn .. x1 <eos>`` and, with
    ``carry_state``, the last line first (:func:`~rnn_lightning.data.language_modeling.reverse_lines`).
    """
    lines = encode_lines(tokenizer, pa.array(texts, pa.string())).to_pylist()  # each [<bos>, ids..., <eos>]
    if not backward:
        return _score(net, tokenizer, lines, carry_state=carry_state, batch_size=batch_size, device=device)
    lines = [line[:1] + line[-2:0:-1] + line[-1:] for line in lines]  # each <bos> xn .. x1 <eos>
    order = -1 if carry_state else 1  # a carried state runs from the last line to the first
    scores = _score(net, tokenizer, lines[::order], carry_state=carry_state, batch_size=batch_size, device=device)
    return scores[::order]


def _score(
    net: nn.Module, tokenizer: Tokenizer, lines: list[list[int]], *, carry_state: bool, batch_size: int,
    device: torch.device,
) -> list[TextScore]:
    """The scores of encoded ``lines`` (each ``[<bos>, ids..., <eos>]``) read in the given order."""
    scores: list[TextScore] = []
    state: State | None = None
    for first in range(0, len(lines), batch_size):
        chunk = lines[first : first + batch_size]
        if carry_state:
            stream = torch.tensor([[i for line in chunk for i in line]], device=device)  # (1, N)
            logits, state = net(stream, state)  # (1, N, V); the state after the last <eos> goes on
            log_probs = _target_log_probs(logits, stream[:, 1:])[0]  # (N - 1,): position t predicts t + 1
            starts = [0]
            for line in chunk:
                starts.append(starts[-1] + len(line))
            rows = [log_probs[s : e - 1] for s, e in zip(starts, starts[1:])]  # the line's own targets
        else:
            width = max(map(len, chunk))
            padded = torch.tensor([line + [0] * (width - len(line)) for line in chunk], device=device)  # (B, W)
            logits, _ = net(padded[:, :-1])  # (B, W - 1, V); right padding: no real step reads it
            log_probs = _target_log_probs(logits, padded[:, 1:])  # (B, W - 1)
            rows = [row[: len(line) - 1] for row, line in zip(log_probs, chunk)]
        for line, row in zip(chunk, rows):
            scores.append(TextScore.of([tokenizer.id_to_token(i) for i in line[1:]], row.tolist()))
    return scores


def _target_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """(B, T, V) logits, (B, T) targets -> (B, T) log-probabilities of the targets (float32, or float64)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.log_softmax(logits, dim=-1).gather(2, targets.unsqueeze(2)).squeeze(2)
