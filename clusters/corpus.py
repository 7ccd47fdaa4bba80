"""Reading a corpus directory, and writing the rows of a fold's corpora.

A corpus directory holds ``corpus.jsonl`` (one :class:`taskmill.records.Row` per line). This room
only reads corpora, except when it writes the train / held-out corpora of a fold. Atomic folders
and file hashes come from :mod:`taskmill.fileio`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from taskmill import fileio
from taskmill.errors import DataError
from taskmill.fileio import CORPUS_FILE
from taskmill.records import Row

def corpus_file(corpus_dir: str | Path) -> Path:
    """The ``corpus.jsonl`` of a corpus directory (a path to the file itself is accepted too).

    Raises:
        DataError: There is no such file.
    """
    path = fileio.corpus_file(corpus_dir)
    if not path.is_file():
        raise DataError(f"no {CORPUS_FILE} found (expected a corpus directory written by `taskmill build`)", file=str(path))
    return path


def iter_rows(corpus_dir: str | Path) -> Iterator[Row]:
    """Yield the rows of a corpus in file order.

    Raises:
        DataError: A line is not JSON or lacks a schema key (the message names the line).
    """
    path = corpus_file(corpus_dir)
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Row.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise DataError(f"not a corpus row ({type(err).__name__}: {err}); expected Row.to_json() keys", file=str(path), row=f"line {lineno}") from None


def rows_by_task(corpus_dir: str | Path) -> dict[str, list[Row]]:
    """All rows grouped by task, tasks in sorted order, rows in file order.

    Raises:
        DataError: The corpus is empty or unreadable.
    """
    groups: dict[str, list[Row]] = {}
    for row in iter_rows(corpus_dir):
        groups.setdefault(row.task, []).append(row)
    if not groups:
        raise DataError("corpus has no rows", file=str(corpus_file(corpus_dir)))
    return {task: groups[task] for task in sorted(groups)}


def write_rows(path: Path, rows: list[Row]) -> None:
    """Write rows as ``corpus.jsonl`` lines (same serialisation as the builders: UTF-8, no ASCII escaping)."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
