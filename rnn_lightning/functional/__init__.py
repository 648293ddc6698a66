"""Pure-torch functional metrics and tag-scheme utilities."""

from rnn_lightning.functional.gradient_flow import (
    GradientFlow,
    decay_rate,
    measure_gradient_flow,
    norms_by_distance,
    spectral_radii,
)
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
    "GradientFlow",
    "AVERAGES",
    "STRICT_SCHEMES",
    "allowed_transitions",
    "check_tag_sequence",
    "convert_tags",
    "decay_rate",
    "extract_spans",
    "label_table",
    "mean_nll",
    "measure_gradient_flow",
    "nll_sum_and_count",
    "norms_by_distance",
    "perplexity",
    "perplexity_from_nll",
    "span_counts",
    "span_f1_from_counts",
    "spectral_radii",
    "tags_to_ids",
]
