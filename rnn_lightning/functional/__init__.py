"""Pure-torch functional metrics and tag-scheme utilities."""

from rnn_lightning.functional.perplexity import mean_nll, nll_sum_and_count, perplexity, perplexity_from_nll
from rnn_lightning.functional.span_f1 import (
    AVERAGES,
    STRICT_SCHEMES,
    extract_spans,
    label_table,
    span_counts,
    span_f1_from_counts,
    tags_to_ids,
)
from rnn_lightning.functional.tag_schemes import allowed_transitions, check_tag_sequence, convert_tags

__all__ = [
    "AVERAGES",
    "STRICT_SCHEMES",
    "allowed_transitions",
    "check_tag_sequence",
    "convert_tags",
    "extract_spans",
    "label_table",
    "mean_nll",
    "nll_sum_and_count",
    "perplexity",
    "perplexity_from_nll",
    "span_counts",
    "span_f1_from_counts",
    "tags_to_ids",
]
