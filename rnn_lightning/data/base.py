"""The skeleton every DataModule here shares: one corpus, its checked splits, the splits a stage needs, the loaders.

As torchgeo's ``BaseDataModule``: a subclass says how a split becomes a dataset (:meth:`_dataset`), how that dataset
is served (:meth:`_loader`) and what its tokenizer is; this class owns the corpus source and its checks, the
Lightning hooks and the four loader methods.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import pyarrow as pa
from datasets import Dataset, DatasetDict, load_dataset
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from rnn_lightning.data.corpus import files_note, load_corpus
from rnn_lightning.data.tokenization import PAD

STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",),
                "predict": ("test",)}
NOT_HYPERPARAMETERS = ("self", "dataset", "labels")  # an in-memory corpus; the model logs the resolved labels
NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def arrow_column(data: Dataset, column: str) -> pa.ChunkedArray:
    """``column`` of ``data`` as arrow, in the dataset's own rows and order (after a ``select``, ``shuffle`` or
    ``filter``, unlike the underlying table ``data.data``)."""
    return data.select_columns(column).with_format("arrow")[:].column(column)


class CorpusDataModule(L.LightningDataModule):
    """Base of the DataModules: a corpus from the hub, local files or memory, served per split (see subclasses).

    Subclasses set ``column_args`` and implement :attr:`tokenizer`, :meth:`_dataset` and :meth:`_loader`.
    """

    # The attributes naming columns every split must have -> the constructor argument that sets each (for errors).
    column_args: dict[str, str] = {"text_column": "text_column"}
    # The ``csv`` builder's field separator (a subclass's ``csv_delimiter`` argument; ``None``: the builder's default).
    csv_delimiter: str | None = None

    def __init__(
        self,
        path: str | None,
        name: str | None,
        *,
        data_files: dict[str, str | list[str]] | str | None,
        dataset: DatasetDict | None,
        text_column: str,
        tokenizer: str,
        min_frequency: int,
        max_vocab_size: int | None,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        cache_dir: str | None,
        holdout: dict[str, float] | None,
    ) -> None:
        super().__init__()
        # The concrete class's own arguments (the outermost __init__ wins), so `load_from_checkpoint` can re-create it.
        own = inspect.signature(type(self).__init__).parameters.values()
        self.save_hyperparameters(*(p.name for p in own if p.kind in NAMED and p.name not in NOT_HYPERPARAMETERS))
        if (path is None) == (dataset is None):
            raise ValueError(
                "give exactly one corpus: `path` (a hub name such as 'wikitext', or a builder such as 'text' or 'csv' "
                f"with `data_files`) or `dataset` (a DatasetDict); got path={path!r}, dataset={type(dataset).__name__}."
            )
        if dataset is not None and not isinstance(dataset, DatasetDict):
            raise TypeError(f"`dataset` must be a datasets.DatasetDict, got {type(dataset).__name__}.")
        for arg, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer, got {value!r}.")
        self.path, self.name, self.data_files, self.cache_dir = path, name, data_files, cache_dir
        self.text_column, self.tokenizer_spec = text_column, tokenizer
        self.min_frequency, self.max_vocab_size = min_frequency, max_vocab_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.holdout = num_workers, holdout
        self._raw: DatasetDict | None = dataset
        self._tokenizer: Tokenizer | None = None

    def __str__(self) -> str:
        # Lightning's default builds every dataloader (for a summary); jsonargparse calls str() when it skips a
        # link the class lacks, before any trainer is attached. Keep it cheap and free of side effects.
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r}, data_files={self.data_files!r})"

    # -- corpus (lazy: LightningCLI reads `vocab_size` right after __init__) --
    def _load(self, **kwargs: Any) -> DatasetDict:
        """Load the corpus with ``datasets`` (subclasses add builder options or local formats)."""
        if self.csv_delimiter is not None:  # every field is text, quotes included
            kwargs = {"delimiter": self.csv_delimiter, "quoting": 3, **kwargs}  # 3 = csv.QUOTE_NONE
        return load_dataset(self.path, self.name, data_files=self.data_files, cache_dir=self.cache_dir, **kwargs)

    @property
    def raw(self) -> DatasetDict:
        """The corpus as loaded, before encoding."""
        if self._raw is None:
            self._raw = load_corpus(self._load, self.data_files, self.holdout)
        return self._raw

    def _split(self, split: str) -> Dataset:
        """``split`` of the corpus, refused with the fix if it is missing, empty, or lacks a named column."""
        if split not in self.raw:
            raise ValueError(
                f"the corpus has no {split!r} split (it has {sorted(self.raw)}). Name the files per split, e.g. "
                "data_files={'train': ..., 'validation': ..., 'test': ...}, or carve it off train with "
                f"holdout={{{split!r}: 0.05}}."
            )
        data = self.raw[split]
        if len(data) == 0:
            raise ValueError(
                f"the {split!r} split is empty (0 rows){files_note(self.data_files, split)}. Give it a non-empty "
                "file, or carve it off train with `holdout`."
            )
        for attr, arg in self.column_args.items():
            column = getattr(self, attr)
            if column not in data.column_names:
                raise ValueError(
                    f"`{arg}` {column!r} is not a column of the {split!r} split; its columns are "
                    f"{data.column_names}. Set `{arg}` to the right one."
                )
        return data

    # -- vocabulary --
    @property
    def tokenizer(self) -> Tokenizer:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return self.tokenizer.get_vocab_size()

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``."""
        return self.tokenizer.token_to_id(PAD)

    # -- what a subclass serves --
    def _dataset(self, split: str) -> Any:
        """``split`` ready for its loader (built once)."""
        raise NotImplementedError

    def _loader(self, split: str) -> DataLoader:
        raise NotImplementedError

    def _rank_world(self) -> tuple[int, int]:
        """This process's rank and the number of processes (0, 1 without a trainer)."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    # -- Lightning hooks --
    def prepare_data(self) -> None:
        self.raw  # noqa: B018  (downloads a hub dataset once, on rank zero)

    def setup(self, stage: str) -> None:
        for split in STAGE_SPLITS[stage]:
            self._dataset(split)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
