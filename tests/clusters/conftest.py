"""Fixtures for the clusters tests: tiny corpora written as Row.to_json() lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
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


# --- real-schema corpora built with `taskmill build` ---------------------------------------------

OCCUPATIONS = ("physician secretary developer designer carpenter librarian mechanic cashier farmer baker "
               "lawyer editor janitor nurse driver teacher guard writer chief accountant").split()
CLAUSES = ("was very busy that day|could not find the keys|wanted to finish early|had made a mistake|"
           "was late for the meeting|asked for more time|felt tired after the trip|needed some help").split("|")


def wino_rows(n: int, pronoun: str = "he", seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows in the Hugging Face ``wino_bias`` schema: one pronoun-resolution sentence each."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.sample(OCCUPATIONS, 2)
        verb = rng.choice(["called", "thanked", "visited", "warned", "hired", "helped"])
        tokens = f"The {a} {verb} the {b} because {pronoun} {rng.choice(CLAUSES)} .".split()
        at = tokens.index(pronoun)
        rows.append({"document_id": f"wb-{i}", "part_number": "0", "word_number": list(range(len(tokens))),
                     "tokens": tokens, "coreference_clusters": ["0", "1", str(at), str(at)]})
    return rows


WINO_TEMPLATES = """dataset: wino_bias
subset: {subset}
templates:
  - id: wb-who
    name: who is the pronoun
    input: "{{{{ tokens | join(' ') }}}}\\nIn the sentence above, who does \\"{{{{ tokens[coreference_clusters[2] | int] }}}}\\" refer to?"
    target: "the {{{{ tokens[1] }}}}"
  - id: wb-resolve
    name: resolve the pronoun
    input: "Resolve the pronoun in this sentence: {{{{ tokens | join(' ') }}}}"
    target: "{{{{ tokens[coreference_clusters[2] | int] }}}} = the {{{{ tokens[1] }}}}"
"""


def write_tasks(folder: Path, tasks: dict[str, tuple[str, list[dict[str, Any]], str | None]],
                formats: Sequence[str] = ("zero_shot",), seed: int = 0) -> Path:
    """A collection (``name -> (dataset, train rows, template file text or None)``) under ``folder``.

    A task without template text uses the library's templates of its dataset.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tasks_yaml = []
    for name, (dataset, rows, templates) in tasks.items():
        data = folder / "data" / name
        data.mkdir(parents=True, exist_ok=True)
        (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        task = {"name": name, "dataset": dataset, "data_files": {"train": f"data/{name}/train.jsonl"}, "splits": ["train"]}
        if templates is not None:
            (folder / f"{name}.templates.yaml").write_text(templates, encoding="utf-8")
            task["templates"] = f"{name}.templates.yaml"
        tasks_yaml.append(task)
    import yaml

    collection = folder / "collection.yaml"
    collection.write_text(yaml.safe_dump({"seed": seed, "formats": list(formats), "shots": 2, "tasks": tasks_yaml}, sort_keys=False), encoding="utf-8")
    return collection


def taskmill(*args: Any) -> Any:
    """Run ``taskmill ARGS`` in-process and return click's result (exit code, output)."""
    from typer.testing import CliRunner

    from taskmill.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def real() -> Any:
    """The real-schema helpers above (test modules cannot import conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(wino_rows=wino_rows, WINO_TEMPLATES=WINO_TEMPLATES, write_tasks=write_tasks,
                                 taskmill=taskmill, OCCUPATIONS=OCCUPATIONS)
