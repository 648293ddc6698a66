"""The model hub: a task saved as a folder (safetensors weights, config, tokenizer, model card) that
``from_pretrained`` rebuilds, from disk (offline) or from a Hugging Face Hub repository.

``huggingface_hub``'s ``PyTorchModelHubMixin`` is not used: it records its own config from the ``__init__`` arguments
beside Lightning's ``hparams`` (two sources of truth, the mixin's blind to ``save_hyperparameters(ignore=...)``),
loads weights non-strictly, goes on without a config with only a logged warning, and builds the class it is called
on, not the one that saved the folder. The methods here keep its names and arguments and use ``huggingface_hub``'s
functions underneath (``snapshot_download``, ``HfApi.create_repo`` / ``upload_folder``, ``ModelCard``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import EntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from rnn_lightning.nn.checks import check_output_folder
from rnn_lightning.tasks.checkpoints import foreign_hyperparameters, imported_class
from rnn_lightning.tasks.model_card import LIBRARY, model_card

CONFIG, WEIGHTS, TOKENIZER, CARD = "config.json", "model.safetensors", "tokenizer.json", "README.md"
FORMAT, FORMAT_VERSION = "rnn_lightning", 1  # the version goes up when a reader of version 1 would misread a folder
_ARG = "`pretrained_model_name_or_path`"
T = TypeVar("T", bound="HubMixin")


def _version() -> str:
    from rnn_lightning import __version__  # the package imports this module: read it at call time

    return __version__


class HubMixin:
    """Mixin for a task: :meth:`save_pretrained`, :meth:`from_pretrained` and :meth:`push_to_hub`.

    The folder holds ``model.safetensors`` (the ``state_dict``), ``config.json`` (the task's class and its
    hyper-parameters, labels and character vocabulary included), ``tokenizer.json`` (where the task has a tokenizer)
    and ``README.md`` (a generated model card). Loading through a base class (:func:`load_pretrained`) builds the
    class that saved the folder.

    Example:
        >>> import tempfile
        >>> from rnn_lightning import LanguageModel, load_pretrained
        >>> lm = LanguageModel(vocab_size=12, embedding_dim=8, hidden_size=8, num_layers=1)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = lm.save_pretrained(folder)
        ...     again = load_pretrained(folder)
        >>> type(again).__name__, all(torch.equal(a, b) for a, b in zip(lm.parameters(), again.parameters()))
        ('LanguageModel', True)
    """

    pipeline_tag: ClassVar[str | None] = None  # the Hub's name for what the task does, e.g. "text-generation"
    tokenizer: Tokenizer | None = None

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        metrics: dict[str, Any] | None = None,
        dataset: str | None = None,
        recipe: str | Path | None = None,
        license: str | None = None,
        repo_id: str | None = None,
    ) -> Path:
        """Write the model to the folder ``save_directory`` (created; its four files replaced); return its path.

        Args:
            save_directory: the folder.
            metrics: measured values for the model card (default: the ``val/`` and ``test/`` values the attached
                trainer logged last).
            dataset: what it was trained on, for the card (a Hub dataset id goes into its metadata).
            recipe: the LightningCLI config file it was trained with, copied into the card (default: the
                ``config.yaml`` ``rnn-lightning fit`` saved in the attached trainer's log folder, if any).
            license: the card's license (e.g. ``"apache-2.0"``).
            repo_id: the name the card's usage example loads it by (default: ``save_directory``).
        """
        folder = check_output_folder(save_directory, "`save_directory`", contents="the model's files")
        hparams = self._config_hparams()
        card = model_card(self, hparams, where=repo_id or str(save_directory), metrics=metrics, dataset=dataset,
                          recipe=recipe, license=license)  # first: bad card arguments leave the folder as it was
        folder.mkdir(parents=True, exist_ok=True)
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": _version(),
                  "task": f"{type(self).__module__}.{type(self).__qualname__}", "hparams": hparams,
                  "tokenizer": TOKENIZER if self.tokenizer is not None else None}
        save_file(_separate_tensors(self.state_dict()), folder / WEIGHTS, metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (folder / TOKENIZER).unlink(missing_ok=True)  # never leave another model's tokenizer beside these weights
        if self.tokenizer is not None:
            self.tokenizer.save(str(folder / TOKENIZER))
        card.save(folder / CARD)
        return folder

    def _config_hparams(self) -> dict[str, Any]:
        """The hyper-parameters ``__init__`` takes (the CLI's ``_class_path``-style entries left out), checked to
        be JSON values."""
        hparams = {key: value for key, value in self.hparams.items() if not key.startswith("_")}
        for key, value in hparams.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"hyper-parameter `{key}` of this {type(self).__name__} is a {type(value).__name__} "
                    f"({value!r:.60}), which config.json cannot hold: save_pretrained writes JSON values (numbers, "
                    "strings, lists). "
                    f"Exclude it with `save_hyperparameters(ignore=[{key!r}])` and rebuild it in `__init__`."
                ) from None
        return hparams

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | Path,
        *,
        map_location: str | torch.device | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **hparams: Any,
    ) -> T:
        """The task saved by :meth:`save_pretrained` in a local folder, or in a Hub repository (``"user/name"``,
        downloaded with ``snapshot_download``: ``revision``, ``cache_dir``, ``force_download``, ``local_files_only``
        and ``token`` are its arguments), built as the class that saved it and returned in eval mode.

        Args:
            pretrained_model_name_or_path: the folder, or the repository id.
            map_location: the device to put the model on (default: the CPU).
            hparams: hyper-parameters to override (e.g. a new ``optimizer`` or ``dropout`` to fine-tune with).
        """
        folder = _resolve(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                          force_download=force_download, local_files_only=local_files_only, token=token)
        where = f"{_ARG} {str(pretrained_model_name_or_path)!r}"
        config = _read_config(folder, where)
        task = _task_class(cls, config, where)
        saved = config["hparams"]
        unknown = foreign_hyperparameters(task, saved)
        if unknown:
            raise ValueError(
                f"{where}: its config.json sets {sorted(unknown)}, which {task.__name__} does not take: a newer "
                f"rnn_lightning wrote it (format {config['format_version']}, library {config.get('library_version')})"
                " or the file was edited. Upgrade rnn_lightning (`pip install -U rnn-lightning`)."
            )
        model = task(**{**saved, **hparams})
        if config.get("tokenizer"):
            model.tokenizer = Tokenizer.from_file(str(_need(folder, TOKENIZER, where, "the tokenizer")))
        weights = _need(folder, WEIGHTS, where, "the weights")
        try:
            state = load_file(weights, device="cpu")
        except SafetensorError as error:
            raise ValueError(f"{where}: {WEIGHTS} is not a readable safetensors file ({error}): it is damaged or "
                             "cut short. Download or copy it again, or save the model again.") from error
        floats = {tensor.dtype for tensor in state.values() if tensor.is_floating_point()}
        if len(floats) == 1:
            model.to(floats.pop())  # a model saved in double or half precision comes back in it
        try:
            model.load_state_dict(state)  # strict: every tensor of the network, nothing else
        except RuntimeError as error:
            problems = [line.strip() for line in str(error).strip().splitlines()[1:]]  # torch's, one per line
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            fix = ("leave out the overrides that change the network's sizes" if hparams else
                   "the folder's files come from different models: save the model again with save_pretrained")
            raise ValueError(
                f"{where}: {WEIGHTS} does not fit the {task.__name__} its config.json describes"
                f"{' with your overrides ' + str(sorted(hparams)) if hparams else ''} ({shown}). Fix: {fix}."
            ) from error
        model._weights_loaded()
        if map_location is not None:
            model.to(map_location)
        return model.eval()

    def _weights_loaded(self) -> None:
        """Hook: the weights came from a saved model (a subclass skips initialisation it would redo at fit)."""

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        commit_message: str = "Upload rnn_lightning model",
        metrics: dict[str, Any] | None = None,
        dataset: str | None = None,
        recipe: str | Path | None = None,
        license: str | None = None,
    ) -> Any:
        """Save the model (:meth:`save_pretrained`) into a temporary folder and upload it to the Hub repository
        ``repo_id`` (created if missing) as one commit; return the commit's ``CommitInfo``. ``metrics``,
        ``dataset``, ``recipe`` and ``license`` go into the model card."""
        api = HfApi(token=token, library_name=LIBRARY, library_version=_version())
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, metrics=metrics, dataset=dataset, recipe=recipe, license=license,
                                 repo_id=repo_id)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", revision=branch,
                                     create_pr=create_pr, commit_message=commit_message)


def load_pretrained(pretrained_model_name_or_path: str | Path, **kwargs: Any) -> Any:
    """Any task saved by ``save_pretrained`` (a folder or a Hub repository id), built as the class that saved it;
    ``kwargs`` as :meth:`HubMixin.from_pretrained`'s."""
    return HubMixin.from_pretrained(pretrained_model_name_or_path, **kwargs)


def _separate_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` on the CPU, each tensor contiguous and with storage of its own: safetensors refuses tensors that
    share memory, as tied weights do (each key keeps its copy; loading copies both into the one tied tensor)."""
    seen, out = set(), {}
    for key, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


def _resolve(name: str | Path, **download: Any) -> Path:
    """The local folder ``name``, or the snapshot of the Hub repository ``name`` (its four files only; a ``Path``
    is always local)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if isinstance(name, os.PathLike) and not path.exists():
        raise ValueError(f"{_ARG} {str(name)!r} does not exist: expected a folder written by `save_pretrained`. "
                         "Check the path (a Hub repo id is given as a string, 'user/name').")
    if path.is_file():
        raise ValueError(f"{_ARG} {str(name)!r} is a file; expected a folder written by `save_pretrained` (or a Hub "
                         "repo id). A Lightning checkpoint (.ckpt) loads with `Task.load_from_checkpoint(path)`, and "
                         "`.save_pretrained(folder)` then writes the folder.")
    try:
        return Path(snapshot_download(str(name), allow_patterns=[CONFIG, WEIGHTS, TOKENIZER, CARD],
                                      library_name=LIBRARY, library_version=_version(), **download))
    except (ValueError, OSError, EntryNotFoundError) as error:  # invalid id, missing repo, no network, not cached
        raise ValueError(
            f"{_ARG} {str(name)!r} is no local folder, and the Hugging Face Hub did not give a repository of that "
            f"name ({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}). "
            "Check the folder's path, or the repo id ('user/name'), your access `token` and network "
            "(`local_files_only=True` reads the download cache only)."
        ) from error


def _need(folder: Path, name: str, where: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{where}: the folder {str(folder)!r} has no {name} ({what}; it holds "
                         f"{sorted(p.name for p in folder.iterdir())}). Copy or download the whole folder again, or "
                         "save the model again with save_pretrained.")
    return path


def _read_config(folder: Path, where: str) -> dict[str, Any]:
    """``config.json`` of ``folder``, checked to be a config this version reads."""
    path = folder / CONFIG
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir())
        hint = (" It holds a checkpoint: load it with `Task.load_from_checkpoint(path)`, then `.save_pretrained("
                "folder)`." if any(n.endswith(".ckpt") for n in found) else "")
        raise ValueError(f"{where}: the folder {str(folder)!r} has no {CONFIG}, so it was not written by "
                         f"`save_pretrained` (it holds {found}).{hint} Give the folder save_pretrained wrote.")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where}: its {CONFIG} is not valid JSON ({error}): the file is damaged. Copy or download "
                         "it again, or save the model again.") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{where}: its {CONFIG} is not an rnn_lightning model's (no \"format\": \"{FORMAT}\"; another"
                         " library's model, e.g. a transformers one?). Load it with the library that wrote it.")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{where}: its {CONFIG} has format version {version!r}, written by rnn_lightning "
            f"{config.get('library_version')!r}; this rnn_lightning ({_version()}) reads format {FORMAT_VERSION}. "
            "Upgrade rnn_lightning (`pip install -U rnn-lightning`)."
        )
    if not isinstance(config.get("hparams"), dict) or not isinstance(config.get("task"), str):
        raise ValueError(f"{where}: its {CONFIG} lacks `task` or `hparams`: the file was edited or cut short. Save "
                         "the model again.")
    return config


def _task_class(cls: type, config: dict[str, Any], where: str) -> type:
    """The class to build: ``cls`` where it is the saved class or a subclass of it, the saved class where that is a
    subclass of ``cls`` (a load through a base); an error for another task's folder."""
    saved = imported_class(config["task"])  # never imports what a file names
    if saved is None or not issubclass(saved, HubMixin):
        raise ValueError(
            f"{where} holds a model of the task class {config['task']!r}, which is not an imported rnn_lightning "
            "task: if it is your own subclass, import its module before loading; else it may come from a newer "
            "rnn_lightning: upgrade it (`pip install -U rnn-lightning`)."
        )
    if issubclass(cls, saved):
        return cls
    if issubclass(saved, cls):
        return saved
    raise ValueError(f"{where} holds a {saved.__name__}, not a {cls.__name__}. Load it with "
                     f"`{saved.__name__}.from_pretrained` (or `rnn_lightning.load_pretrained`, any task).")
