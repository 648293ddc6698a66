"""MarkovCorpusDataModule: the offline default corpus, a synthetic language of known perplexity."""

from __future__ import annotations

import math
from typing import Literal

from rnn_lightning.data.language_modeling import LanguageModelingDataModule
from rnn_lightning.data.markov import MarkovSource, markov_corpus


class MarkovCorpusDataModule(LanguageModelingDataModule):
    """Language modeling on lines sampled from a random sparse Markov source (no download).

    The source's true perplexity is known, so a model's validation perplexity can be compared with the
    best any model can reach (:meth:`reference_perplexity`).

    Args:
        num_words: words of the synthetic language (the tokenizer adds 4 special tokens).
        branching: successors per word (sparsity of the transition matrix).
        mean_line_length: mean words per line.
        concentration: Dirichlet concentration of the transition weights (lower: more peaked).
        train_tokens: tokens sampled for the train split (``<eos>`` counted).
        validation_tokens: tokens for the validation split.
        test_tokens: tokens for the test split.
        seed: seed of the source and of the samples.
        batch_size: streams per device for training.
        eval_batch_size: streams per device for evaluation.
        bptt: window length for truncated BPTT.
        variable_bptt: training windows of AWD-LSTM's varying lengths (see
            :class:`~rnn_lightning.data.LanguageModelingDataModule`).
        direction: ``"backward"``: the text read from its end, for a backward language model (see
            :class:`~rnn_lightning.data.LanguageModelingDataModule`).

    Example:
        >>> dm = MarkovCorpusDataModule(num_words=30, train_tokens=2000, validation_tokens=500, test_tokens=500)
        >>> dm.vocab_size
        34
        >>> 1.0 < dm.reference_perplexity("validation") < 30.0
        True
    """

    def __init__(
        self,
        num_words: int = 200,
        *,
        branching: int = 8,
        mean_line_length: float = 12.0,
        concentration: float = 0.5,
        train_tokens: int = 300_000,
        validation_tokens: int = 30_000,
        test_tokens: int = 30_000,
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 16,
        bptt: int = 35,
        variable_bptt: bool = False,
        direction: Literal["forward", "backward"] = "forward",
    ) -> None:
        source = MarkovSource.random(num_words, branching=branching, mean_line_length=mean_line_length,
                                     concentration=concentration, seed=seed)
        corpus = markov_corpus(source, train_tokens=train_tokens, validation_tokens=validation_tokens,
                               test_tokens=test_tokens, seed=seed)
        super().__init__(dataset=corpus, batch_size=batch_size, eval_batch_size=eval_batch_size, bptt=bptt,
                         variable_bptt=variable_bptt, direction=direction)
        self.source = source

    def reference_perplexity(self, split: str = "validation") -> float:
        """The source's own perplexity on the tokens of ``split``: exp(its NLL / tokens)."""
        total, count = self.source.nll(self._split(split)["text"])
        return math.exp(total / count)

    def fit_report(self) -> list[str]:
        """What ``rnn-lightning fit`` prints after training (``rnn_lightning.cli.FitReport``): the best any model
        can reach on the validation tokens, to read the model's validation perplexity against."""
        return [f"source perplexity on the same validation tokens: {self.reference_perplexity('validation'):.3f} "
                f"(entropy rate: {self.source.perplexity():.3f})"]
