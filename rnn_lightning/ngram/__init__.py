"""Count-based language models, the baselines an RNN's perplexity is read against (numpy and torch, no Lightning)."""

from rnn_lightning.ngram.kneser_ney import KneserNey

__all__ = ["KneserNey"]
