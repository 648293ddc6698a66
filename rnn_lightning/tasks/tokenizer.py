"""The tokenizer travels in the checkpoint: taken from the DataModule at setup, restored on load, checked against
the DataModule's when both exist."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer


class TokenizerInCheckpoint:
    """Mixin for a LightningModule: take the DataModule's tokenizer at setup, store it as JSON text in checkpoints,
    restore it on load."""

    tokenizer: Tokenizer | None = None

    def _take_tokenizer(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "tokenizer"):
            self.tokenizer = datamodule.tokenizer

    def _save_tokenizer(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_str()

    def _load_tokenizer(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizer" not in checkpoint:
            return
        saved = Tokenizer.from_str(checkpoint["tokenizer"])
        if self.tokenizer is not None and self.tokenizer.get_vocab() != saved.get_vocab():
            ours, theirs = self.tokenizer.get_vocab_size(), saved.get_vocab_size()
            raise ValueError(
                f"the checkpoint's vocabulary ({theirs} tokens) differs from the DataModule's ({ours} tokens"
                f"{', same size but other ids' if ours == theirs else ''}): its weights would read the wrong rows. "
                "Use the data settings the checkpoint was trained with (same corpus, tokenizer, min_frequency, "
                "max_vocab_size), or save the checkpoint's tokenizer "
                "(`Task.load_from_checkpoint(path).tokenizer.save('tokenizer.json')`) and pass that file "
                "as the DataModule's `tokenizer`."
            )
        self.tokenizer = saved
