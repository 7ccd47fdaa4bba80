"""The neutral readers: JSONL, UTF-8 text and YAML give one line per problem, naming file and place."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmill.errors import TaskmillError
from taskmill.fileio import corpus_file, read_jsonl, read_yaml


def _read(path: Path) -> list:
    return read_jsonl(path, lambda r: isinstance(r, dict), "expected an object", missing="no file", empty="no rows")


def test_jsonl_rows_and_each_problem_named(tmp_path: Path) -> None:
    good = tmp_path / "a.jsonl"
    good.write_text('{"x": 1}\n\n{"x": 2}\n')
    assert _read(good) == [{"x": 1}, {"x": 2}]
    cases = {b'{"x": 1}\n[1]\n': "row line 2: expected an object", b'{"x": 1}\n{oops\n': "row line 2: not valid JSON",
             b"\n": "no rows", b'{"x": 1}\n{"x": "caf\xe9"}\n': "not valid UTF-8: byte 0xe9 at byte offset 19 (line 2)"}
    for data, message in cases.items():
        bad = tmp_path / "b.jsonl"
        bad.write_bytes(data)
        with pytest.raises(TaskmillError) as err:
            _read(bad)
        assert message in err.value.line() and str(bad) in err.value.line()
    with pytest.raises(TaskmillError, match="no file"):
        _read(tmp_path / "missing.jsonl")


def test_yaml_problems_are_one_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_bytes(b"a: [1\n")
    with pytest.raises(TaskmillError, match=r"malformed YAML: line \d+"):
        read_yaml(f)
    f.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(TaskmillError, match="not valid UTF-8"):
        read_yaml(f)
    with pytest.raises(TaskmillError, match="file not found"):
        read_yaml(tmp_path / "none.yaml")


def test_corpus_file_accepts_the_folder_or_the_file(tmp_path: Path) -> None:
    assert corpus_file(tmp_path) == tmp_path / "corpus.jsonl"
    assert corpus_file(tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
