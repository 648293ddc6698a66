"""Where the tests find the real corpora (WikiText-2, UD English EWT, CoNLL-2003, SST-2, tiny-shakespeare).

The folder ``RNN_LIGHTNING_DATA`` names, else ``data/`` in the checkout (the layout the README describes), else
``../shared/data`` beside the checkout. Each corpus sits in a folder of its public name (``wikitext-2/``, ...);
tests that need one skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _corpora() -> Path:
    named = os.environ.get("RNN_LIGHTNING_DATA")
    if named:
        return Path(named)
    for candidate in (REPO / "data", REPO.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return REPO / "data"


CORPORA = _corpora()
