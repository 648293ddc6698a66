"""Values every layer agrees on. This module imports nothing, so any layer may import it."""

IGNORE_INDEX = -100
"""Target id that losses and metrics skip: padding, and positions with nothing to predict (torch's default)."""
DIRECTIONS = ("forward", "backward")  # the reading direction of a language model and its data
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"  # the special tokens of every vocabulary here
