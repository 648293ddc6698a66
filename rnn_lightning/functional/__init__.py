"""Pure-torch functional metrics."""

from rnn_lightning.functional.perplexity import nll_sum_and_count, perplexity, perplexity_from_nll

__all__ = ["nll_sum_and_count", "perplexity", "perplexity_from_nll"]
