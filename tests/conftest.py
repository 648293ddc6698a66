"""Shared fixtures: a tiny synthetic corpus and a tiny language model."""

import os

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# One intra-op thread (unless set): the models here are tiny, and on a busy machine a second OpenMP thread waits
# at every barrier for a core someone else holds, slowing the suite severalfold. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# No property test may fail because the machine is busy: no per-example deadline, no "data generation too slow".
settings.register_profile("no_timing", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("no_timing")


@pytest.fixture
def tiny_markov():
    from rnn_lightning import MarkovCorpusDataModule

    return MarkovCorpusDataModule(num_words=30, branching=4, train_tokens=3000, validation_tokens=800,
                                  test_tokens=800, batch_size=4, eval_batch_size=3, bptt=7)


@pytest.fixture
def tiny_lm():
    def make(dm, **kwargs):
        from rnn_lightning import LanguageModel

        defaults = dict(embedding_dim=8, hidden_size=12, num_layers=2, dropout_embedding=0.0,
                        dropout_between=0.0, dropout_output=0.0)
        return LanguageModel(vocab_size=dm.vocab_size, pad_id=dm.pad_id, **{**defaults, **kwargs})

    return make


def trainer(tmp_path, **kwargs):
    import lightning as L

    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return L.Trainer(**{**defaults, **kwargs})
