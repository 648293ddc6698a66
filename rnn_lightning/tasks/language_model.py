"""LanguageModel: an RNN language model trained with teacher forcing and truncated BPTT."""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from tokenizers import Tokenizer
from torch import Tensor

from rnn_lightning.compat import logging_step
from rnn_lightning.constants import IGNORE_INDEX
from rnn_lightning.data.tokenization import BOS, EOS, PAD
from rnn_lightning.functional.activation_regularization import (
    activation_regularization,
    temporal_activation_regularization,
)
from rnn_lightning.functional.cache_pointer import PointerCache, cache_pointer_log_probs
from rnn_lightning.metrics import Perplexity
from rnn_lightning.nn import EncoderConfig, RNNLanguageModelNet, detach_state
from rnn_lightning.nn.checks import check_direction, check_flag
from rnn_lightning.nn.encoder import Cell, Connection, State
from rnn_lightning.nn.sampling import check_sampling, sample_tokens
from rnn_lightning.nn.stack import map_state
from rnn_lightning.nn.transfer import copy_rows_by_word
from rnn_lightning.tasks.checkpoints import check_task
from rnn_lightning.tasks.common import RecurrentTask
from rnn_lightning.tasks.optimizers import default_optimizer
from rnn_lightning.tasks.scoring import TextScore, score_lines
from rnn_lightning.tasks.words import check_texts


def _move_state(state: State | None, device: torch.device | str) -> State | None:
    """A recurrent state (a tensor, or the LSTM's (h, c) pair) on ``device``."""
    return map_state(state, lambda s: s.to(device))


def _check_context_and_seed(context: list[int], seed: int | None, vocab_size: int) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"`seed` must be an integer or None, got {seed!r}. Pass e.g. seed=0 for a repeatable sample.")
    bad = [i for i in context if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size]
    if bad:
        raise ValueError(
            f"`context` must hold token ids in [0, vocab_size={vocab_size}), got {bad[0]!r}. Encode text with "
            "`encode_prompt(text)` (the model's tokenizer), or pass ids of the vocabulary the model was trained on."
        )


def language_model_settings(hparams: dict[str, Any]) -> dict[str, Any]:
    """A :class:`LanguageModel`'s hyperparameters (its own, or a checkpoint's), a setting they lack taking the task's
    default."""
    defaults = {name: p.default for name, p in inspect.signature(LanguageModel.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **hparams}


def language_model_net(hparams: dict[str, Any]) -> RNNLanguageModelNet:
    """The network of a :class:`LanguageModel` with these hyperparameters (see :func:`language_model_settings`)."""
    settings = language_model_settings(hparams)
    encoder = EncoderConfig.from_settings(settings, dropout=settings["dropout_between"])
    return RNNLanguageModelNet(settings["vocab_size"], encoder=encoder, tie_weights=settings["tie_weights"],
                               adaptive_softmax_cutoffs=settings["adaptive_softmax_cutoffs"],
                               adaptive_softmax_div_value=settings["adaptive_softmax_div_value"])


class _Window(NamedTuple):
    """What one window of streams gives (see ``LanguageModel._step``)."""

    targets: Tensor  # (B, T) next ids, IGNORE_INDEX where not scored
    count: Tensor  # () scored targets
    hidden: Tensor  # (B, T, H) last-layer outputs before the output dropout
    dropped: Tensor  # (B, T, H) the same after it


class LanguageModel(RecurrentTask):
    """Next-token prediction over token streams, with the hidden state carried between windows.

    Training: teacher forcing; the loss is the cross-entropy averaged over every target token of the window.
    The recurrent state is carried from one ``bptt`` window to the next of the same streams and detached
    between them (truncated BPTT); it starts from zeros at each epoch and each evaluation. Evaluation streams
    through the whole split the same way and reports perplexity = exp(mean cross-entropy).

    AWD-LSTM (Merity et al. 2017) is these options together (``recipes/lm/awd_lstm_*.yaml``): ``weight_drop``,
    ``dropout_words``, ``locked_dropout``, ``last_hidden_size`` = ``embedding_dim`` with ``tie_weights``,
    ``ar_alpha``, ``tar_beta``; with the DataModule's ``variable_bptt`` (each window's learning rate scaled by its
    length / bptt, as AWD does) and the :class:`~rnn_lightning.callbacks.NTASGD` callback. All are off by default.

    Args:
        vocab_size: number of token ids (linked from the DataModule by the CLI).
        pad_id: id of ``<pad>`` (linked from the DataModule by the CLI).
        embedding_dim: token embedding size.
        hidden_size: recurrent state size.
        num_layers: stacked recurrent layers.
        cell: ``"rnn_tanh"``, ``"rnn_relu"``, ``"gru"`` or ``"lstm"``.
        dropout_embedding: dropout on embedded inputs.
        dropout_between: dropout between stacked layers.
        dropout_output: dropout before the decoder.
        tie_weights: share input embedding and output weights (with the adaptive softmax: the head's rows of the
            ``adaptive_softmax_cutoffs[0]`` most frequent words).
        adaptive_softmax_cutoffs: ``None`` (default): the full softmax. A list: the adaptive softmax (Grave et al.
            2017) for large vocabularies, with these cluster boundaries (WikiText-103: ``[20000, 40000, 200000]``);
            ids must be ordered by decreasing frequency, as the word tokenizer's are. Its log-probabilities sum to
            one, so the loss and perplexity are exact; ``forward`` returns them in place of logits.
        adaptive_softmax_div_value: each tail cluster's projection is the previous one's size divided by this.
        bidirectional: refused with an explanation (a language model must not see the future).
        connection: how stacked layers join: ``"none"``, ``"residual"``, ``"dense"`` or ``"highway"``.
        last_hidden_size: the last layer's state size (``None``: ``hidden_size``; AWD-LSTM: ``embedding_dim``).
        weight_drop: DropConnect on the hidden-to-hidden weights in training (AWD-LSTM: 0.5).
        dropout_words: drop whole word types from the embedding in training (AWD-LSTM: 0.1).
        locked_dropout: one dropout mask per sequence on the embeddings, between layers and on the output.
        forget_bias: initial forget-gate bias of an LSTM (``None``: torch's).
        ar_alpha: activation regularisation ``alpha * mean(dropped h^2)`` added to the loss (AWD-LSTM: 2); logged
            as ``train/ar``.
        tar_beta: temporal activation regularisation ``beta * mean((h_t - h_{t-1})^2)`` (AWD-LSTM: 1); logged as
            ``train/tar``.
        cache_window: the neural cache pointer (Grave et al. 2017) over this many previous steps in ``validate`` and
            ``test`` (not in the validation inside ``fit``, whose loss checkpoints and NT-ASGD watch); 0: off.
            AWD-LSTM: 500 (PTB), 3785 (WikiText-2). Exact over the whole split, per stream (``eval_batch_size=1``
            gives one stream, as AWD's ``pointer.py``).
        cache_theta: flatness of the cache's attention (AWD-LSTM WikiText-2: 0.662; PTB: 1.0).
        cache_lambda: the cache's weight in the mixture (AWD-LSTM WikiText-2: 0.1279; PTB: 0.1).
        direction: ``"forward"`` predicts each token from the text to its left; ``"backward"`` from the text to its
            right, trained on the DataModule's reversed stream (its ``direction``, linked by the CLI; a mismatch is an
            error at setup). Stored in the checkpoint: :meth:`generate` then takes a prompt in reading order and
            returns the text that precedes it, in reading order; perplexity and ``predict`` read the reversed stream.
        init_from: a checkpoint whose weights a fresh ``fit`` starts from (AWD-LSTM's fine-tuning restarts from the
            best, averaged, model; a resumed fit takes the resumed checkpoint's). Not saved as a hyperparameter.
            When the DataModule's vocabulary is another (ULMFiT: a general LM fine-tuned on the task's text, with the
            task's words), the embedding and decoder rows are copied by word; the words the checkpoint lacks keep
            their fresh rows and are warned about and listed in ``init_missing_words``.
        optimizer: optimizer factory (from YAML: ``class_path`` + ``init_args``); default Adam lr 1e-3, which
            trains without gradient clipping: its step is about ``lr`` per weight whatever the gradient's size, where
            plain SGD's grows with it (SGD lr 20, the classic setting, diverges unless the Trainer clips the
            gradient norm, e.g. ``gradient_clip_val: 0.25``).
        lr_scheduler: optional LR scheduler factory; ``ReduceLROnPlateau`` watches ``val/loss``.

    The encoder settings (``pad_id`` to ``forget_bias``; ``dropout_between`` is the config's ``dropout``) are
    those of :class:`~rnn_lightning.nn.EncoderConfig`, documented there.

    Example:
        >>> lm = LanguageModel(vocab_size=12, embedding_dim=8, hidden_size=8, num_layers=1)
        >>> logits, state = lm(torch.randint(0, 12, (2, 5)))
        >>> tuple(logits.shape)
        (2, 5, 12)
    """

    pipeline_tag = "text-generation"

    def __init__(
        self,
        vocab_size: int,
        *,
        pad_id: int | None = 0,
        embedding_dim: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        cell: Cell = "lstm",
        dropout_embedding: float = 0.2,
        dropout_between: float = 0.2,
        dropout_output: float = 0.2,
        tie_weights: bool = False,
        adaptive_softmax_cutoffs: list[int] | None = None,
        adaptive_softmax_div_value: float = 4.0,
        bidirectional: bool = False,
        connection: Connection = "none",
        last_hidden_size: int | None = None,
        weight_drop: float = 0.0,
        dropout_words: float = 0.0,
        locked_dropout: bool = False,
        forget_bias: float | None = None,
        ar_alpha: float = 0.0,
        tar_beta: float = 0.0,
        cache_window: int = 0,
        cache_theta: float = 0.662,
        cache_lambda: float = 0.1279,
        direction: Literal["forward", "backward"] = "forward",
        init_from: str | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "init_from"])
        for name, value in (("ar_alpha", ar_alpha), ("tar_beta", tar_beta)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"`{name}` must be a number >= 0, got {value!r}. AWD-LSTM uses ar_alpha=2, "
                                 "tar_beta=1; 0 turns the term off.")
        if isinstance(cache_window, bool) or not isinstance(cache_window, int) or cache_window < 0:
            raise ValueError(f"`cache_window` must be an integer >= 0 (0: no cache pointer), got {cache_window!r}.")
        if not 0.0 <= cache_lambda <= 1.0:
            raise ValueError(f"`cache_lambda` must be in [0, 1], got {cache_lambda!r}. AWD-LSTM uses 0.1279.")
        check_direction(direction)
        self.net = language_model_net(self.hparams)
        self.val_ppl = Perplexity()
        self.test_ppl = Perplexity()
        self.tokenizer: Tokenizer | None = None
        self.init_from, self._initialised = init_from, False
        self.init_missing_words: list[str] | None = None  # see _state_for_our_vocabulary
        self._state: dict[str, State | None] = {}
        self._cache: dict[str, PointerCache | None] = {}
        self._lr_scale = 1.0

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) -> logits (B, T, V) (the adaptive softmax's log-probabilities), final state."""
        return self.net(tokens, state)

    # -- training and evaluation over streams --
    def _step(self, batch: tuple[Tensor, ...], stage: str) -> _Window:
        """Run the encoder over one window with the carried state; the output layer is the caller's."""
        inputs, targets = batch[0], batch[1]  # (B, T) each; a variable-length window also carries its lr scale
        hidden, state = self.net.features(inputs, self._state.get(stage))  # (B, T, H)
        self._state[stage] = detach_state(state)  # truncated BPTT: no gradient into earlier windows
        return _Window(targets, (targets != IGNORE_INDEX).sum(), hidden, self.net.dropout_out(hidden))

    def _nll_sum(self, window: _Window) -> Tensor:
        """() the window's summed NLL (the adaptive softmax computes only the targets' clusters)."""
        return self.net.nll(window.dropped, window.targets, reduction="sum")

    def count_tokens(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """The window's targets (every position but the ignored ones)."""
        return (batch[1] != IGNORE_INDEX).sum()

    def recurrent_encoder(self) -> torch.nn.Module:
        return self.net.encoder

    def last_step_losses(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """(B,) each stream's next-token loss at the window's last step, from the carried training state (0 where
        that target is ignored)."""
        inputs, targets = batch[0], batch[1]  # (B, T), (B, T) (a variable-length window also carries its lr scale)
        logits, _ = self.net(inputs, self._state.get("train"), last_only=True)  # (B, 1, V)
        return F.cross_entropy(logits[:, 0].float(), targets[:, -1], ignore_index=IGNORE_INDEX, reduction="none")

    def on_train_epoch_start(self) -> None:
        self._state["train"] = None  # (Lightning skips this hook when a run resumes mid-epoch)

    def _restore(self, resume: dict[str, Any]) -> None:
        # This rank's streams continue where they were (mid-epoch); its dropout masks follow the unbroken run's.
        if resume["mid_epoch"]:
            self._check_windows(resume.get("windows"))
            self._state["train"] = _move_state(resume["train_state"], self.device)
        super()._restore(resume)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        window = self._step(batch, "train")
        nll_sum, count = self._nll_sum(window), window.count
        # Mean over every target token of the *global* window. DDP averages gradients over the W ranks and the
        # ranks' token counts differ (ignored <bos> targets), so divide by the summed count / W.
        world = self.trainer.world_size
        if world > 1:
            total = self.trainer.strategy.reduce(count.clone(), reduce_op="sum")
            loss = nll_sum * world / total.clamp(min=1)
        else:
            loss = nll_sum / count.clamp(min=1)
        self.log_train_loss(loss)  # rank mean = global mean; the cross-entropy alone, comparable across models
        logging = logging_step(self.trainer)
        if logging:  # a CPU tensor: a Python float would be copied to the device at every step
            # the lr of this step: inside optimizer_step, so scaled by a variable-length window's length / bptt
            self.log("train/lr", torch.tensor(float(self.trainer.optimizers[0].param_groups[0]["lr"])))
        for name, term in self._regularisers(window).items():
            loss = loss + term
            if logging:
                self.log(f"train/{name}", term.detach())
        return loss

    def _regularisers(self, window: _Window) -> dict[str, Tensor]:
        """AWD-LSTM's AR (on the dropped-out last-layer outputs) and TAR (on them before dropout), where on."""
        terms = {}
        if self.hparams.ar_alpha:
            terms["ar"] = activation_regularization(window.dropped, self.hparams.ar_alpha)
        if self.hparams.tar_beta:
            terms["tar"] = temporal_activation_regularization(window.hidden, self.hparams.tar_beta)
        return terms

    # -- variable-length windows: AWD-LSTM scales the step's learning rate by the window's length / bptt --
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self._lr_scale = float(batch[2]) if len(batch) > 2 else 1.0  # a Python float: no device read

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        if self._lr_scale == 1.0:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        base = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * self._lr_scale
        try:  # the closure (forward, backward) runs inside the step, which reads the lr after it
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(optimizer.param_groups, base, strict=True):
                group["lr"] = lr

    def _check_direction(self) -> None:
        """The DataModule serves the text in the model's direction (one without ``direction`` serves it forward)."""
        theirs = getattr(getattr(self.trainer, "datamodule", None), "direction", "forward")
        if theirs != self.hparams.direction:
            raise ValueError(
                f"the model's `direction` is {self.hparams.direction!r} but the DataModule serves the text "
                f"{theirs!r}: a model must read the text in the direction it was built for. Give both the same "
                "`direction` (the CLI passes the DataModule's to the model)."
            )

    # -- fine-tuning: a fresh fit from another run's weights --
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._check_direction()
        if stage == "fit" and self.init_from is not None and not self._initialised:
            # once: a second fit of this model goes on from its own weights; a resumed fit loads its checkpoint over
            check_task(LanguageModel, self.init_from, base=RecurrentTask, arg="`init_from`",
                       advice="Give the path of a LanguageModel run's best .ckpt (its ModelCheckpoint folder).")
            checkpoint = torch.load(self.init_from, map_location="cpu", weights_only=True, mmap=True)
            self.load_state_dict(self._state_for_our_vocabulary(checkpoint))  # strict: the same network
            self._initialised = True

    def _state_for_our_vocabulary(self, checkpoint: dict[str, Any]) -> dict[str, Tensor]:
        """``init_from``'s weights with their vocabulary rows (embedding, decoder) moved to ours by word when the
        DataModule's vocabulary differs from the checkpoint's (ULMFiT fine-tunes a general LM on the task's own
        words); the words it lacks keep their fresh rows and are reported in :attr:`init_missing_words`."""
        state = checkpoint["state_dict"]
        if "tokenizer" not in checkpoint or self.tokenizer is None:
            return state
        theirs, ours = Tokenizer.from_str(checkpoint["tokenizer"]).get_vocab(), self.tokenizer.get_vocab()
        if theirs == ours:
            return state
        if self.hparams.adaptive_softmax_cutoffs is not None:
            raise ValueError(f"`init_from` {str(self.init_from)!r} has another vocabulary than the DataModule's, "
                             "and the adaptive softmax's clusters follow the ids: give the DataModule the "
                             "checkpoint's vocabulary (its tokenizer) or use the full softmax.")
        own, state = self.state_dict(), dict(state)
        pad = self.hparams.pad_id
        for key in ("net.embedding.weight", "net.decoder.weight", "net.decoder.bias"):  # rows = vocabulary ids
            rows = own[key].detach().clone()
            missing = copy_rows_by_word(rows, ours, state[key], theirs, skip=set() if pad is None else {pad})
            state[key] = rows
        self.init_missing_words = missing
        if self.init_missing_words:
            rank_zero_warn(f"init_from: {len(self.init_missing_words):,} of the DataModule's {len(ours):,} "
                           f"vocabulary words are not in {str(self.init_from)!r}'s vocabulary in any case (e.g. "
                           f"{self.init_missing_words[:5]}); their rows keep their fresh initialisation.")
        return state

    def _eval_start(self, stage: str) -> None:
        self._state[stage] = None
        self._cache[stage] = None

    def _eval_step(self, batch: tuple[Tensor, ...], stage: str) -> None:
        window = self._step(batch, stage)
        if self._uses_cache():  # the pointer mixes full distributions (the adaptive softmax's log_prob gives them)
            log_p, self._cache[stage] = cache_pointer_log_probs(
                self.net.decode(window.dropped), window.hidden, window.targets, self._cache[stage],
                window=self.hparams.cache_window, theta=self.hparams.cache_theta, lambdah=self.hparams.cache_lambda,
            )  # (B, T), 0 at ignored targets
            nll_sum = -log_p.sum()
        else:
            nll_sum = self._nll_sum(window)
        self._metric(stage).update(nll_sum=nll_sum, count=window.count)

    def _uses_cache(self) -> bool:
        """The cache pointer runs in ``validate`` and ``test``, not in the validation inside ``fit``."""
        return self.hparams.cache_window > 0 and self.trainer.state.fn != TrainerFn.FITTING

    def _eval_end(self, stage: str) -> None:
        metric = self._metric(stage)
        loss = metric.mean_nll()  # float64, summed over all ranks: finite where a float32 perplexity is not
        ppl = loss.exp().float()
        self.log_dict(
            {f"{stage}/loss": loss, f"{stage}/ppl": ppl, f"{stage}/bpt": loss / math.log(2)}, prog_bar=True
        )
        metric.reset()

    def uniform_loss(self) -> float:
        """``log(vocab_size)``: the loss per token of a uniform guess, the divergence stop's yardstick."""
        return math.log(self.hparams.vocab_size)

    def _metric(self, stage: str) -> Perplexity:
        return self.val_ppl if stage == "val" else self.test_ppl

    def on_validation_epoch_start(self) -> None:
        self._eval_start("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start("test")

    def on_predict_epoch_start(self) -> None:
        self._state["predict"] = None

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Per-token negative log-likelihood of the targets (B, T); NaN where there is no target."""
        inputs, targets = batch
        hidden, self._state["predict"] = self.net.features(inputs, self._state.get("predict"))  # (B, T, H)
        nll = self.net.nll(self.net.dropout_out(hidden), targets)  # (B, T)
        return {"targets": targets, "nll": nll.masked_fill(targets == IGNORE_INDEX, float("nan"))}

    # -- exact resume: each rank's carried TBPTT state travels with its RNG state --
    def _rank_state(self) -> dict[str, Any]:
        return {"train_state": _move_state(self._state.get("train"), "cpu"), "windows": self._windows(),
                **super()._rank_state()}

    def _windows(self) -> dict[str, int] | None:
        """The DataModule's ``batch_size`` and ``bptt``: how its streams are cut into windows."""
        data = getattr(self.trainer, "datamodule", None)
        if data is None or not all(isinstance(getattr(data, k, None), int) for k in ("batch_size", "bptt")):
            return None
        return {"batch_size": data.batch_size, "bptt": data.bptt}

    def _check_windows(self, saved: dict[str, int] | None) -> None:
        """Mid-epoch, the checkpoint's loader position counts windows of its ``batch_size`` streams x ``bptt``
        tokens, and its carried state has one row per stream: other values would resume elsewhere in the text."""
        ours = self._windows()
        if saved is None or ours is None or saved == ours:
            return
        raise ValueError(
            f"this run cuts the training streams into windows of batch_size={ours['batch_size']}, "
            f"bptt={ours['bptt']}, the mid-epoch checkpoint it resumes from into batch_size={saved['batch_size']}, "
            f"bptt={saved['bptt']}: its position in the epoch and its carried state would not fit. Resume with the "
            "checkpoint's batch_size and bptt (change them at an epoch boundary: resume from an end-of-epoch "
            "checkpoint), or start a fresh fit from its weights."
        )

    # -- scoring given text --
    def score(self, texts: list[str], *, carry_state: bool = False, batch_size: int = 16) -> list[TextScore]:
        """How likely each line of ``texts`` is: per-token and total log-probability, perplexity (n-best reranking,
        spotting odd sentences).

        Lines are tokenized as :class:`~rnn_lightning.LanguageModelingDataModule` tokenizes a corpus's lines
        (``<bos> tokens <eos>``; ``<eos>`` is predicted and counted, ``<bos>`` only read); an empty line scores its
        ``<eos>``. The network alone scores (no cache pointer), in eval mode. A backward model (``direction=
        "backward"``) reads each line from its end, as its DataModule serves it: ``tokens`` and ``log_probs`` come in
        that reading order, and with ``carry_state`` the last line is read first.

        Args:
            texts: the lines (a list, even of one).
            carry_state: read the lines as one text in order, each from the state the previous one left, as the
                DataModule's stream does: then the lines of a split with ``eval_batch_size=1`` give, over all their
                tokens, the perplexity ``trainer.test`` reports. ``False``: every line from a zero state.
            batch_size: lines per forward pass (padded together, or run as one sequence with ``carry_state``).

        Returns:
            A :class:`~rnn_lightning.tasks.scoring.TextScore` per line.

        Example:
            >>> from rnn_lightning.data.tokenization import train_word_tokenizer
            >>> lm = LanguageModel(vocab_size=7, embedding_dim=4, hidden_size=4, num_layers=1)
            >>> lm.tokenizer = train_word_tokenizer(["the cat sat"])
            >>> (line,) = lm.score(["the dog sat"])
            >>> line.tokens, line.num_tokens, len(line.log_probs)
            (['the', '<unk>', 'sat', '<eos>'], 4, 4)
        """
        self._require_tokenizer()
        texts = check_texts(texts, "texts")
        check_flag("carry_state", carry_state)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer (lines per forward pass), got {batch_size!r}. "
                             "Pass e.g. 16.")
        was_training = self.training
        self.eval()
        try:
            return score_lines(self.net, self.tokenizer, texts, carry_state=carry_state, batch_size=batch_size,
                               device=self.device, backward=self.hparams.get("direction") == "backward")
        finally:
            self.train(was_training)

    # -- generation --
    def generate(
        self,
        prompt: str | None = None,
        *,
        max_new_tokens: int = 50,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> str:
        """Sample a continuation of ``prompt`` (or a fresh line from ``<bos>``), stopping at ``<eos>``.

        Args:
            prompt: text to continue; ``None`` or empty starts from ``<bos>`` alone.
            max_new_tokens: most tokens to add.
            temperature: softmax temperature (> 0).
            top_k: sample among the k most likely tokens.
            top_p: sample from the smallest set of tokens with probability mass >= top_p.
            greedy: take the argmax instead of sampling.
            seed: seed for reproducible samples.
            stop_at_eos: stop at the end of the line; ``False`` goes on over several lines (e.g. for
                character models, where a line is short), up to ``max_new_tokens``.

        Returns:
            The generated text (the prompt excluded, special tokens removed, lines joined by newlines). A backward
            model (``direction="backward"``) writes leftwards: the text that precedes ``prompt``, in reading order
            (``stop_at_eos`` stops at the start of the line).
        """
        self._require_tokenizer()
        ids = self.generate_ids(
            self.encode_prompt(prompt), max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
            top_p=top_p, greedy=greedy, seed=seed, stop_at_eos=stop_at_eos,
        )
        eos, special = self.tokenizer.token_to_id(EOS), self._special_ids()
        lines, line = [], []
        for i in ids:
            if i == eos:
                lines.append(line)
                line = []
            elif i not in special:
                line.append(i)
        lines.append(line)
        if self.hparams.direction == "backward":  # generated leftwards: back to reading order
            lines = [chunk[::-1] for chunk in reversed(lines)]
        text = "\n".join(self.tokenizer.decode(chunk) for chunk in lines)
        if not stop_at_eos:
            return text
        return text.removeprefix("\n") if self.hparams.direction == "backward" else text.removesuffix("\n")

    def _require_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise RuntimeError(
                "this LanguageModel has no tokenizer: train it with a LanguageModelingDataModule or load it from "
                "a checkpoint saved by one, or set `model.tokenizer` to a tokenizers.Tokenizer."
            )

    def _special_ids(self) -> set[int]:
        return {self.tokenizer.token_to_id(t) for t in (PAD, BOS, EOS)}

    def encode_prompt(self, prompt: str | None) -> list[int]:
        """``<bos>`` followed by the prompt's ids (no ``<eos>``), in the order the model reads them (reversed for a
        backward model)."""
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(
                f"`prompt` must be a string or None, got {type(prompt).__name__}: {prompt!r:.60}. Pass the text to "
                "continue, e.g. 'the meaning of' (one prompt per call)."
            )
        ids = self.tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else []
        if self.hparams.direction == "backward":
            ids = ids[::-1]
        return [self.tokenizer.token_to_id(BOS), *ids]

    def generate_ids(
        self,
        context: list[int],
        *,
        max_new_tokens: int = 50,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> list[int]:
        """Token-level :meth:`generate`: new ids after ``context`` (the ``<eos>`` that stopped it included)."""
        check_sampling(max_new_tokens, temperature, top_k, top_p, greedy)
        _check_context_and_seed(context, seed, self.hparams.vocab_size)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        tok = self.tokenizer
        eos, bos = (tok.token_to_id(EOS), tok.token_to_id(BOS)) if tok is not None else (None, None)
        was_training = self.training
        self.eval()
        try:
            return sample_tokens(
                self.net, torch.tensor(context, device=self.device), max_new_tokens=max_new_tokens, eos_id=eos,
                temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, generator=generator,
                stop_at_eos=stop_at_eos, line_start_id=bos,
            )
        finally:
            self.train(was_training)
