"""Fixtures for the clusters tests: tiny corpora written as Row.to_json() lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from taskmill.clusters.synthetic import make_row, make_tasks
from taskmill.records import Row

WriteCorpus = Callable[[Sequence[Row], str], Path]


@pytest.fixture
def write_corpus(tmp_path: Path) -> WriteCorpus:
    """Write rows to ``tmp_path/<name>/corpus.jsonl`` and return the folder."""

    def write(rows: Sequence[Row], name: str = "corpus") -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
        return folder

    return write


@pytest.fixture
def family_corpus(write_corpus: WriteCorpus) -> tuple[Path, dict[str, str]]:
    """Generated corpus: 3 tasks in each of 8 families, 12 rows each; returns (folder, task -> family)."""
    rows, family_of = make_tasks(tasks_per_family=3, rows_per_task=12, seed=1)
    return write_corpus(rows, "families"), family_of


@pytest.fixture
def row() -> Callable[..., Row]:
    """``row(task, dataset, index, prompt, completion="x", template="t0")`` -> Row."""

    def build(task: str, dataset: str, index: int, prompt: str, completion: str = "x", template: str = "t0") -> Row:
        return make_row(task, dataset, index, prompt, completion, template_id=template)

    return build
