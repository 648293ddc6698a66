"""Pure-torch building blocks (no Lightning imports)."""

from rnn_lightning.nn.char_encoder import CharacterEncoder
from rnn_lightning.nn.classifier import SequenceClassifierNet
from rnn_lightning.nn.config import EncoderConfig
from rnn_lightning.nn.crf import CRF
from rnn_lightning.nn.encoder import RecurrentEncoder, detach_state
from rnn_lightning.nn.language_model import RNNLanguageModelNet
from rnn_lightning.nn.output_layer import AdaptiveSoftmax
from rnn_lightning.nn.pooling import pool_states, pooled_size
from rnn_lightning.nn.sampling import filter_logits
from rnn_lightning.nn.stack import ConnectedStack
from rnn_lightning.nn.string_embeddings import ContextualStringEmbeddings
from rnn_lightning.nn.tagger import SequenceTaggerNet
from rnn_lightning.nn.unroll import unrolled

__all__ = [
    "AdaptiveSoftmax",
    "CRF",
    "CharacterEncoder",
    "ConnectedStack",
    "ContextualStringEmbeddings",
    "EncoderConfig",
    "RNNLanguageModelNet",
    "RecurrentEncoder",
    "SequenceClassifierNet",
    "SequenceTaggerNet",
    "detach_state",
    "filter_logits",
    "pool_states",
    "pooled_size",
    "unrolled",
]
