"""The model card (``README.md``) of a saved task: what it does, its architecture, the data and recipe it was trained
with and its measured metrics, under the Hub's YAML metadata (library, pipeline, tags, data, results)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

LIBRARY = "rnn-lightning"  # the package's name: the Hub's `library_name`
USAGE = {  # what a user runs after loading, by the task's pipeline tag
    "text-generation": 'print(model.generate("the", max_new_tokens=20, seed=0))',
    "token-classification": 'print(model.tag(["a sentence to tag"]))',
    "text-classification": 'print(model.classify(["a text to classify"]))',
}
_LONG = ("labels", "char_vocab")  # lists shown in their own lines, not in the settings table


def model_card(
    task: Any,
    hparams: dict[str, Any],
    *,
    where: str,
    metrics: dict[str, Any] | None = None,
    dataset: str | None = None,
    recipe: str | Path | None = None,
    license: str | None = None,
) -> ModelCard:
    """The card of ``task`` (saved with ``hparams``), loaded from ``where`` (a folder or repo id).

    ``metrics`` default to the validation and test values its trainer logged; ``recipe`` (the LightningCLI config
    file it was trained with) to the ``config.yaml`` the CLI saved in the trainer's log folder; ``dataset`` (a Hub
    dataset id, or any description) has no default. What is unknown is said to be unknown."""
    name = type(task).__name__
    pipeline = getattr(task, "pipeline_tag", None)
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"`metrics` must be a dict of metric name -> number, got {type(metrics).__name__} "
                        f"{metrics!r:.60}. Pass e.g. {{'val/ppl': 120.5}}, or None for what the trainer logged.")
    metrics = _metrics(task) if metrics is None else {key: _number(key, value) for key, value in metrics.items()}
    recipe_text = _recipe(task, recipe)
    data = ModelCardData(
        library_name=LIBRARY, pipeline_tag=pipeline, license=license, model_name=where,
        tags=sorted({"rnn_lightning", "pytorch", "lightning", str(hparams.get("cell", "rnn"))}
                    | ({"crf"} if hparams.get("crf") else set())),
        datasets=[dataset] if dataset else None,
        eval_results=[EvalResult(task_type=pipeline or "other", dataset_type=dataset, dataset_name=dataset,
                                 metric_type=key, metric_value=value) for key, value in metrics.items()]
        if dataset and metrics else None,
    )
    params = sum(p.numel() for p in task.parameters())
    vocab = task.tokenizer.get_vocab_size() if getattr(task, "tokenizer", None) is not None else None
    words = f"a vocabulary of {vocab:,} tokens (`tokenizer.json`)" if vocab else "no tokenizer saved"
    lists = "".join(f"\n- `{key}` ({len(hparams[key])}): {', '.join(map(str, hparams[key]))}"
                    for key in _LONG if hparams.get(key) is not None)
    settings = "\n".join(f"| `{key}` | `{json.dumps(value)}` |" for key, value in hparams.items() if key not in _LONG)
    summary = (type(task).__doc__ or "").strip().split("\n")[0]
    recipe_block = (f"```yaml\n{recipe_text.strip()}\n```" if recipe_text else
                    "Not recorded (pass `recipe=`: the config file of `rnn-lightning fit`).")
    results = (_table(metrics) if metrics else
               "Not recorded (pass `metrics=`, or save while the trainer that evaluated it is attached).")
    body = f"""
# {name}

An `rnn_lightning` {name}. {summary}

## Use

```python
from rnn_lightning import {name}

model = {name}.from_pretrained({where!r})
{USAGE.get(pipeline, "")}
```

## Architecture

{params:,} parameters; {words}.{lists}

| setting | value |
| --- | --- |
{settings}

## Data

{dataset or "Not recorded (pass `dataset=` to `save_pretrained`)."}

## Training recipe

{recipe_block}

## Metrics

{results}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _number(key: str, value: Any) -> float:
    try:
        return float(value)  # a Python number or a 0-dim tensor
    except (TypeError, ValueError):
        raise TypeError(f"`metrics[{key!r}]` must be a number, got {type(value).__name__} {value!r:.60}.") from None


def _metrics(task: Any) -> dict[str, float]:
    """The validation and test values the attached trainer logged last (none without a trainer)."""
    trainer = getattr(task, "_trainer", None)
    logged = trainer.callback_metrics if trainer is not None else {}
    return {key: float(value) for key, value in sorted(logged.items()) if key.startswith(("val/", "test/"))}


def _recipe(task: Any, recipe: str | Path | None) -> str | None:
    if recipe is not None:
        path = Path(recipe)
        if not path.is_file():
            raise ValueError(f"`recipe` must be the config file the model was trained with, got {str(recipe)!r}, "
                             "which is no file. Pass e.g. the config.yaml `rnn-lightning fit` saved in its log folder.")
        return path.read_text()
    trainer = getattr(task, "_trainer", None)
    log_dir = getattr(trainer, "log_dir", None) if trainer is not None else None
    saved = Path(log_dir) / "config.yaml" if log_dir else None  # LightningCLI's SaveConfigCallback writes it there
    return saved.read_text() if saved is not None and saved.is_file() else None


def _table(metrics: dict[str, float]) -> str:
    return "| metric | value |\n| --- | --- |\n" + "\n".join(f"| `{k}` | {v:.6g} |" for k, v in metrics.items())
