"""A 10M-token split trains and evaluates in memory linear in its length, with a small constant."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Measured 44 bytes per token (2-core CPU, 2 x 10M tokens): the generated lines as Python strings and arrow
# text, the ids (int64 inputs + targets); activations are bounded by batch x bptt, whatever the split length.
BYTES_PER_TOKEN_BOUND = 64


@pytest.mark.slow
def test_ten_million_token_splits_stay_within_the_memory_bound():
    tokens = 10_000_000
    out = subprocess.run([sys.executable, str(HERE / "long_input_run.py"), str(tokens)], capture_output=True,
                         text=True, timeout=900, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    grew = (result["peak_mb"] - result["base_mb"]) * 2**20
    print(result, f"{grew / (2 * tokens):.1f} bytes per token")
    assert grew < BYTES_PER_TOKEN_BOUND * 2 * tokens  # two 10M-token splits (train and validation)
    assert 1 < result["val_ppl"] < 250  # evaluated over the whole split: a finite perplexity
