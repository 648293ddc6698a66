"""docs/lecture.md points at tests and scripts as evidence: every one it names must exist; docs/gradient_flow.md
shows its benchmark's numbers."""

import json
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


def test_the_gradient_flow_page_shows_its_benchmark_json_and_figures():
    """docs/gradient_flow.md's tables are benchmarks/results/gradient_flow.json's numbers, and its figures exist."""
    record = json.loads((ROOT / "benchmarks" / "results" / "gradient_flow.json").read_text())
    page = (ROOT / "docs" / "gradient_flow.md").read_text()
    distances = record["settings"]["distances"]
    runs = {(row["model"], row["distance"]): row for row in record["rows"]}
    for model in dict.fromkeys(row["model"] for row in record["rows"]):
        accuracy = " | ".join(f"{runs[model, d]['test_acc']:.3f}" for d in distances)
        rates = " | ".join(f"{runs[model, d]['decay_rate_init']:.3f} -> {runs[model, d]['decay_rate_trained']:.3f}"
                           for d in distances)
        assert f"| {model} | {accuracy} |" in page and f"| {model} | {rates} |" in page, model
    for figure in re.findall(r"\]\((figures/[\w.]+\.png)\)", page):
        assert (ROOT / "docs" / figure).is_file(), figure
    assert len(re.findall(r"\]\((figures/[\w.]+\.png)\)", page)) == 3
