"""The embedded starter collection: data is reproducible and well-formed, templates render on every
row, and the collection file builds into a corpus with no empty task or template."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import taskmill.builders
from taskmill.builders.collection import load_collection
from taskmill.templates.engine import compile_template
from taskmill.templates.fileformat import load_template_file

STARTER = Path(taskmill.builders.__file__).resolve().parent / "starter"
COLLECTION = STARTER / "collection.yaml"
TASKS = sorted(p.name for p in (STARTER / "data").iterdir() if p.is_dir())
CLASS_COUNTS = {"product_reviews": 2, "restaurant_reviews": 3, "news_topics": 5, "support_intents": 5,
                "everyday_nli": 3, "paraphrase_pairs": 2, "cause_effect": 2}


def _rows(task: str, split: str) -> list[dict]:
    with (STARTER / "data" / task / f"{split}.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_data_matches_its_generator() -> None:
    """make_data.py regenerates exactly the committed files (so the data is reproducible)."""
    done = subprocess.run([sys.executable, str(STARTER / "make_data.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_size_and_shape() -> None:
    assert len(TASKS) >= 10
    assert sum(f.stat().st_size for f in STARTER.rglob("*") if f.is_file()) < 1_000_000
    for task in TASKS:
        train, validation = _rows(task, "train"), _rows(task, "validation")
        assert len(train) + len(validation) >= 120 and len(validation) >= 30, task
        assert all(list(r) == list(train[0]) for r in train + validation), f"{task}: fields differ between rows"
        texts = [json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True) for r in train]
        assert not set(texts) & {json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True) for r in validation}


@pytest.mark.parametrize("task", sorted(CLASS_COUNTS))
def test_class_labels_are_balanced_integers(task: str) -> None:
    labels = [r["label"] for split in ("train", "validation") for r in _rows(task, split)]
    assert all(isinstance(x, int) and not isinstance(x, bool) for x in labels)
    counts = [labels.count(k) for k in range(CLASS_COUNTS[task])]
    assert sum(counts) == len(labels) and min(counts) >= len(labels) / CLASS_COUNTS[task] * 0.6, counts


def test_answers_are_correct_by_construction() -> None:
    for row in _rows("biography_qa", "train") + _rows("biography_qa", "validation"):
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        assert row["context"][start:start + len(text)] == text
    for row in _rows("word_problems", "train") + _rows("word_problems", "validation"):
        steps, number = row["answer"].split("\n#### ")
        assert steps.splitlines()[-1].split("= ")[-1].split()[0] == number, row
        for a, op, b, result in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", steps):
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[op] == int(result)
    for row in _rows("science_quiz", "train"):
        assert row["answerKey"] in row["choices"]["label"] and len(set(row["choices"]["text"])) == 4


@pytest.mark.parametrize("task", TASKS)
def test_templates_render_on_every_row(task: str) -> None:
    tf = load_template_file(STARTER / "templates" / f"{task}.yaml")
    assert 3 <= len(tf.templates) <= 5 and tf.subset == task
    assert any(t.metadata.original_task for t in tf.templates)
    assert any(t.metadata.original_task is False for t in tf.templates)
    for t in tf.templates:
        compiled = compile_template(t)
        for split in ("train", "validation"):
            for i, row in enumerate(_rows(task, split)):
                r = compiled.render(row, seed=0)
                assert r.input and r.target, f"{t.id} {split}[{i}]"
                assert "{" not in r.input + r.target, f"{t.id} {split}[{i}]: stray brace"
                if t.answer_choices is not None:
                    assert r.target in r.answer_choices, f"{t.id} {split}[{i}]: {r.target!r} not a choice"
                if t.cot_target is not None:
                    assert r.target in compiled.render_cot(row, seed=0)


def test_collection_names_every_task_with_relative_paths() -> None:
    collection = load_collection(COLLECTION)
    assert sorted(t.name for t in collection.tasks) == TASKS
    assert collection.seed == 0 and collection.shots == 2
    assert set(collection.formats) == {"zero_shot", "few_shot", "zero_shot_options"}
    for t in collection.tasks:
        assert t.max_examples and not Path(t.templates).is_absolute()
        assert all(not Path(f).is_absolute() for files in t.data_files.values() for f in files)


def test_collection_builds_with_no_empty_task_or_template(tmp_path: Path) -> None:
    from taskmill.builders.build import build_collection

    result = build_collection(COLLECTION, tmp_path / "corpus", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "corpus" / "corpus.jsonl").open(encoding="utf-8")]
    assert result.rows == len(rows) > 0
    per_template = {}
    for row in rows:
        per_template[(row["task"], row["template_id"])] = per_template.get((row["task"], row["template_id"]), 0) + 1
    for task in TASKS:
        for t in load_template_file(STARTER / "templates" / f"{task}.yaml").templates:
            assert per_template.get((task, t.id), 0) > 0, f"{task}/{t.id} has no rows"
    assert {r["format"] for r in rows} == {"zero_shot", "few_shot", "zero_shot_options"}
    assert (tmp_path / "corpus" / "card.md").is_file()
