"""Reading the files stages hand each other: corpus folders, JSON Lines, UTF-8 text and YAML, each
problem (missing, unreadable, not UTF-8, malformed) one line naming the file and where."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Callable

import yaml

from taskmill.errors import DataError, TaskmillError

CORPUS_FILE = "corpus.jsonl"
JSON_OBJECT_EXPECTED = "expected a JSON object (one dataset row per line)"


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
    try:
        return _read_rows(file, valid, expected, empty)
    except UnicodeDecodeError:
        # the decoder's error names no line; a second, chunked pass finds the byte and its line
        raise DataError(utf8_problem(file) or "not valid UTF-8", file=str(file)) from None


def _read_rows(file: Path, valid: Callable[[Any], bool], expected: str, empty: str) -> list[dict[str, Any]]:
    rows = []
    for number, row in iter_jsonl(file):
        if not valid(row):
            raise DataError(expected, file=str(file), row=f"line {number}")
        rows.append(row)
    if not rows:
        raise DataError(empty, file=str(file))
    return rows


def iter_jsonl(file: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of a JSONL file, read lazily.

    Raises:
        DataError: A line that is not JSON (naming the file and the line).
        UnicodeDecodeError: The file is not UTF-8 (callers name the byte with :func:`utf8_problem`).
    """
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"not valid JSON ({err.msg})", file=str(file), row=f"line {number}") from None


def jsonl_object_problem(file: Path) -> DataError | None:
    """The first line of a JSON Lines file of dataset rows that is not a JSON object (or not UTF-8),
    as the error that names the file and the line; None when every line is one.

    Both ``taskmill build`` (after its loader failed) and ``taskmill templates lint`` use it, so the
    same bad line gets the same message.
    """
    try:
        for number, row in iter_jsonl(file):
            if not isinstance(row, dict):
                return DataError(JSON_OBJECT_EXPECTED, file=str(file), row=f"line {number}")
    except DataError as err:
        return err
    except UnicodeDecodeError:
        return DataError(utf8_problem(file) or "not valid UTF-8", file=str(file))
    return None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O, encoding and syntax problems into one-line errors."""
    return parse_yaml(read_text(path), path)


def read_text(path: Path, missing: str = "file not found") -> str:
    """A UTF-8 text file's contents; a missing, unreadable or non-UTF-8 file is a one-line error.

    Args:
        path: The file.
        missing: The message when the file does not exist.

    Raises:
        TaskmillError: The file is missing, unreadable or not valid UTF-8 (the message gives the
            first bad byte, its offset and its line).
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskmillError(missing, file=str(path)) from None
    except UnicodeDecodeError as err:
        raise TaskmillError(not_utf8(err.object, err.start), file=str(path)) from None
    except OSError as err:
        raise TaskmillError(f"cannot read: {err.strerror}", file=str(path)) from None


def not_utf8(data: bytes, start: int, offset: int | None = None, lines_before: int = 0) -> str:
    """The message for ``data`` that stops being UTF-8 at ``data[start]``.

    Args:
        data: The bytes (the whole file, or the part read so far).
        start: Index of the first bad byte in ``data``.
        offset: Its byte offset in the file (default: ``start``).
        lines_before: Newlines in the file before ``data``.
    """
    line = lines_before + data.count(b"\n", 0, start) + 1
    where = start if offset is None else offset
    return f"not valid UTF-8: byte 0x{data[start]:02x} at byte offset {where} (line {line}); expected UTF-8 text"


def utf8_problem(path: Path, chunk: int = 1 << 20) -> str | None:
    """Why a file is not valid UTF-8 (as :func:`not_utf8` says it), or None when it is.

    Reads the file in chunks, so it is cheap enough to run when a loader has already failed.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    done, lines = 0, 0
    with path.open("rb") as fh:
        while True:
            data = fh.read(chunk)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:
                # err.object starts with the (at most 3, newline-free) bytes of an unfinished
                # character the decoder held back from the previous chunk.
                held = len(err.object) - len(data)
                return not_utf8(err.object, err.start, done - held + err.start, lines)
            if not data:
                return None
            done += len(data)
            lines += data.count(b"\n")


# libyaml's parser where PyYAML was built with it: about 10x faster, with PyYAML's own constructor
# and resolver (the same values: compared on every YAML file of the project and ../shared).
_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def parse_yaml(text: str, path: Path) -> Any:
    """Parse YAML text read from ``path``, turning syntax problems into one-line errors."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            pass  # parsed again below: the pure-Python parser words the problem (and its place) as documented
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise TaskmillError(f"malformed YAML: {where}{problem}", file=str(path)) from None
