"""taskmill's YAML template format: round trip, every problem listed at once, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmill.errors import ConfigError, TaskmillError
from taskmill.records import Template, TemplateFile, TemplateMetadata
from taskmill.templates import load_template_file
from taskmill.templates.fileformat import dump_template_file, write_template_file

TEMPLATES = (
    Template(id="sst2-mood", name="review mood", input="Review: {{ sentence }}\nPositive or negative?",
             target="{{ answer_choices[label] }}", answer_choices="negative ||| positive",
             metadata=TemplateMetadata(True, True, ("Accuracy",), ("en",)), reference="taskmill"),
    Template(id="sst2-cot", name="with reasons", input="  indented\n\ttabs and trailing spaces   \nend",
             target="{{ label }}", cot_target="Because {{ sentence }}.\nSo {{ label }}.",
             metadata=TemplateMetadata(False, None, (), ())),
)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    tf = TemplateFile(str(tmp_path / "t.yaml"), "glue", "sst2", TEMPLATES)
    write_template_file(tf, tmp_path / "t.yaml")
    back = load_template_file(tmp_path / "t.yaml")
    assert back == tf
    assert back.dataset_id == "glue/sst2"
    assert dump_template_file(back) == (tmp_path / "t.yaml").read_text(encoding="utf-8")
    assert "input: |-\n    Review: {{ sentence }}" in dump_template_file(tf)  # readable literal block


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text("previous", encoding="utf-8")
    bad = TemplateFile(str(target), "glue", None, (Template(id="x", name="x", input=object(), target="y"),))  # type: ignore[arg-type]
    with pytest.raises(Exception):
        write_template_file(bad, target)
    assert target.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["t.yaml"]


def test_all_problems_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "dataset: ''\nsubset: 3\ntemplates:\n"
        "  - {id: a, name: one, input: 'x', target: 'y', colour: red}\n"
        "  - {id: b, name: two, input: 5, target: 'y', metadata: {original_task: maybe, metrics: Accuracy}}\n"
        "  - {id: a, name: one, input: 'x', target: 'y'}\n"
        "  - just a string\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_template_file(path)
    problems = info.value.problems
    expected = ["'dataset'", "'subset'", "unknown key 'colour'", "'input' must be a non-empty string",
                "metadata.original_task", "metadata.metrics", "duplicate template id 'a'",
                "duplicate template name 'one'", "templates[3]"]
    for snippet in expected:
        assert any(snippet in p for p in problems), (snippet, problems)
    assert str(path) in info.value.line()


def test_malformed_yaml_and_missing_file_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("dataset: glue\ntemplates: [\n  - id: x\n", encoding="utf-8")
    with pytest.raises(TaskmillError, match=r"malformed YAML: line \d+"):
        load_template_file(path)
    with pytest.raises(TaskmillError, match="not found"):
        load_template_file(tmp_path / "absent.yaml")


def test_promptsource_file_detected_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(
        "dataset: super_glue\nsubset: cb\ntemplates:\n"
        "  1111: !Template\n    answer_choices: Yes ||| No ||| Maybe\n    id: 1111\n"
        "    jinja: '{{premise}} Question: {{hypothesis}}? ||| {{ answer_choices[label] }}'\n"
        "    metadata: !TemplateMetadata\n      choices_in_prompt: false\n      languages: [en]\n"
        "      metrics: [Accuracy]\n      original_task: true\n    name: can we infer\n    reference: ''\n",
        encoding="utf-8")
    tf = load_template_file(path)
    (t,) = tf.templates
    assert (tf.dataset_id, t.id, t.name, t.dialect, t.answer_choices) == ("super_glue/cb", "1111", "can we infer", "promptsource", "Yes ||| No ||| Maybe")
    assert t.metadata == TemplateMetadata(True, False, ("Accuracy",), ("en",))
    assert (t.input, t.target) == ("{{premise}} Question: {{hypothesis}}?", "{{ answer_choices[label] }}")


def test_non_utf8_files_are_one_line(tmp_path: Path) -> None:
    from taskmill.fileio import read_yaml

    taskmill_file = tmp_path / "t.yaml"
    taskmill_file.write_bytes(b"dataset: glue\ntemplates:\n  - id: x\n    name: caf\xe9\n")
    with pytest.raises(TaskmillError) as info:
        load_template_file(taskmill_file)
    assert info.value.line() == f"{taskmill_file}: not valid UTF-8: byte 0xe9 at byte offset 48 (line 4); expected UTF-8 text"
    ps_file = tmp_path / "templates.yaml"
    ps_file.write_bytes(b"dataset: x\ntemplates:\n  1: !Template\n    jinja: '\xff'\n")
    with pytest.raises(TaskmillError, match=r"not valid UTF-8: byte 0xff at byte offset 49 \(line 4\)"):
        load_template_file(ps_file)
    with pytest.raises(TaskmillError, match=r"byte 0xe9 at byte offset 48 \(line 4\)"):
        read_yaml(taskmill_file)


def test_utf8_problem_finds_the_byte_across_chunks(tmp_path: Path) -> None:
    from taskmill.fileio import utf8_problem

    path = tmp_path / "rows.jsonl"
    path.write_bytes("é\n".encode() * 10 + b"ok \xe9t\xc3\xa9\n")
    for chunk in (1, 2, 3, 5, 1 << 20):  # a chunk may end inside a two-byte character
        assert utf8_problem(path, chunk) == "not valid UTF-8: byte 0xe9 at byte offset 33 (line 11); expected UTF-8 text"
    path.write_bytes("é\n".encode() * 10)
    assert utf8_problem(path, 1) is None
    path.write_bytes(b"cut \xc3")
    assert utf8_problem(path, 2) == "not valid UTF-8: byte 0xc3 at byte offset 4 (line 1); expected UTF-8 text"
