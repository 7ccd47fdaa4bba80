"""``templates lint`` and ``templates show``: each check on a tiny file, findings naming file/template/row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmill.cli import app
from taskmill.errors import TaskmillError
from taskmill.templates.lint import lint_paths
from taskmill.templates.show import format_example, show_examples

ROWS = [{"sentence": "fine film", "label": 1}, {"sentence": "", "label": 0}, {"sentence": "dull", "label": 2}]
GOOD = """dataset: glue
subset: sst2
templates:
  - id: good
    name: good
    input: "Review: {{ sentence }}"
    target: "{{ answer_choices[label] }}"
    answer_choices: "negative ||| positive ||| neutral"
"""
BAD = """dataset: glue
templates:
  - {id: a, name: braces, input: "Review: {sentence} {{ sentence }}", target: "{{ label }}"}
  - {id: b, name: unknown, input: "{{ review }}", target: "{{ label }}"}
  - {id: c, name: syntax, input: "{{ sentence ", target: "x"}
  - {id: d, name: outside, input: "{{ sentence }}", target: "{{ 'maybe' }}", answer_choices: "no ||| yes"}
  - {id: d, name: empty, input: "{{ sentence }}", target: "{{ label }}"}
  - {id: f, name: fails, input: "{{ sentence }}", target: "{{ answer_choices[label] }}", answer_choices: "no ||| yes"}
"""


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"good": tmp_path / "good.yaml", "bad": tmp_path / "bad.yaml", "data": tmp_path / "rows.jsonl"}
    paths["good"].write_text(GOOD, encoding="utf-8")
    paths["bad"].write_text(BAD, encoding="utf-8")
    paths["data"].write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return paths


def test_lint_finds_each_problem(files: dict[str, Path]) -> None:
    report = lint_paths([files["good"], files["bad"]], files["data"], rows=10)
    found = {(f.template, f.code, f.level, f.row) for f in report.findings}
    assert all(f.file == str(files["bad"]) for f in report.findings if f.level == "error")
    assert ("braces", "single-brace", "error", None) in found
    assert ("unknown", "unknown-field", "error", None) in found
    assert ("syntax", "parse", "error", None) in found
    assert ("outside", "target-not-choice", "error", "rows.jsonl:1") in found
    assert ("empty", "empty-render", "warning", "rows.jsonl:2") in found
    # answer_choices[2] of two choices: build rejects the row for its label, and so does lint
    assert ("fails", "label-out-of-range", "error", "rows.jsonl:3") in found
    assert any(f.code == "duplicate" and "'d'" in f.message for f in report.findings)
    assert not any(f.template == "good" and f.level == "error" for f in report.findings)
    line = next(f for f in report.findings if f.code == "single-brace").line()
    assert line.startswith(f"{files['bad']}: template 'braces': error [single-brace]") and "'{sentence}'" in line
    assert (report.templates, report.rows) == (7, 3)


def test_a_broken_template_sharing_an_id_is_reported_not_raised(tmp_path: Path) -> None:
    """Row checks go by template, not id: a duplicate id with a syntax error stays a finding."""
    path, data = tmp_path / "dup.yaml", tmp_path / "rows.jsonl"
    path.write_text("dataset: d\ntemplates:\n  - {id: a, name: ok, input: '{{ sentence }}', target: 'x'}\n"
                    "  - {id: a, name: broken, input: '{{ sentence ', target: 'x'}\n", encoding="utf-8")
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    codes = {(f.template, f.code) for f in lint_paths([path], data).findings}
    assert ("broken", "parse") in codes and any(code == "duplicate" for _, code in codes)


def test_lint_without_data_still_checks_braces_and_syntax(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("dataset: d\ntemplates:\n  - {id: a, name: a, input: '{x} and {{ x }} and {y}', target: '{{ z }}'}\n", encoding="utf-8")
    report = lint_paths([path])
    assert [(f.code, f.message.split("'")[1]) for f in report.findings] == [("single-brace", "{x}")]


def test_lint_promptsource_conventions(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text("dataset: trec\ntemplates:\n  1: !Template\n    id: 1\n    name: only-loc\n"
                    "    jinja: '{% if label == 1 %}{{ text }} {{ missing }} ||| loc{% endif %}'\n", encoding="utf-8")
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "where?", "label": 1}\n{"text": "who?", "label": 0}\n', encoding="utf-8")
    # A field the rows lack fails `taskmill build` in both dialects, so lint says it as an error too.
    report = lint_paths([path], data)
    assert {(f.code, f.level) for f in report.findings} == {("unknown-field", "error")}
    path.write_text(path.read_text().replace(" {{ missing }}", ""), encoding="utf-8")
    report = lint_paths([path], data)
    assert {(f.code, f.level) for f in report.findings} == {("not-applicable", "warning")}
    assert report.errors == 0


def test_cli_lint_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["templates", "lint", str(files["good"]), "--data", str(files["data"]), "--plain"])
    assert ok.exit_code == 0, ok.output
    assert "0 error(s)" in ok.output
    bad = runner.invoke(app, ["templates", "lint", str(files["bad"]), "--data", str(files["data"]), "--plain"])
    assert bad.exit_code == 1 and "error [single-brace]" in bad.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("templates: [\n", encoding="utf-8")
    assert runner.invoke(app, ["templates", "lint", str(broken)]).exit_code == 1
    missing = runner.invoke(app, ["templates", "lint", str(files["good"]), "--data", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "data file not found" in missing.output


def test_show_examples(files: dict[str, Path]) -> None:
    examples = show_examples(files["good"], files["data"], n=2)
    assert [e.row for e in examples] == ["rows.jsonl:1", "rows.jsonl:2"]
    text = format_example(examples[0])
    assert "INPUT:\n  Review: fine film\nTARGET:\n  positive\nCHOICES (target = choice 1):\n  0. negative" in text
    seeded = show_examples(files["good"], files["data"], n=2, seed=3)
    assert seeded == show_examples(files["good"], files["data"], n=2, seed=3) and len(seeded) == 2
    runner = CliRunner()
    dup = runner.invoke(app, ["templates", "show", str(files["bad"]), "--data", str(files["data"])])
    assert dup.exit_code == 2 and "duplicate template id 'd'" in dup.output
    fails = files["bad"].with_name("fails.yaml")
    fails.write_text("dataset: d\ntemplates:\n  - {id: f, name: fails, input: '{{ sentence }}',"
                     " target: '{{ answer_choices[label] }}', answer_choices: 'no ||| yes'}\n", encoding="utf-8")
    result = runner.invoke(app, ["templates", "show", str(fails), "--data", str(files["data"]), "-n", "3", "--template", "fails"])
    assert result.exit_code == 0, result.output
    assert "── fails [f] · row rows.jsonl:1" in result.output and "ERROR: target:" in result.output


def _labelled_rows(n: int, bad: dict[int, int]) -> list[dict[str, object]]:
    return [{"sentence": f"film number {i}", "label": bad.get(i, i % 2)} for i in range(n)]


def test_lint_checks_every_row_and_rejects_labels_as_build_does(tmp_path: Path) -> None:
    """A label of -1 on row 56 (past any small sample) is an error in lint, with build's own message."""
    from taskmill.builders.build import build_collection

    template, data = tmp_path / "good.yaml", tmp_path / "rows.jsonl"
    template.write_text(GOOD, encoding="utf-8")
    data.write_text("".join(json.dumps(r) + "\n" for r in _labelled_rows(60, {55: -1})), encoding="utf-8")
    report = lint_paths([template], data)
    assert report.rows == 60 and report.errors == 1
    (finding,) = report.findings
    assert (finding.code, finding.level, finding.row) == ("label-out-of-range", "error", "rows.jsonl:56")
    collection = tmp_path / "c.yaml"
    collection.write_text("tasks:\n  - {name: t, dataset: glue/sst2, data_files: {train: rows.jsonl}, templates: good.yaml}\n")
    with pytest.raises(TaskmillError) as info:
        build_collection(collection, tmp_path / "out", progress=False, cache_dir=tmp_path / "cache")
    assert info.value.line() == f"{template}: task 't': template 'good': row train[55]: {finding.message}"
    assert "label -1 is out of range" in finding.message
    # A stated sample still exists, and says so: the first 50 rows miss row 56.
    sampled = lint_paths([template], data, rows=50)
    assert sampled.errors == 0 and "the first 50 row(s)" in sampled.summary()


def test_lint_reports_an_out_of_range_label_where_the_render_fails(tmp_path: Path) -> None:
    """``answer_choices[2]`` of two choices fails to render; build reports the label, so lint does too."""
    from taskmill.builders.checks import check_labels, index_fields

    template, data = tmp_path / "two.yaml", tmp_path / "rows.jsonl"
    template.write_text(GOOD.replace(" ||| neutral", ""), encoding="utf-8")
    data.write_text("".join(json.dumps(r) + "\n" for r in _labelled_rows(4, {2: 2, 3: 7})), encoding="utf-8")
    (finding,) = lint_paths([template], data).findings
    assert (finding.code, finding.row) == ("label-out-of-range", "rows.jsonl:3")
    assert finding.message.startswith("label 2 is out of range") and "(and 1 more of 4 rows)" in finding.message
    from taskmill.templates.fileformat import load_template_file

    t = load_template_file(template).templates[0]
    with pytest.raises(TaskmillError) as info:
        check_labels({"label": 2}, index_fields(t), ("negative", "positive"), file="f", task="t", template="g", where="w")
    assert finding.message.startswith(info.value.message)


def test_cli_lint_checks_every_row_by_default(tmp_path: Path) -> None:
    template, data = tmp_path / "good.yaml", tmp_path / "rows.jsonl"
    template.write_text(GOOD, encoding="utf-8")
    data.write_text("".join(json.dumps(r) + "\n" for r in _labelled_rows(80, {70: -1})), encoding="utf-8")
    runner = CliRunner()
    every = runner.invoke(app, ["templates", "lint", str(template), "--data", str(data), "--plain"])
    assert every.exit_code == 1 and "row rows.jsonl:71: error [label-out-of-range] label -1" in every.output
    assert "80 row(s) in " in every.output and " rows/s)" in every.output
    sample = runner.invoke(app, ["templates", "lint", str(template), "--data", str(data), "--rows", "50", "--plain"])
    assert sample.exit_code == 0 and "the first 50 row(s)" in sample.output


def test_lint_promptsource_render_without_target_is_an_error_as_in_build(tmp_path: Path) -> None:
    """A non-empty promptsource render with no ``|||`` fails the build, so lint says error (not 'skipped')."""
    from taskmill.builders.build import build_collection

    path, data = tmp_path / "templates.yaml", tmp_path / "rows.jsonl"
    path.write_text("dataset: trec\ntemplates:\n  1: !Template\n    id: 1\n    name: half\n"
                    "    jinja: '{{ text }}{% if label == 1 %} ||| loc{% endif %}'\n", encoding="utf-8")
    data.write_text('{"text": "where?", "label": 1}\n{"text": "who?", "label": 0}\n', encoding="utf-8")
    (finding,) = lint_paths([path], data).findings
    assert (finding.code, finding.level, finding.row) == ("render", "error", "rows.jsonl:2")
    (tmp_path / "c.yaml").write_text("tasks:\n  - {name: t, dataset: trec, data_files: {train: rows.jsonl}, templates: templates.yaml}\n")
    with pytest.raises(TaskmillError) as info:
        build_collection(tmp_path / "c.yaml", tmp_path / "out", progress=False, cache_dir=tmp_path / "cache")
    assert info.value.line().endswith(f"row train[1]: {finding.message}")


def test_lint_non_utf8_template_and_data_are_reported_not_raised(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from taskmill.cli import app

    bad = tmp_path / "t.yaml"
    bad.write_bytes(b"dataset: x\ntemplates:\n  - id: a\n    name: caf\xe9\n")
    result = CliRunner().invoke(app, ["templates", "lint", str(bad)])
    assert result.exit_code == 1, result.output
    assert "not valid UTF-8: byte 0xe9" in result.output and "Traceback" not in result.output
    good = tmp_path / "g.yaml"
    good.write_text("dataset: x\ntemplates:\n  - {id: a, name: a, input: '{{ text }}', target: '{{ text }}'}\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    result = CliRunner().invoke(app, ["templates", "lint", str(good), "--data", str(rows)])
    assert result.exit_code == 2, result.output
    assert "rows.jsonl" in result.stderr and "not valid UTF-8" in result.stderr and "line 2" in result.stderr
