"""Reading the files stages hand each other: corpus folders and JSON Lines with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from taskmill.errors import DataError

CORPUS_FILE = "corpus.jsonl"


def corpus_file(path: str | Path) -> Path:
    """``corpus.jsonl`` itself, or the one inside a corpus folder."""
    p = Path(path)
    return p / CORPUS_FILE if p.is_dir() else p


def read_jsonl(file: Path, valid: Callable[[Any], bool], expected: str, *, missing: str, empty: str) -> list[dict[str, Any]]:
    """Read a JSONL file of rows, each checked by ``valid``; one-line errors name the line.

    Args:
        file: The JSONL file.
        valid: Row check; a row it rejects is reported with ``expected``.
        expected: What a row must hold (the error text).
        missing: Error text for a missing file.
        empty: Error text for a file without rows.
    """
    if not file.is_file():
        raise DataError(missing, file=str(file))
    rows = []
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON ({err.msg})", file=str(file), row=f"line {number}") from None
            if not valid(row):
                raise DataError(expected, file=str(file), row=f"line {number}")
            rows.append(row)
    if not rows:
        raise DataError(empty, file=str(file))
    return rows
