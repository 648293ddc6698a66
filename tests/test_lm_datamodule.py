"""LanguageModelingDataModule: local files through `datasets` builders, caching, and clear errors."""

import json

import pytest
import torch
from datasets import Dataset, DatasetDict

from rnn_lightning import LanguageModelingDataModule
from rnn_lightning.constants import IGNORE_INDEX

TRAIN = ["the cat sat on the mat", "", "a dog barked at the cat", "the end"] * 10
VALID = ["the cat barked", "an unseen word"] * 5


def _write_text(tmp_path):
    files = {}
    for split, lines in (("train", TRAIN), ("validation", VALID), ("test", VALID)):
        path = tmp_path / f"{split}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[split] = str(path)
    return files


def _plain_reader_ids(dm, lines):
    """pytorch/examples-style reference: split on whitespace, dict lookups, <bos> ... <eos> per line."""
    vocab = dm.tokenizer.get_vocab()
    ids = []
    for line in lines:
        ids += [vocab["<bos>"], *(vocab.get(w, vocab["<unk>"]) for w in line.split()), vocab["<eos>"]]
    return torch.tensor(ids)


def test_text_files_match_plain_reader_and_every_validation_token_is_counted(tmp_path):
    dm = LanguageModelingDataModule(path="text", data_files=_write_text(tmp_path), batch_size=2,
                                    eval_batch_size=3, bptt=4, cache_dir=str(tmp_path / "cache"))
    assert torch.equal(dm.token_ids("train"), _plain_reader_ids(dm, TRAIN))
    dm.setup("validate")
    targets = torch.cat([y for _, y in dm.val_dataloader()], 1)
    words_and_eos = sum(len(line.split()) + 1 for line in VALID)
    assert int((targets != IGNORE_INDEX).sum()) == words_and_eos


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_csv_and_json_builders_with_a_named_text_column(tmp_path, fmt):
    files = {}
    for split, lines in (("train", TRAIN), ("validation", VALID)):
        path = tmp_path / f"{split}.{fmt}"
        if fmt == "csv":
            path.write_text("id,sentence\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(lines)))
        elif fmt == "parquet":
            Dataset.from_dict({"id": list(range(len(lines))), "sentence": lines}).to_parquet(str(path))
        else:
            path.write_text("".join(json.dumps({"id": i, "sentence": t}) + "\n" for i, t in enumerate(lines)))
        files[split] = str(path)
    dm = LanguageModelingDataModule(path=fmt, data_files=files, text_column="sentence",
                                    cache_dir=str(tmp_path / "cache"))
    # csv reads the empty line as a missing value: it stays an empty line (<bos> <eos>), nothing shifts
    assert torch.equal(dm.token_ids("train"), _plain_reader_ids(dm, TRAIN))


def test_in_memory_dataset_and_vocab_link_values():
    data = DatasetDict(train=Dataset.from_dict({"text": TRAIN}), validation=Dataset.from_dict({"text": VALID}))
    dm = LanguageModelingDataModule(dataset=data, tokenizer="char")
    assert dm.vocab_size == 4 + len(set("".join(TRAIN)))
    assert dm.pad_id == 0


def test_trained_tokenizer_is_kept_in_the_store_per_settings(tmp_path):
    kwargs = dict(path="text", data_files=_write_text(tmp_path), cache_dir=str(tmp_path / "cache"))
    first = LanguageModelingDataModule(**kwargs).tokenizer
    (saved,) = (tmp_path / "cache").rglob("tokenizer.json")
    assert LanguageModelingDataModule(**kwargs).tokenizer.get_vocab() == first.get_vocab()
    capped = LanguageModelingDataModule(**kwargs, min_frequency=15).tokenizer  # other settings: another store
    assert capped.get_vocab_size() < first.get_vocab_size()
    assert len(list((tmp_path / "cache").rglob("tokenizer.json"))) == 2
    saved.write_text(first.to_str().replace('"cat"', '"CAT"'))  # the saved file really is what the next run reads
    assert "CAT" in LanguageModelingDataModule(**kwargs).tokenizer.get_vocab()


def test_errors_name_the_argument(tmp_path):
    files = _write_text(tmp_path)
    with pytest.raises(ValueError, match="give exactly one corpus"):
        LanguageModelingDataModule()
    with pytest.raises(TypeError, match="`dataset` must be a datasets.DatasetDict"):
        LanguageModelingDataModule(dataset={"train": TRAIN})
    with pytest.raises(ValueError, match="`bptt` must be a positive integer, got 0"):
        LanguageModelingDataModule(path="text", data_files=files, bptt=0)
    dm = LanguageModelingDataModule(path="text", data_files={"train": files["train"]}, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"no 'validation' split \(it has \['train'\]\)"):
        dm.setup("validate")
    dm = LanguageModelingDataModule(path="text", data_files=files, text_column="sentence", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"`text_column` 'sentence' is not a column.*\['text'\]"):
        _ = dm.vocab_size


@pytest.mark.parametrize("transform", ["select", "shuffle", "filter"])
def test_columns_are_read_in_the_datasets_own_rows(transform):
    """A split after select/shuffle/filter is read in its own rows (datasets' row access is the reference), not
    as the table underneath."""
    from rnn_lightning.data.base import arrow_column

    lines = Dataset.from_dict({"text": ["a b", "zzz", "c a", "b b", "a"]})
    data = {"select": lambda d: d.select([4, 2, 0]), "shuffle": lambda d: d.shuffle(seed=0).select(range(1, 5)),
            "filter": lambda d: d.filter(lambda row: row["text"] != "zzz")}[transform](lines)
    assert arrow_column(data, "text").to_pylist() == list(data["text"])
    dm = LanguageModelingDataModule(dataset=DatasetDict(train=data))
    assert set(dm.tokenizer.get_vocab()) - {"<pad>", "<unk>", "<bos>", "<eos>"} == set(" ".join(data["text"]).split())
    assert torch.equal(dm.token_ids("train"), _plain_reader_ids(dm, data["text"]))


def test_hparams_are_the_constructor_arguments_and_recreate_the_datamodule():
    from rnn_lightning import MarkovCorpusDataModule

    dm = MarkovCorpusDataModule(num_words=20, train_tokens=400, validation_tokens=100, test_tokens=100, bptt=5)
    assert dm.hparams["num_words"] == 20 and "path" not in dm.hparams  # the subclass's own, not its base's
    again = MarkovCorpusDataModule(**dm.hparams)  # what load_from_checkpoint does
    assert list(again.raw["train"]["text"]) == list(dm.raw["train"]["text"]) and again.bptt == 5
