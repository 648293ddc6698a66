"""Each private API that ``rnn_lightning.compat`` wraps still behaves as the wrapper expects."""

from rnn_lightning.compat import dataset_fingerprint

# ---------------------------------------------------------------- Lightning


# ---------------------------------------------------------------- datasets


def test_dataset_fingerprint_follows_content_and_names_the_cache_files(tmp_path):
    from datasets import load_dataset

    for name, text in (("one.txt", "a b\nc\n"), ("two.txt", "a b\nd\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")

    def load(name: str):
        return load_dataset("text", data_files=str(tmp_path / name), cache_dir=str(tmp_path / "cache"))["train"]

    first = dataset_fingerprint(load("one.txt"))
    assert isinstance(first, str) and len(first) >= 16
    assert dataset_fingerprint(load("one.txt")) == first  # a second run: the same key, so caches are reused
    assert dataset_fingerprint(load("two.txt")) != first  # another file: another key
    mapped = load("one.txt").map(lambda row: row, new_fingerprint="0123456789abcdef")
    assert dataset_fingerprint(mapped) == "0123456789abcdef"  # what `new_fingerprint` sets, as token_ids relies on
    assert "0123456789abcdef" in mapped.cache_files[0]["filename"]


# ---------------------------------------------------------------- torchmetrics
