"""docs/lecture.md points at tests and scripts as evidence: every one it names must exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_and_script_the_lecture_map_names_exists():
    text = (ROOT / "docs" / "lecture.md").read_text()
    named = re.findall(r"`((?:tests|benchmarks)/[\w/]+\.py)(?:::(\w+))?", text)
    assert len(named) > 10
    for path, test in named:
        assert (ROOT / path).is_file(), path
        if test:
            assert f"def {test}(" in (ROOT / path).read_text(), f"{path}::{test}"
