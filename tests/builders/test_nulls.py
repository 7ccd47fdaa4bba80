"""Null fields in builds: on_null skip (counted in the card) and default, and templates that test for None."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from taskmill.builders.build import build_collection
from taskmill.builders.collection import load_collection


PS_TEMPLATES = """dataset: tiny
templates:
  0a1b2c3d-0000-4000-8000-000000000002: !Template
    answer_choices: bad ||| good
    id: 0a1b2c3d-0000-4000-8000-000000000002
    jinja: 'Review: {{sentence}} Good or bad? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      choices_in_prompt: true
      languages: [en]
      metrics: [Accuracy]
      original_task: true
    name: ps mood
    reference: ''
"""


def _null_sentence(project: Path, index: int) -> None:
    path = project / "tiny" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[index]["sentence"] = None
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _task_options(project: Path, **options: Any) -> None:
    data = yaml.safe_load((project / "collection.yaml").read_text())
    data["tasks"][0].update(options)
    (project / "collection.yaml").write_text(yaml.safe_dump(data))


def test_on_null_skip_leaves_the_row_out_and_counts_it(project: Path, tmp_path: Path, cli: Any, cache_dir: Path,
                                                        read_rows: Any) -> None:
    _null_sentence(project, 4)
    _task_options(project, on_null="skip")
    result = cli(["build", project / "collection.yaml", "--out", tmp_path / "out", "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    assert rows and not [r for r in rows if r["split"] == "train" and r["row_index"] == 4]
    assert not [r for r in rows if 4 in (r["shots"] or []) and r["split"] in ("train", "validation")]  # never an exemplar
    assert not [r for r in rows if "None" in r["prompt"] or "None" in r["completion"]]
    card = (tmp_path / "out" / "card.md").read_text()
    assert "skipped 1 rows of train / zero_shot: null field 'sentence' (on_null: skip) (e.g. rows 4)" in card
    assert card.count("null field 'sentence' (on_null: skip)") == 3 * 5  # every template, every format
    assert load_collection(project / "collection.yaml").tasks[0].on_null == "skip"


def test_on_null_default_prints_the_declared_text(project: Path, tmp_path: Path, cache_dir: Path, read_rows: Any) -> None:
    _null_sentence(project, 4)
    _task_options(project, on_null="default", null_default="(no review)")
    build_collection(project / "collection.yaml", tmp_path / "out", progress=False, cache_dir=cache_dir)
    rows = read_rows(tmp_path / "out")
    own = [r for r in rows if r["split"] == "train" and r["row_index"] == 4 and r["format"] == "zero_shot"]
    assert {r["template_id"] for r in own} == {"tiny-mood", "tiny-plain", "tiny-positive-only"}
    assert [r["prompt"] for r in own if r["template_id"] == "tiny-mood"] == [
        "Review: (no review)\nWas the reviewer in a good or a bad mood?"]
    assert [r["completion"] for r in own if r["template_id"] == "tiny-positive-only"] == ["(no review)"]
    shots = [r for r in rows if r["format"] == "few_shot" and r["split"] == "validation" and 4 in r["shots"]]
    assert shots and all("(no review)" in r["prompt"] for r in shots)
    assert not [r for r in rows if "None" in r["prompt"] or "None" in r["completion"]]


def test_template_that_tests_for_none_still_builds(project: Path, tmp_path: Path, cache_dir: Path, read_rows: Any) -> None:
    _null_sentence(project, 4)
    data = yaml.safe_load((project / "templates.yaml").read_text())
    data["templates"] = [{"id": "handles-none", "name": "handles none",
                          "input": "{% if sentence is none %}No review given.{% else %}Review: {{ sentence }}{% endif %}",
                          "target": "{{ answer_choices[label] }}", "answer_choices": "bad ||| good"}]
    (project / "templates.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    build_collection(project / "collection.yaml", tmp_path / "out", formats=["zero_shot"], progress=False,
                     cache_dir=cache_dir)
    prompts = {r["row_index"]: r["prompt"] for r in read_rows(tmp_path / "out") if r["split"] == "train"}
    assert prompts[4] == "No review given." and prompts[3] == "Review: i wanted my two hours back ."


def test_promptsource_file_with_default_none_matches_promptsource(project: Path, tmp_path: Path, cache_dir: Path,
                                                                  read_rows: Any) -> None:
    # on_null: default with null_default "None" is PromptSource's own behaviour, byte for byte.
    (project / "templates.yaml").write_text(PS_TEMPLATES)
    _null_sentence(project, 4)
    _task_options(project, on_null="default", null_default="None")
    build_collection(project / "collection.yaml", tmp_path / "out", formats=["zero_shot"], progress=False,
                     cache_dir=cache_dir)
    row = next(r for r in read_rows(tmp_path / "out") if r["split"] == "train" and r["row_index"] == 4)
    assert row["prompt"] == "Review: None Good or bad?" and row["completion"] == "good"


def test_cot_note_when_one_task_has_no_cot_target(project: Path, tmp_path: Path, cache_dir: Path, read_rows: Any) -> None:
    data = yaml.safe_load((project / "collection.yaml").read_text())
    data["tasks"].append({**data["tasks"][0], "name": "no_cot", "template_ids": ["tiny-mood", "tiny-positive-only"]})
    (project / "collection.yaml").write_text(yaml.safe_dump(data))
    build_collection(project / "collection.yaml", tmp_path / "out", formats=["cot"], progress=False, cache_dir=cache_dir)
    assert {r["task"] for r in read_rows(tmp_path / "out")} == {"tiny"}
    card = (tmp_path / "out" / "card.md").read_text()
    section = card[card.index("## Task `no_cot`"):]
    assert "- cot: none of the 2 templates has a cot_target, so this task has no cot rows" in section
    assert "has no cot rows" not in card[:card.index("## Task `no_cot`")]


def test_on_null_problems_listed_with_the_others(project: Path) -> None:
    import pytest

    from taskmill.errors import ConfigError

    data = yaml.safe_load((project / "collection.yaml").read_text())
    data["tasks"][0].update(on_null="drop", max_examples=0)
    data["tasks"].append({"name": "sni", "sni": "sni_task.json", "on_null": "skip"})
    (project / "collection.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_collection(project / "collection.yaml")
    assert info.value.problems == [
        "task 'tiny': on_null must be one of ['error', 'skip', 'default'] (got 'drop')",
        "task 'tiny': max_examples must be an integer >= 1",
        "task 'sni': 'on_null' does not apply to an SNI task",
    ]


def test_null_error_through_the_api(project: Path, tmp_path: Path, cache_dir: Path) -> None:
    import pytest

    from taskmill.errors import TaskmillError

    _null_sentence(project, 0)
    with pytest.raises(TaskmillError) as info:  # raised where the chunks merge, as its one line
        build_collection(project / "collection.yaml", tmp_path / "out", formats=["zero_shot"], progress=False,
                         cache_dir=cache_dir)
    assert info.value.line() == (
        f"{project / 'templates.yaml'}: task 'tiny': template 'mood': row train[0]: input: prints a null value "
        "(field 'sentence' is null); expected a value (or set on_null: skip or on_null: default for the task)")
    assert not (tmp_path / "out").exists()
