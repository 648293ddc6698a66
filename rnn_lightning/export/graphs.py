"""The exported graphs: each task's inference as a module of plain tensors in and out, with no packing.

Each module states its inputs and outputs (``INPUTS``, ``OUTPUTS``: names with their shapes and dtypes) for the
manifest and for the ONNX graph's names and dynamic axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnn_lightning.export.unpacked import UnpackedCharEncoder, unpacked
from rnn_lightning.export.viterbi import viterbi
from rnn_lightning.nn.embedder import EmbedEncode
from rnn_lightning.nn.pooling import pool_states

Spec = tuple[str, tuple[str, ...], str]  # name, shape (axis names or sizes), dtype


class _Body(nn.Module):
    """:class:`~rnn_lightning.nn.embedder.EmbedEncode` in eval mode without packing: tokens (B, T), lengths (B,),
    chars (B, T, L) if it reads characters -> states (B, T, H * directions), zeros at padded steps."""

    def __init__(self, body: EmbedEncode) -> None:
        super().__init__()
        if body.strings is not None:
            raise ValueError("`model` reads contextual string embeddings (`lm_checkpoints`): its language models read "
                             "each sentence as a string, which the exported graphs (token ids in) do not take. Export "
                             "a model without `lm_checkpoints`, or use it in Python (`tag()` / `classify()`).")
        self.embedding, self.rnn = body.embedding, unpacked(body.encoder.rnn)
        self.chars = UnpackedCharEncoder(body.chars) if body.chars is not None else None

    def forward(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None) -> Tensor:
        x = self.embedding(tokens)  # (B, T, E)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars)], dim=-1)  # (B, T, E + 2 * char_hidden_size)
        return self.rnn(x, lengths)  # (B, T, H * directions)


class TaggerGraph(nn.Module):
    """tokens (B, T), lengths (B,)[, chars (B, T, L)] -> emissions (B, T, C) and the decoded tags (B, T): Viterbi
    with the CRF's masks (the scheme's forbidden moves never decoded), else the argmax per token; 0 on padding."""

    def __init__(self, tagger: nn.Module) -> None:
        super().__init__()
        self.body, self.scorer, self.crf = _Body(tagger.net.body), tagger.net.scorer, tagger.crf
        chars = (("chars", ("batch", "steps", "chars"), "int64"),) if self.body.chars is not None else ()
        self.INPUTS: tuple[Spec, ...] = (("tokens", ("batch", "steps"), "int64"), ("lengths", ("batch",), "int64"),
                                         *chars)
        self.OUTPUTS: tuple[Spec, ...] = (("emissions", ("batch", "steps", "labels"), "float32"),
                                          ("tags", ("batch", "steps"), "int64"))

    def forward(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None) -> tuple[Tensor, Tensor]:
        emissions = self.scorer(self.body(tokens, lengths, chars))  # (B, T, C)
        mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths.unsqueeze(1)  # (B, T)
        if self.crf is None:
            return emissions, emissions.argmax(-1).masked_fill(~mask, 0)
        start, transitions, end = self.crf._scores(emissions.dtype, float("-inf"))  # forbidden moves at -inf
        return emissions, viterbi(emissions, mask, start, transitions, end)


class ClassifierGraph(nn.Module):
    """tokens (B, T), lengths (B,) -> class logits (B, C) and probabilities (B, C)."""

    INPUTS: tuple[Spec, ...] = (("tokens", ("batch", "steps"), "int64"), ("lengths", ("batch",), "int64"))
    OUTPUTS: tuple[Spec, ...] = (("logits", ("batch", "labels"), "float32"),
                                 ("probabilities", ("batch", "labels"), "float32"))

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        net = classifier.net
        self.body, self.classifier = _Body(net.body), net.classifier
        self.pooling, self.bidirectional = net.pooling, net.bidirectional

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        states = self.body(tokens, lengths)  # (B, T, H * directions)
        logits = self.classifier(pool_states(states, lengths, self.pooling, self.bidirectional))  # (B, C)
        return logits, logits.softmax(-1)


class LanguageModelStep(nn.Module):
    """One generation step: tokens (B, 1), the state h (L, B, H) [and c for an LSTM] -> next-token logits (B, V) and
    the new state. Feed the prompt one token at a time from a zero state, then each chosen token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.net = model.net
        encoder = self.net.encoder
        layers = encoder.num_layers
        self.lstm = encoder.cell == "lstm"
        width = max(encoder.hidden_size, encoder.last_hidden_size)  # the carried state's rows are zero-padded to it
        self.state_shape = (layers, width)
        state = ("h", "c") if self.lstm else ("h",)
        self.INPUTS: tuple[Spec, ...] = (("tokens", ("batch", 1), "int64"),
                                         *((name, (layers, "batch", width), "float32") for name in state))
        self.OUTPUTS: tuple[Spec, ...] = (("logits", ("batch", "vocab"), "float32"),
                                          *((f"{name}_out", (layers, "batch", width), "float32") for name in state))

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, ...]:
        logits, state = self.net(tokens, (h, c) if self.lstm else h, last_only=True)  # (B, 1, V)
        return (logits.squeeze(1), *state) if self.lstm else (logits.squeeze(1), state)

    def initial_state(self, batch: int = 1) -> tuple[Tensor, ...]:
        """The zero state the step starts from (what ``None`` means to the eager model)."""
        layers, width = self.state_shape
        return tuple(torch.zeros(layers, batch, width) for _ in range(2 if self.lstm else 1))
