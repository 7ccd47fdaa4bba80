"""Loading a task's rows: Hugging Face datasets (Hub or local JSONL/CSV/Parquet) and SNI task files.

Every split is converted to a list of Python dicts once (``Dataset.to_list``), so rendering never
pays per-row Arrow indexing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskmill.builders.collection import DATA_EXTENSIONS, Collection, TaskConfig
from taskmill.errors import DataError


@dataclass(frozen=True)
class SourceData:
    """The loaded splits of one task.

    Attributes:
        splits: Split name -> rows (field name -> value), in source order.
        origin: Where the rows came from (``data_files``, ``hub`` or ``sni``).
        extra: Source-specific data (the parsed SNI task for SNI sources).
    """

    splits: dict[str, list[dict[str, Any]]]
    origin: str
    extra: dict[str, Any] | None = None

    def columns(self, split: str) -> tuple[str, ...]:
        """Field names of a split (those of its first row)."""
        rows = self.splits[split]
        return tuple(rows[0]) if rows else ()


def needed_splits(task: TaskConfig) -> tuple[str, ...]:
    """The splits to load: those built, plus the exemplar split when a few-shot format is asked."""
    splits = list(task.splits)
    few = any(f.startswith("few_shot") for f in task.formats)
    if few and task.shots_split not in splits:
        splits.append(task.shots_split)
    return tuple(splits)


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)
    return datasets


def _root_cause(err: BaseException) -> str:
    """The innermost message of an exception chain (datasets wraps the useful one)."""
    while err.__cause__ is not None or err.__context__ is not None:
        inner = err.__cause__ or err.__context__
        if not str(inner):
            break
        err = inner  # type: ignore[assignment]
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"


def _load_files(task: TaskConfig, collection: Collection, splits: tuple[str, ...], cache_dir: str | None) -> SourceData:
    assert task.data_files is not None
    files = {s: [str(collection.resolve(f)) for f in task.data_files[s]] for s in splits}
    for split, paths in files.items():
        if all(Path(p).stat().st_size == 0 for p in paths):
            raise DataError(f"split '{split}' is empty (0 rows); expected at least one row",
                            file=paths[0], task=task.name)
    kind = DATA_EXTENSIONS[Path(files[splits[0]][0]).suffix.lower()]
    datasets = _quiet_datasets()
    try:
        loaded = datasets.load_dataset(kind, data_files=files, cache_dir=cache_dir)
        # Arrow keeps invalid UTF-8 in JSON strings as it found it; converting them is what fails.
        return SourceData({s: loaded[s].to_list() for s in splits}, "data_files")
    except Exception as err:  # datasets raises many types; all mean "this file cannot be read"
        _raise_not_utf8(kind, files, task)
        shown = ", ".join(p for ps in files.values() for p in ps)
        raise DataError(f"cannot read {kind} data: {_root_cause(err)}", file=shown, task=task.name) from None


def _raise_not_utf8(kind: str, files: dict[str, list[str]], task: TaskConfig) -> None:
    """After a failed load: name the text file that is not UTF-8, with where, if there is one."""
    if kind == "parquet":
        return
    from taskmill.fileio import utf8_problem

    for path in dict.fromkeys(p for ps in files.values() for p in ps):
        problem = utf8_problem(Path(path))
        if problem:
            raise DataError(problem, file=path, task=task.name)


def _load_hub(task: TaskConfig, splits: tuple[str, ...], cache_dir: str | None) -> SourceData:
    datasets = _quiet_datasets()
    rows = {}
    for split in splits:
        try:
            rows[split] = datasets.load_dataset(task.hf_id, task.subset, split=split, cache_dir=cache_dir).to_list()
        except Exception as err:  # offline, unknown id/config/split: all one line for the user
            config = f" config '{task.subset}'" if task.subset else ""
            owner, _, name = task.hf_id.partition("/")
            # `a/b` was read as the hub repo owner/name (collection._dataset_id): say how to mean a config.
            hint = (f" ('{task.hf_id}' was read as a hub repo; for dataset '{owner}' with config '{name}'"
                    f" write dataset: {owner} and subset: {name})" if name and "/" not in name and not task.subset else "")
            raise DataError(
                f"cannot load dataset '{task.hf_id}'{config} split '{split}' from the Hugging Face Hub "
                f"({_root_cause(err)}); check the id, or give data_files for a local copy{hint}",
                task=task.name,
            ) from None
    return SourceData(rows, "hub")


def load_task(task: TaskConfig, collection: Collection, cache_dir: str | None = None) -> SourceData:
    """Load the rows of every split a task needs.

    Args:
        task: The task.
        collection: Its collection (paths resolve against its folder).
        cache_dir: The ``datasets`` cache folder (None: ``HF_DATASETS_CACHE`` or its default).

    Raises:
        DataError: A file or dataset cannot be read, or a split is empty.
    """
    if task.sni is not None:
        from taskmill.builders.sni import load_sni

        return load_sni(task, collection)
    if task.instructions is not None:
        from taskmill.builders.handwritten import load_handwritten

        return load_handwritten(task, collection)
    splits = needed_splits(task)
    data = _load_files(task, collection, splits, cache_dir) if task.data_files else _load_hub(task, splits, cache_dir)
    for split in splits:
        if not data.splits[split]:
            raise DataError(f"split '{split}' is empty (0 rows); expected at least one row",
                            file=_split_file(task, split), task=task.name)
    return data


def _split_file(task: TaskConfig, split: str) -> str | None:
    if task.data_files and split in task.data_files:
        return ", ".join(task.data_files[split])
    return None
