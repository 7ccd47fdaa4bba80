"""lm-eval conversions built in the few-shot formats: lm-eval's examples, sampler, seed and delimiters.

The expected prompts come from ``templates.lmeval.fewshot_contexts``, which the slow tests
(``tests/templates/test_lmeval_requests_slow.py``) check against lm-eval's own ``fewshot_context``;
the slow test here checks a real build of ../shared PIQA against lm-eval itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taskmill.builders import build as build_module
from taskmill.builders.build import build_collection
from taskmill.templates import load_template_file
from taskmill.templates.lmeval import convert_lmeval, fewshot_contexts

TASK = {"task": "toy", "dataset_path": "none", "output_type": "multiple_choice", "training_split": "train",
        "validation_split": "validation", "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label",
        "doc_to_choice": "{{[sol1, sol2]}}"}
TRAIN = [{"goal": f"Train goal {i}", "sol1": f" a{i} ", "sol2": f"b{i}", "label": i % 2} for i in range(12)]
VALIDATION = [{"goal": f"Val goal {i}", "sol1": f"c{i}", "sol2": f" d{i}", "label": (i // 3) % 2} for i in range(30)]


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _project(tmp_path: Path, task: dict | None = None, **settings) -> Path:
    """A converted toy lm-eval task, its data and a collection building validation in few_shot."""
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task or TASK), encoding="utf-8")
    convert_lmeval(tmp_path / "task.yaml", tmp_path / "toy.yaml")
    files = {"train": _jsonl(tmp_path / "train.jsonl", TRAIN),
             "validation": _jsonl(tmp_path / "validation.jsonl", VALIDATION)}
    entry = {"name": "toy", "dataset": "toy", "data_files": files, "splits": ["validation"], "templates": "toy.yaml",
             **settings}
    (tmp_path / "collection.yaml").write_text(yaml.safe_dump({"seed": 0, "shots": 2, "formats": ["zero_shot", "few_shot"],
                                                              "tasks": [entry]}), encoding="utf-8")
    return tmp_path / "collection.yaml"


def _rows(corpus: Path, fmt: str = "few_shot") -> list[dict]:
    with (corpus / "corpus.jsonl").open(encoding="utf-8") as fh:
        return [r for r in map(json.loads, fh) if r["format"] == fmt]


def test_few_shot_is_lm_eval_context_whatever_the_chunking(tmp_path, monkeypatch):
    collection = _project(tmp_path)
    build_collection(collection, tmp_path / "one", num_proc=1, progress=False)
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)  # 8 chunks over 2 workers
    build_collection(collection, tmp_path / "two", num_proc=2, progress=False)
    one = (tmp_path / "one" / "corpus.jsonl").read_bytes()
    assert one == (tmp_path / "two" / "corpus.jsonl").read_bytes()

    expected = fewshot_contexts(load_template_file(tmp_path / "toy.yaml"), VALIDATION, TRAIN, 2)
    rows = _rows(tmp_path / "one")
    assert [r["row_index"] for r in rows] == list(range(len(VALIDATION)))
    assert [r["prompt"] for r in rows] == expected
    zero = {r["row_index"]: r for r in _rows(tmp_path / "one", "zero_shot")}
    for r in rows:  # completion and choices as zero-shot, choice whitespace kept
        z = zero[r["row_index"]]
        assert (r["completion"], r["answer_choices"], r["target_index"]) == (z["completion"], z["answer_choices"],
                                                                             z["target_index"])
        assert len(r["shots"]) == 2 and r["prompt"].count("\n\n") == 2
    assert rows[0]["prompt"].startswith("Question: Train goal ")
    assert any(" a" in r["prompt"] and "Answer:  a" in r["prompt"] for r in rows)  # " " + " aN "


def test_fewshot_seed_changes_draws_and_is_lm_evals(tmp_path):
    collection = _project(tmp_path, fewshot_seed=7)
    build_collection(collection, tmp_path / "out", progress=False)
    prompts = [r["prompt"] for r in _rows(tmp_path / "out")]
    tf = load_template_file(tmp_path / "toy.yaml")
    assert prompts == fewshot_contexts(tf, VALIDATION, TRAIN, 2, seed=7)
    assert prompts != fewshot_contexts(tf, VALIDATION, TRAIN, 2)


def test_pool_is_evaluated_split_with_max_examples(tmp_path):
    """shots_split = the built split: lm-eval leaves the row out (piqa's rule); max_examples rows are
    drawn for in ascending order from the whole split."""
    collection = _project(tmp_path, shots_split="validation", max_examples=11)
    build_collection(collection, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    picked = [r["row_index"] for r in rows]
    assert len(picked) == 11 and picked == sorted(picked)
    tf = load_template_file(tmp_path / "toy.yaml")
    assert [r["prompt"] for r in rows] == fewshot_contexts(tf, [VALIDATION[i] for i in picked], VALIDATION, 2)
    assert all(r["row_index"] not in r["shots"] for r in rows)


def test_first_n_sampler_and_delimiters(tmp_path):
    task = {**TASK, "fewshot_config": {"sampler": "first_n", "fewshot_delimiter": "\n##\n", "target_delimiter": "=>"}}
    collection = _project(tmp_path, task=task)
    build_collection(collection, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    assert {tuple(r["shots"]) for r in rows} == {(0, 1)}
    assert rows[0]["prompt"] == "Question: Train goal 0\nAnswer:=> a0 \n##\nQuestion: Train goal 1\nAnswer:=>b1\n##\n" \
                                "Question: Val goal 0\nAnswer:"


def test_few_shot_options_keeps_the_examples_and_adds_options(tmp_path):
    collection = _project(tmp_path, formats=["few_shot", "few_shot_options"])
    build_collection(collection, tmp_path / "out", progress=False)
    plain, options = _rows(tmp_path / "out"), _rows(tmp_path / "out", "few_shot_options")
    assert [r["shots"] for r in plain] == [r["shots"] for r in options]
    assert options[0]["prompt"].count("OPTIONS:\n") == 3 and options[0]["prompt"].endswith("OPTIONS:\n- c0\n-  d0")


def test_unsupported_fewshot_fails_in_one_line_writing_nothing(tmp_path, cli):
    collection = _project(tmp_path, task={**TASK, "description": "Pick one.\n"})
    result = cli(["build", collection, "--out", tmp_path / "out"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1
    assert "toy.yaml" in lines[0] and "task 'toy'" in lines[0] and "'description'" in lines[0]
    assert not (tmp_path / "out").exists()
    # zero-shot does not need the examples: the same conversion builds
    result = cli(["build", collection, "--out", tmp_path / "out", "--format", "zero_shot"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("seed, expected", [("x", "fewshot_seed must be an integer"), (3, "only to lm-eval conversions")])
def test_bad_fewshot_seed_is_one_line(tmp_path, cli, seed, expected):
    collection = _project(tmp_path, fewshot_seed=seed)
    if seed == 3:  # a plain taskmill template file
        (tmp_path / "toy.yaml").write_text(yaml.safe_dump({"dataset": "toy", "templates": [
            {"id": "t", "name": "t", "input": "{{goal}}", "target": "{{sol1}}"}]}), encoding="utf-8")
    result = cli(["build", collection, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_pool_too_small_is_one_line(tmp_path, cli):
    collection = _project(tmp_path, shots=12)  # lm-eval draws 12 + 1 (piqa's rule: the row, left out) from 12
    result = cli(["build", collection, "--out", tmp_path / "out"])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "task 'toy'" in result.output and "shots_split 'train': num_fewshot 12 exceeds the 12" in result.output
    assert not (tmp_path / "out").exists()
