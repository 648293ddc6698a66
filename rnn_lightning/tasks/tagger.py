"""SequenceTagger: one label per token (POS tagging, NER) with a (bidirectional) RNN, optionally with a CRF."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data.batching import RIGHT_PADDED
from rnn_lightning.functional import allowed_transitions, extract_spans, label_table
from rnn_lightning.functional.tag_schemes import check_scheme
from rnn_lightning.metrics import SpanF1
from rnn_lightning.nn.checks import check_flag, check_top_k
from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.crf import CRF
from rnn_lightning.nn.encoder import Cell, Connection
from rnn_lightning.nn.packing import to_device
from rnn_lightning.nn.tagger import SequenceTaggerNet
from rnn_lightning.tasks.confidences import ScoredPath, ScoredSpan, TaggedSentence
from rnn_lightning.tasks.labeled import LabeledSequenceTask
from rnn_lightning.tasks.optimizers import default_optimizer
from rnn_lightning.tasks.string_embeddings import LanguageModelSettings, task_string_embeddings
from rnn_lightning.tasks.words import split_texts


class SequenceTagger(LabeledSequenceTask):
    """Token-level tagging: cross-entropy averaged over the real tokens of a batch, or a CRF's likelihood.

    Logs ``train/loss``, and for validation and test ``loss``, token accuracy ``acc`` and, when the tags mark
    spans (``span_scheme`` set), span-level ``f1``, ``precision`` and ``recall`` as conlleval computes them. Every
    metric sums its counts over all processes, each sentence counted once.

    Args:
        vocab_size: number of token ids (linked from the DataModule by the CLI).
        num_labels: number of tags (linked).
        pad_id: padding id (linked).
        labels: tag names in id order (linked); stored in the checkpoint, used by :meth:`tag` and span F1.
        span_scheme: span scheme of ``labels`` (``"IOB1"``, ``"IOB2"``, ``"IOBES"``, ``"BILOU"``; linked from the
            DataModule's ``scheme``); ``None`` for tags without spans (POS).
        unk_id: ``<unk>`` id (linked).
        embedding_dim: token embedding size.
        hidden_size: recurrent state size per direction.
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        bidirectional: read each sentence in both directions.
        dropout: dropout on embeddings, between layers and before the output layer.
        connection: how stacked layers join: ``"none"``, ``"residual"``, ``"dense"`` or ``"highway"``.
        pretrained_embeddings: a GloVe / word2vec / fastText text file whose vectors initialise the word embeddings
            (see :class:`~rnn_lightning.tasks.pretrained.PretrainedEmbeddings`).
        word_dropout: in training, replace each token by ``<unk>`` with this probability.
        forget_bias: initial forget-gate bias of an LSTM (``None``: torch's).
        char_vocab: the DataModule's character vocabulary (linked when it has ``char_features``): adds a character
            BiRNN vector to each word's embedding; stored in the checkpoint.
        char_embedding_dim: character embedding size.
        char_hidden_size: character BiRNN state size per direction.
        lm_checkpoints: a forward and a backward character :class:`~rnn_lightning.LanguageModel` checkpoint (either
            order): their contextual string embeddings (Akbik et al. 2018, see
            :class:`~rnn_lightning.nn.ContextualStringEmbeddings`) join each word's embedding (``embedding_dim: 0``:
            they replace it). The DataModule must serve the words (``serve_words: true``). The models' settings,
            vocabularies and weights are copied into this tagger, whose checkpoint then needs no LM file.
        string_embeddings_trainable: fine-tune the language models with the tagger (``False``: frozen, in eval
            mode, weights unchanged; Lightning's note on modules in eval mode at the start of training means them).
        string_embeddings_cache: keep each sentence's string embeddings once computed (frozen language models only),
            so after the first epoch training runs the language models only on sentences not seen yet; memory grows
            by 4 bytes x the features' width per distinct word position read.
        lm_settings: filled in from ``lm_checkpoints`` and saved in the checkpoint (leave it ``None``).
        crf: decode with a linear-chain CRF (trained by its likelihood; with ``span_scheme`` the moves the scheme
            forbids, such as ``O -> I-PER`` in IOB2, are never decoded).
        discriminative_lr: train each layer group (input layer, each recurrent layer, the head with the CRF) at the
            rate of the group above divided by this (ULMFiT: 2.6; ``None``: one rate).
        optimizer: optimizer factory (YAML ``class_path`` + ``init_args``); default Adam lr 1e-3.
        lr_scheduler: optional LR scheduler factory; ``ReduceLROnPlateau`` watches ``val/loss``.

    The encoder settings (``embedding_dim`` to ``forget_bias``, the character sizes, ``pad_id``, ``unk_id``) are
    those of :class:`~rnn_lightning.nn.EncoderConfig`, documented there.

    Example:
        >>> tagger = SequenceTagger(vocab_size=20, num_labels=3, labels=["B-X", "I-X", "O"], span_scheme="IOB2")
        >>> tuple(tagger(torch.randint(1, 20, (2, 5)), torch.tensor([5, 3])).shape)
        (2, 5, 3)
    """

    pipeline_tag = "token-classification"

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        *,
        pad_id: int = 0,
        labels: list[str] | None = None,
        span_scheme: str | None = None,
        unk_id: int = 1,
        embedding_dim: int = 100,
        hidden_size: int = 100,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
        connection: Connection = "none",
        pretrained_embeddings: str | None = None,
        word_dropout: float = 0.0,
        forget_bias: float | None = None,
        char_vocab: list[str] | None = None,
        char_embedding_dim: int = 25,
        char_hidden_size: int = 25,
        lm_checkpoints: list[str] | None = None,
        string_embeddings_trainable: bool = False,
        string_embeddings_cache: bool = False,
        lm_settings: dict[str, LanguageModelSettings] | None = None,
        crf: bool = False,
        discriminative_lr: float | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(num_labels=num_labels, labels=labels, char_vocab=char_vocab,
                         pretrained_embeddings=pretrained_embeddings, optimizer=optimizer, lr_scheduler=lr_scheduler)
        if span_scheme is not None and labels is None:
            raise ValueError(f"`span_scheme={span_scheme!r}` needs the tag names: pass `labels` (one per tag id).")
        check_scheme("span_scheme", span_scheme)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        num_chars = len(char_vocab) if char_vocab is not None else None
        encoder = EncoderConfig.from_settings(self.hparams, num_chars=num_chars)
        strings = task_string_embeddings(self.hparams)
        self.net = SequenceTaggerNet(vocab_size, num_labels, encoder=encoder, strings=strings)
        self.crf = None
        if crf:
            masks = allowed_transitions(labels, span_scheme) if span_scheme else (None, None, None)
            self.crf = CRF(num_labels, masks[1], allowed_start=masks[0], allowed_end=masks[2])
        self.span_scheme = span_scheme
        self.metrics = torch.nn.ModuleDict({
            stage: torch.nn.ModuleDict({
                "loss": MeanMetric(),
                "acc": MulticlassAccuracy(num_labels, average="micro", ignore_index=IGNORE_INDEX),
                **({"f1": SpanF1(labels)} if span_scheme else {}),
            })
            for stage in ("val", "test")
        })

    def word_embedding(self) -> torch.nn.Embedding:
        return self.net.body.embedding

    def forward(
        self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None, char_lengths: Tensor | None = None,
        words: list[list[str]] | None = None,
    ) -> Tensor:
        """tokens (B, T), lengths (B,), chars (B, T, L) with character features, char_lengths (B, T) optional, words
        (B lists of strings) with ``lm_checkpoints`` -> label scores (B, T, C). Lengths belong on the CPU: on a GPU,
        packing first copies them back (a wait)."""
        return self.net(tokens, lengths, chars, char_lengths, words)

    def _scores(self, batch: dict[str, Tensor]) -> Tensor:
        return self(batch["tokens"], batch["lengths"], batch.get("chars"), batch.get("char_lengths"),
                    batch.get("words"))

    def _loss(self, scores: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Mean negative log-likelihood per real token of ``batch["tags"]``.

        The CRF checks the tags and their mask on the host (for a GPU, a wait at every step) unless the batch says
        it was right-padded by :func:`~rnn_lightning.data.batching.pad_batch` (``RIGHT_PADDED``), as our
        DataModules' batches are: padded that way, the tags are what the check asks for by construction."""
        tags = batch["tags"]
        if self.crf is None:
            return F.cross_entropy(scores.flatten(0, 1).float(), tags.flatten(), ignore_index=IGNORE_INDEX)
        checked = not batch.get(RIGHT_PADDED, False)
        return self.crf(scores, tags, tags != IGNORE_INDEX, reduction="token_mean", check_values=checked)

    def last_step_losses(self, batch: dict[str, Tensor]) -> Tensor:
        """(B,) each sentence's cross-entropy at its last real token, from the label scores (the CRF's transitions
        left out: they couple the steps, so the last step has no loss of its own)."""
        scores = self._scores(batch)  # (B, T, C)
        rows = torch.arange(len(scores), device=scores.device)
        last = to_device(batch["lengths"], scores.device) - 1  # (B,)
        return F.cross_entropy(scores[rows, last].float(), batch["tags"][rows, last], ignore_index=IGNORE_INDEX,
                               reduction="none")

    def decode(self, scores: Tensor, mask: Tensor) -> Tensor:
        """Best tag ids (B, T): Viterbi with a CRF, else the argmax per token."""
        return self.crf.decode(scores, mask) if self.crf is not None else scores.argmax(-1)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(self._scores(batch), batch)
        self.log_train_loss(loss, batch_size=len(batch["lengths"]))
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        tags = batch["tags"]
        mask = tags != IGNORE_INDEX
        scores = self._scores(batch)
        preds = self.decode(scores, mask)
        metrics = self.metrics[stage]
        metrics["loss"].update(self._loss(scores, batch), weight=mask.sum())
        metrics["acc"].update(preds, tags)
        if "f1" in metrics:
            metrics["f1"].update(preds, tags, mask)

    def _eval_end(self, stage: str) -> None:
        metrics = self.metrics[stage]
        values = {f"{stage}/loss": metrics["loss"].compute(), f"{stage}/acc": metrics["acc"].compute()}
        if "f1" in metrics:
            report = metrics["f1"].report()
            values.update({f"{stage}/{k}": torch.tensor(report[k]) for k in ("f1", "precision", "recall")})
        self.log_dict(values, prog_bar=True)
        for metric in metrics.values():
            metric.reset()

    def tag_probabilities(self, scores: Tensor, mask: Tensor) -> Tensor:
        """(B, T, C) each token's tag probabilities: the CRF's marginals (forward-backward over all allowed paths),
        else the softmax of the label scores (B, T, C); float32 (float64 for a double model)."""
        if self.crf is not None:
            return self.crf.marginals(scores, mask)
        return torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1)

    def predict_batch(
        self, batch: dict[str, Tensor], *, scores: bool = False, top_k: int | None = None
    ) -> list[list[str]] | list[TaggedSentence]:
        """The predicted tag names of each sentence of the batch; with ``scores`` (or ``top_k``) each sentence's
        :class:`~rnn_lightning.tasks.confidences.TaggedSentence`: tags, token and span probabilities, k best paths."""
        check_top_k(top_k)
        if top_k is not None and self.crf is None:
            raise ValueError(
                f"`top_k={top_k}` asks for the k best tag paths, which a tagger without a CRF does not rank: its "
                "tokens' tags are independent. Train the tagger with `crf=True`, or drop `top_k` and pass "
                "`return_scores=True` (WritePredictions: `scores=True`) for each token's probabilities."
            )
        lengths, tokens = batch["lengths"], batch["tokens"]
        mask = torch.arange(tokens.shape[1], device=tokens.device) < to_device(lengths, tokens.device)[:, None]
        emissions = self._scores(batch)  # (B, T, C)
        preds = self.decode(emissions, mask)  # (B, T)
        sizes = lengths.tolist()
        tags = [[self._label(i) for i in row[:n]] for row, n in zip(preds.tolist(), sizes)]
        if not scores and top_k is None:
            return tags
        chosen = self.tag_probabilities(emissions, mask).gather(2, preds.unsqueeze(2)).squeeze(2)  # (B, T)
        probabilities = [row[:n] for row, n in zip(chosen.tolist(), sizes)]
        spans = self._scored_spans(emissions, preds, mask, probabilities) if self.span_scheme else None
        paths = self._best_paths(emissions, mask, top_k, sizes) if top_k is not None else None
        return [
            TaggedSentence(tags[b], probabilities[b], None if spans is None else spans[b],
                           None if paths is None else paths[b])
            for b in range(len(tags))
        ]

    def _scored_spans(
        self, emissions: Tensor, preds: Tensor, mask: Tensor, probabilities: list[list[float]]
    ) -> list[list[ScoredSpan]]:
        """Each sentence's predicted spans (conlleval's rules, as span F1 reads them) with their probabilities."""
        prefixes, types, type_names = label_table(self.labels)
        found = extract_spans(preds, mask, prefixes.to(preds.device), types.to(preds.device))  # (N, 4)
        if self.crf is not None:
            span_probs = self.crf.span_probabilities(emissions, preds, found, mask).tolist()  # (N,)
        else:  # independent tokens: the probability of the span's tags is the product of its tokens'
            span_probs = [math.prod(probabilities[b][s : e + 1]) for b, s, e, _ in found.tolist()]
        spans: list[list[ScoredSpan]] = [[] for _ in probabilities]
        for (b, s, e, t), p in zip(found.tolist(), span_probs):
            spans[b].append(ScoredSpan(s, e, type_names[t], p))
        return spans

    def _best_paths(self, emissions: Tensor, mask: Tensor, k: int, sizes: list[int]) -> list[list[ScoredPath]]:
        """Each sentence's ``k`` best allowed tag paths (fewer if it has fewer), best first, with probabilities."""
        paths, log_probs = self.crf.decode_top_k(emissions, mask, k=k)  # (B, k, T), (B, k)
        return [
            [ScoredPath([self._label(i) for i in path[:n]], math.exp(lp)) for path, lp in zip(rows, lps)
             if lp != -math.inf]
            for rows, lps, n in zip(paths.tolist(), log_probs.tolist(), sizes)
        ]

    def _label(self, i: int) -> str:
        return self.labels[i] if self.labels is not None else str(i)

    def tag(
        self, sentences: list[str] | list[list[str]], *, return_scores: bool = False, top_k: int | None = None
    ) -> list[list[str]] | list[TaggedSentence]:
        """Tag sentences given as whitespace-separated strings or token lists.

        Args:
            sentences: the sentences (a list, even of one).
            return_scores: return a :class:`~rnn_lightning.tasks.confidences.TaggedSentence` per sentence: the
                tags, each token's probability of its tag and, with a span scheme, each span's probability.
            top_k: also the ``top_k`` best tag paths with their probabilities (a CRF tagger only; implies
                ``return_scores``).

        Returns:
            The tag names of each sentence, or with ``return_scores`` / ``top_k`` a ``TaggedSentence`` each.
        """
        options = {"scores": check_flag("return_scores", return_scores), "top_k": top_k}
        return self.predict_words(split_texts(sentences, "sentences", token_lists=True), "sentences", **options)

