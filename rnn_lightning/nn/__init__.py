"""Pure-torch building blocks (no Lightning imports)."""

from rnn_lightning.nn.encoder import RecurrentEncoder, detach_state
from rnn_lightning.nn.language_model import RNNLanguageModelNet
from rnn_lightning.nn.sampling import filter_logits

__all__ = ["RecurrentEncoder", "RNNLanguageModelNet", "detach_state", "filter_logits"]
