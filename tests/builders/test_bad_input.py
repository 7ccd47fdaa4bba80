"""Bad input through the real CLI: one clear line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PS_TEMPLATES = """dataset: tiny
templates:
  0a1b2c3d-0000-4000-8000-000000000001: !Template
    answer_choices: bad ||| good
    id: 0a1b2c3d-0000-4000-8000-000000000001
    jinja: 'Review: {{sentence}} Good or bad? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      choices_in_prompt: true
      languages: [en]
      metrics: [Accuracy]
      original_task: true
    name: ps mood
    reference: ''
"""


def _fails(result: Any, out: Path, *expected: str) -> str:
    """Assert the one-line failure and that nothing was written; return the line."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("taskmill: error: "), result.stderr
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp folder left
    return lines[0]


def _build(cli: Any, collection: Path, out: Path, cache_dir: Path) -> Any:
    return cli(["build", collection, "--out", out, "--no-progress", "--cache-dir", cache_dir])


def _edit_train(project: Path, index: int, **changes: Any) -> None:
    path = project / "tiny" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[index].update(changes)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _edit_template(project: Path, template_id: str, **changes: str) -> None:
    data = yaml.safe_load((project / "templates.yaml").read_text())
    for t in data["templates"]:
        if t["id"] == template_id:
            t.update(changes)
    (project / "templates.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_malformed_collection_yaml(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "collection.yaml").write_text("seed: 0\ntasks:\n  - name: tiny\n    dataset: [unclosed\n")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "collection.yaml", "malformed YAML", "line ")


def test_malformed_template_yaml(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "templates.yaml").write_text("dataset: tiny\ntemplates:\n  - id: x\n    input: '{{ sentence }\n")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "malformed YAML")


def test_missing_collection_file(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    _fails(_build(cli, tmp_path / "nope.yaml", tmp_path / "out", cache_dir), tmp_path / "out", "nope.yaml", "not found")


def test_unknown_data_file(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "tiny" / "validation.jsonl").unlink()
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "task 'tiny'", "data file not found", "validation.jsonl")


def test_collection_problems_are_listed_together(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "collection.yaml").write_text(yaml.safe_dump({
        "seed": "zero", "formats": ["zero_shot", "two_shot"],
        "tasks": [{"name": "a", "dataset": "tiny", "data_files": {"train": "tiny/train.jsonl"}, "templates": "templates.yaml",
                   "max_examples": -1, "colour": "red"}],
    }))
    line = _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out")
    for problem in ("seed must be an integer", "unknown format 'two_shot'", "max_examples must be an integer >= 1",
                    "unknown key 'colour'"):
        assert problem in line


def test_unknown_hub_dataset_offline(project: Path, tmp_path: Path, cache_dir: Path) -> None:
    (project / "hub.yaml").write_text(yaml.safe_dump({"tasks": [{"name": "ghost", "dataset": "no_such_dataset_xyz",
                                                                 "splits": ["train"], "templates": "templates.yaml"}]}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "taskmill", "build", str(project / "hub.yaml"), "--out",
                           str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "task 'ghost'" in lines[0] and "cannot load dataset 'no_such_dataset_xyz'" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout and not (tmp_path / "out").exists()


def test_dataset_without_templates_or_library_file(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "lib.yaml").write_text(yaml.safe_dump({"tasks": [{"name": "t", "dataset": "no_such/lib_entry",
                                                                 "data_files": {"train": "tiny/train.jsonl"}}]}))
    _fails(_build(cli, project / "lib.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "lib.yaml", "task 't'", "no_such__lib_entry.yaml")


def test_template_uses_a_field_the_row_lacks(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    _edit_template(project, "tiny-plain", input="{{ sentence }} ({{ rating }} stars)")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "template 'plain'", "row train[0]", "'rating'", "expected one of: sentence, label, idx")


def test_field_only_one_split_lacks(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # Splits are checked once per distinct field list: validation, whose fields differ, is still checked.
    path = project / "tiny" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r | {"rating": 3}) + "\n" for r in rows))
    _edit_template(project, "tiny-plain", input="{{ sentence }} ({{ rating }} stars)")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "task 'tiny'", "template 'plain'", "row validation[0]", "'rating'")


def test_single_brace_field(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    _edit_template(project, "tiny-mood", input="Review: {sentence}\nGood or bad?")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "template 'mood'", "single-brace '{sentence}'", "'{{ sentence }}'")


def test_label_out_of_range_taskmill_dialect(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # The first template to meet row 3 (as an instance or as a few-shot exemplar) reports it.
    _edit_train(project, 3, label=7)
    line = _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
                  "templates.yaml", "task 'tiny'", "row train[3]", "label 7 is out of range", "expected 0..1")
    assert "template 'mood'" in line or "template 'plain'" in line


def test_label_out_of_range_promptsource_dialect(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # PromptSource's lenient Jinja renders answer_choices[7] as "", which would pass as an empty target.
    (project / "templates.yaml").write_text(PS_TEMPLATES)
    _edit_train(project, 5, label=7)
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "task 'tiny'", "template 'ps mood'", "row train[5]", "label 7 is out of range")


def test_negative_label_promptsource_dialect(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # HF marks unlabelled rows -1, which Jinja would read as the last choice.
    (project / "templates.yaml").write_text(PS_TEMPLATES)
    _edit_train(project, 0, label=-1)
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "row train[0]", "label -1 is out of range")


def test_empty_split(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "tiny" / "validation.jsonl").write_text("")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "validation.jsonl", "task 'tiny'", "split 'validation' is empty")


def test_failed_build_keeps_the_previous_corpus(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    out = tmp_path / "out"
    assert _build(cli, project / "collection.yaml", out, cache_dir).exit_code == 0
    def files() -> dict[str, str]:
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    before = files()
    _edit_train(project, 3, label=7)
    result = _build(cli, project / "collection.yaml", out, cache_dir)
    assert result.exit_code == 2 and "label 7 is out of range" in result.stderr
    assert files() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_error_in_a_worker_process_is_one_line(project: Path, tmp_path: Path, cli: Any, cache_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    spill_root = tmp_path / "tmpdir"
    spill_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_root))  # shards go to the output's temp folder, not here
    _edit_train(project, 9, label=7)
    result = cli(["build", project / "collection.yaml", "--out", tmp_path / "out", "--num-proc", "2",
                  "--no-progress", "--cache-dir", cache_dir])
    _fails(result, tmp_path / "out", "row train[9]", "label 7 is out of range")
    assert list(spill_root.iterdir()) == []  # (and _fails checked that the output's temp folder is gone)


def test_no_traceback_from_a_real_process(project: Path, tmp_path: Path, cache_dir: Path) -> None:
    (project / "collection.yaml").write_text("tasks: [\n")
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "taskmill", "build", str(project / "collection.yaml"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "malformed YAML" in proc.stderr and "Traceback" not in proc.stderr


def test_label_index_in_a_branch_not_taken_is_not_an_error(project: Path, tmp_path: Path, cli: Any,
                                                           cache_dir: Path, read_rows: Any) -> None:
    # Like PromptSource's trec fine_grained_* templates: rows of other classes render empty and are
    # skipped, though their index would be out of range of this template's choices.
    (project / "templates.yaml").write_text(PS_TEMPLATES.replace(
        "jinja: 'Review: {{sentence}} Good or bad? ||| {{ answer_choices[label] }}'",
        "jinja: '{% if idx < 2 %}Review: {{sentence}} Good or bad? ||| {{ answer_choices[idx] }}{% endif %}'"))
    result = cli(["build", project / "collection.yaml", "--out", tmp_path / "out", "--format", "zero_shot",
                  "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    assert sorted((r["split"], r["row_index"]) for r in read_rows(tmp_path / "out")) == [
        ("train", 0), ("train", 1), ("validation", 0), ("validation", 1)]


@pytest.mark.parametrize("progress", ["--no-progress", "--progress"])
def test_corpus_over_max_size_is_refused_before_writing(project: Path, tmp_path: Path, cli: Any, cache_dir: Path,
                                                       progress: str) -> None:
    """The size guard: one line with the projected size and rows, exit 2, nothing written."""
    out = tmp_path / "out"
    result = cli(["build", project / "collection.yaml", "--out", out, "--max-size", "2KB", progress,
                  "--cache-dir", cache_dir])
    line = _fails(result, out, "collection.yaml", "corpus.jsonl would be", "rows)", "over the --max-size limit of 2.0 kB",
                  "--max-size")
    ok = cli(["build", project / "collection.yaml", "--out", out, "--max-size", "10MB", "--no-progress",
              "--cache-dir", cache_dir])
    assert ok.exit_code == 0, ok.output
    rows = len((out / "corpus.jsonl").read_text().splitlines())
    assert f"would be {(out / 'corpus.jsonl').stat().st_size / 1000:.1f} kB ({rows} rows)" in line


def test_bad_max_size_is_one_line(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    result = cli(["build", project / "collection.yaml", "--out", tmp_path / "out", "--max-size", "lots",
                  "--no-progress", "--cache-dir", cache_dir])
    _fails(result, tmp_path / "out", "--max-size must be a size such as 500MB or 2GB (0: no limit), got 'lots'")


# --- nulls (issue 21, point 2) --------------------------------------------------------------------

def _drop_field(project: Path, index: int, name: str) -> None:
    path = project / "tiny" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[index][name]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_null_field_is_an_error_naming_row_and_field(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # Before: the prompt read "Review: None", and so did every few-shot prompt drawing row 4. The
    # first template to meet row 4 (as an instance or as an exemplar) reports it.
    _edit_train(project, 4, sentence=None)
    line = _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
                  "templates.yaml", "task 'tiny'", "row train[4]", "prints a null value (field 'sentence' is null)",
                  "expected a value (or set on_null: skip or on_null: default for the task)")
    assert "template 'mood'" in line or "template 'positive only'" in line


def test_field_absent_from_a_later_row_is_an_error(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # The datasets loader fills a key a row lacks with null: the same error, naming the row.
    _drop_field(project, 6, "sentence")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "row train[6]", "field 'sentence' is null")


def test_null_label_is_an_error_not_a_choice(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    _edit_train(project, 2, label=None)
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "row train[2]", "field 'label' is null")


def test_null_in_promptsource_file_is_an_error(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # PromptSource itself prints "None"; a build refuses unless the task says otherwise (on_null).
    (project / "templates.yaml").write_text(PS_TEMPLATES)
    _edit_train(project, 3, sentence=None)
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "template 'ps mood'", "row train[3]", "field 'sentence' is null")


def test_null_label_in_promptsource_file_is_an_error(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # PromptSource's lenient Jinja renders answer_choices[None] as "", an empty target.
    (project / "templates.yaml").write_text(PS_TEMPLATES)
    _edit_train(project, 3, label=None)
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "task 'tiny'", "template 'ps mood'", "row train[3]", "field 'label' is null")


def test_on_null_options_are_validated_together(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    data = yaml.safe_load((project / "collection.yaml").read_text())
    base = data["tasks"][0]
    data["tasks"] = [{**base, "name": "a", "on_null": "ignore"}, {**base, "name": "b", "on_null": "default"},
                     {**base, "name": "c", "null_default": "-"}, {**base, "name": "d", "on_null": "default", "null_default": 0}]
    (project / "collection.yaml").write_text(yaml.safe_dump(data))
    line = _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out", "collection.yaml")
    for problem in ("task 'a': on_null must be one of ['error', 'skip', 'default'] (got 'ignore')",
                    "task 'b': on_null: default needs null_default",
                    "task 'c': null_default applies only with on_null: default",
                    "task 'd': null_default must be a string"):
        assert problem in line


# --- encodings and filters (point 3) --------------------------------------------------------------

def test_non_utf8_template_file(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    text = (project / "templates.yaml").read_bytes()
    (project / "templates.yaml").write_bytes(text.replace(b"Review:", b"Crit\xe9:", 1))
    line = text[:text.index(b"Review:")].count(b"\n") + 1
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "not valid UTF-8: byte 0xe9", f"(line {line})")


def test_non_utf8_promptsource_file(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "templates.yaml").write_bytes(PS_TEMPLATES.replace("Good or bad?", "Bon ou mauvais\xa0?").encode("latin-1"))
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "not valid UTF-8: byte 0xa0", "(line 6)")


def test_non_utf8_collection_file(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    path = project / "collection.yaml"
    path.write_bytes(b"# caf\xe9\n" + path.read_bytes())
    _fails(_build(cli, path, tmp_path / "out", cache_dir), tmp_path / "out",
           "collection.yaml", "not valid UTF-8: byte 0xe9 at byte offset 5 (line 1)")


def test_non_utf8_jsonl_data(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    path = project / "tiny" / "train.jsonl"
    path.write_bytes(path.read_bytes().replace("très".encode(), b"tr\xe8s"))  # latin-1, as an old export would
    offset = path.read_bytes().index(b"\xe8")
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "train.jsonl", "task 'tiny'", f"byte 0xe8 at byte offset {offset} (line 7)")


def test_non_utf8_csv_data(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (project / "tiny" / "train.csv").write_bytes(b"sentence,label,idx\nfine film,1,0\ncaf\xe9 scene,0,1\n")
    data = yaml.safe_load((project / "collection.yaml").read_text())
    data["tasks"][0]["data_files"] = {"train": "tiny/train.csv"}
    data["tasks"][0]["splits"] = ["train"]
    (project / "collection.yaml").write_text(yaml.safe_dump(data))
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "train.csv", "task 'tiny'", "not valid UTF-8: byte 0xe9 at byte offset 36 (line 3)")


@pytest.mark.parametrize("source", ["{{ sentence | shout }}", "{% if label > 5 %}{{ sentence | shout }}{% endif %}{{ sentence }}"])
def test_unknown_jinja_filter(project: Path, tmp_path: Path, cli: Any, cache_dir: Path, source: str) -> None:
    # Jinja reports an unknown filter only when a render reaches it: in an untaken branch it passed.
    _edit_template(project, "tiny-plain", input=source)
    _fails(_build(cli, project / "collection.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           "templates.yaml", "task 'tiny'", "template 'plain'", "input: unknown Jinja filter 'shout' at line 1")


# --- cot without a cot_target (point 6) -----------------------------------------------------------

def test_cot_without_any_cot_target_says_so_per_task(project: Path, tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    data = yaml.safe_load((project / "templates.yaml").read_text())
    for t in data["templates"]:
        t.pop("cot_target", None)
    (project / "templates.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = cli(["build", project / "collection.yaml", "--out", tmp_path / "out", "--format", "cot",
                  "--no-progress", "--cache-dir", cache_dir])
    _fails(result, tmp_path / "out", "collection.yaml", "no rows to write",
           "task 'tiny' (templates.yaml): cot: none of the 3 templates has a cot_target")


@pytest.mark.parametrize("name, content, task", [
    ("notes.jsonl", b'{"instruction": "Say hi", "output": "hi"}\n{"instruction": "Dis caf\xe9", "output": "x"}\n',
     {"name": "mine", "instructions": "notes.jsonl"}),
    ("notes.yaml", b"- instruction: Say hi\n  output: caf\xe9\n", {"name": "mine", "instructions": "notes.yaml"}),
    ("task.json", b'{"Definition": ["caf\xe9"]}\n', {"name": "mine", "sni": "task.json"}),
])
def test_non_utf8_instruction_and_sni_files(tmp_path: Path, cli: Any, cache_dir: Path, name: str, content: bytes,
                                            task: dict[str, Any]) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"tasks": [task]}))
    _fails(_build(cli, tmp_path / "c.yaml", tmp_path / "out", cache_dir), tmp_path / "out",
           name, "task 'mine'", "not valid UTF-8: byte 0xe9 at byte offset")
