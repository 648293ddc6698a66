"""Each private API that ``rnn_lightning.compat`` wraps still behaves as the wrapper expects."""

# ---------------------------------------------------------------- Lightning


# ---------------------------------------------------------------- datasets


# ---------------------------------------------------------------- torchmetrics
