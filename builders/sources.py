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
        data = SourceData({s: loaded[s].to_list() for s in splits}, "data_files")
    except Exception as err:  # datasets raises many types; all mean "this file cannot be read"
        _raise_file_problem(kind, files, task)
        shown = ", ".join(p for ps in files.values() for p in ps)
        raise DataError(f"cannot read {kind} data: {_root_cause(err)}", file=shown, task=task.name) from None
    _check_jsonl_rows(files, data, task)
    return data


def _check_jsonl_rows(files: dict[str, list[str]], data: SourceData, task: TaskConfig) -> None:
    """A JSON Lines split must hold one row per non-blank line, as lint reads it: Arrow's reader
    also takes two objects on one line, which lint (and ``json.loads``) rejects as "Extra data"."""
    for split, paths in files.items():
        if not all(p.endswith(".jsonl") for p in paths):
            continue
        lines = 0
        for path in paths:
            with open(path, "rb") as fh:
                lines += sum(1 for line in fh if line.strip())
        if lines != len(data.splits[split]):
            _raise_file_problem("json", {split: paths}, task)


def _raise_file_problem(kind: str, files: dict[str, list[str]], task: TaskConfig) -> None:
    """After a failed load: find the file and the line (or row group) that broke it, reading each
    file again with a plain reader, and raise that (the loader's own message names neither)."""
    for path in dict.fromkeys(p for ps in files.values() for p in ps):
        problem = _FILE_PROBLEMS[kind](Path(path))
        if problem is not None:
            problem.task = task.name
            raise problem


def _jsonl_problem(path: Path) -> DataError | None:
    from taskmill.fileio import jsonl_object_problem

    return jsonl_object_problem(path)  # lint reads --data with the same function: the same line


def _csv_problem(path: Path) -> DataError | None:
    """The first record whose field count differs from the header's, or a quoting error, by line."""
    import csv

    from taskmill.fileio import utf8_problem

    problem = utf8_problem(path)
    if problem:
        return DataError(problem, file=str(path))
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                return None
            for record in reader:
                if record and len(record) != len(header):
                    return DataError(f"expected {len(header)} fields as in the header, got {len(record)}",
                                     file=str(path), row=f"line {reader.line_num}")
        except csv.Error as err:
            return DataError(f"not valid CSV ({err})", file=str(path), row=f"line {reader.line_num}")
    return None


def _parquet_problem(path: Path) -> DataError | None:
    """A file that is not Parquet, or the first row group (with its rows) that cannot be read."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow's many error types all mean "not readable"
        return DataError(f"not a readable Parquet file ({_root_cause(err)})", file=str(path))
    first = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        try:
            parquet.read_row_group(group)
        except Exception as err:  # noqa: BLE001
            return DataError(f"cannot read Parquet row group {group} ({_root_cause(err)})", file=str(path),
                             row=f"{first}..{first + size - 1}")
        first += size
    return None


_FILE_PROBLEMS = {"json": _jsonl_problem, "csv": _csv_problem, "parquet": _parquet_problem}


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
