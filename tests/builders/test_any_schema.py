"""Templates over a Hugging Face schema the project never saw (issue 17), through the real CLI.

The fixtures are written here: a tiny GAP-like coreference set (``A-coref``, ``Pronoun-offset``:
column names that are not Python identifiers) and a tiny dialogue-summarisation set with only
``validation`` and ``test`` splits. Every fault is run through both ``taskmill templates lint`` and
``taskmill build`` on the same files, and the two must report the same message for the same row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

GAP_ROWS = [
    {"ID": "dev-1", "Text": "Zoe met Ann at the fair, and she waved.", "Pronoun": "she", "Pronoun-offset": 27,
     "A": "Zoe", "A-offset": 0, "A-coref": True, "B": "Ann", "B-offset": 8, "B-coref": False, "label": 0},
    {"ID": "dev-2", "Text": "Bo told Cy that he had won.", "Pronoun": "he", "Pronoun-offset": 16,
     "A": "Bo", "A-offset": 0, "A-coref": False, "B": "Cy", "B-offset": 8, "B-coref": True, "label": 1},
    {"ID": "dev-3", "Text": "Eve thanked Dan; he smiled.", "Pronoun": "he", "Pronoun-offset": 17,
     "A": "Eve", "A-offset": 0, "A-coref": False, "B": "Dan", "B-offset": 12, "B-coref": True, "label": 1},
    {"ID": "dev-4", "Text": "Max saw Lea as she left.", "Pronoun": "she", "Pronoun-offset": 15,
     "A": "Max", "A-offset": 0, "A-coref": False, "B": "Lea", "B-offset": 8, "B-coref": True, "label": 2},
]

GOOD_GAP = """dataset: gap
templates:
  - id: gap-a
    name: a coref
    input: "{{ Text }}\\nDoes '{{ Pronoun }}' (at {{ example['Pronoun-offset'] }}) refer to {{ A }}?"
    target: "{{ 'yes' if example['A-coref'] else 'no' }}"
    answer_choices: "no ||| yes"
    metadata: {original_task: true, choices_in_prompt: false}
  - id: gap-which
    name: which
    input: "{{ Text }}\\nWho is '{{ Pronoun }}': {{ A }}, {{ B }} or neither?"
    target: "{{ answer_choices[label] }}"
    answer_choices: "{{ A }} ||| {{ B }} ||| neither"
    metadata: {original_task: true, choices_in_prompt: true}
"""


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _gap_project(tmp_path: Path, template: str = GOOD_GAP, rows: list[dict[str, Any]] | None = None,
                 formats: str = "[zero_shot]") -> Path:
    """A collection over the GAP-like rows: train.jsonl, gap.yaml, collection.yaml."""
    _write_jsonl(tmp_path / "train.jsonl", GAP_ROWS if rows is None else rows)
    (tmp_path / "gap.yaml").write_text(template, encoding="utf-8")
    (tmp_path / "collection.yaml").write_text(
        "tasks:\n  - name: gap\n    dataset: gap\n    data_files: {train: train.jsonl}\n    splits: [train]\n"
        f"    templates: gap.yaml\n    formats: {formats}\n", encoding="utf-8")
    return tmp_path / "collection.yaml"


def _build(cli: Any, collection: Path, cache_dir: Path) -> Any:
    return cli(["build", collection, "--out", collection.parent / "out", "--no-progress", "--cache-dir", cache_dir])


def _lint(cli: Any, template: Path, data: Path) -> Any:
    return cli(["templates", "lint", template, "--data", data, "--plain"])


def _build_error(result: Any) -> str:
    """build's one error line, without the ``taskmill: error: `` prefix."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("taskmill: error: ")]
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.stderr)
    return lines[0].removeprefix("taskmill: error: ")


def _lint_errors(result: Any) -> list[tuple[str | None, str]]:
    """(row, message) of each error line of lint's output."""
    found = []
    for line in result.output.splitlines():
        match = re.match(r".*?(?:: row (\S+))?: error \[[\w-]+\] (.*)$", line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def _same_fault(cli: Any, collection: Path, template: Path, data: Path, cache_dir: Path) -> tuple[str, str]:
    """Run build and lint on the same files; assert lint's only error is build's message (and row)."""
    built = _build_error(_build(cli, collection, cache_dir))
    linted = _lint(cli, template, data)
    assert linted.exit_code == 1, linted.output
    errors = _lint_errors(linted)
    assert len(errors) == 1, linted.output
    row, message = errors[0]
    assert built.endswith(": " + message), (built, message)
    if row is not None:  # lint names data.jsonl:LINE, build split[index] (0-based, one row per line)
        name, _, line = row.rpartition(":")
        assert f"row {data.stem}[{int(line) - 1}]: " in built, (built, row)
    return built, message


# --- 1. fields whose names are not identifiers --------------------------------------------------


def test_fields_with_dashes_render_through_example(tmp_path: Path, cli: Any, cache_dir: Path, read_rows: Any) -> None:
    collection = _gap_project(tmp_path)
    result = _build(cli, collection, cache_dir)
    assert result.exit_code == 0, result.output
    rows = {(r["template_id"], r["row_index"]): r for r in read_rows(tmp_path / "out")}
    first = rows[("gap-a", 0)]
    assert first["prompt"] == "Zoe met Ann at the fair, and she waved.\nDoes 'she' (at 27) refer to Zoe?"
    assert first["completion"] == "yes" and first["target_index"] == 1
    assert rows[("gap-a", 1)]["completion"] == "no"
    assert rows[("gap-which", 3)]["completion"] == "neither"
    linted = _lint(cli, tmp_path / "gap.yaml", tmp_path / "train.jsonl")
    assert linted.exit_code == 0 and "0 error(s), 0 warning(s)" in linted.output, linted.output


@pytest.mark.parametrize("written, name", [("{{ A-coref }}", "A-coref"), ("{{ Pronoun-offset + 1 }}", "Pronoun-offset"),
                                           ("{% if B-coref %}B{% endif %}", "B-coref")])
def test_a_bare_dashed_field_names_the_field_in_lint_and_build(tmp_path: Path, cli: Any, cache_dir: Path,
                                                                 written: str, name: str) -> None:
    collection = _gap_project(tmp_path, GOOD_GAP.replace("refer to {{ A }}?", f"refer to {{{{ A }}}}? {written}"))
    built, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    assert message == f"input: '{name}' is not a valid name: use example['{name}']"
    assert "coref'" not in message.replace(name, "")  # not "uses 'coref'", Jinja's reading of A - coref


def test_a_column_with_a_space_is_named_instead_of_a_syntax_error(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    rows = [{**r, "first name": r["A"]} for r in GAP_ROWS]
    collection = _gap_project(tmp_path, GOOD_GAP.replace("refer to {{ A }}", "refer to {{ first name }}"), rows)
    _, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    assert message == "input: 'first name' is not a valid name: use example['first name']"


def test_a_misspelled_field_read_through_example_is_an_unknown_field(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    collection = _gap_project(tmp_path, GOOD_GAP.replace("example['A-coref']", "example['A-corf']"))
    built, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    assert message.startswith("target: uses field 'A-corf', which the rows do not have; expected one of: ID, Text")


def test_a_null_read_through_example_is_named(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    rows = [dict(r) for r in GAP_ROWS]
    rows[2]["Pronoun-offset"] = None
    collection = _gap_project(tmp_path, rows=rows)
    built, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    assert "row train[2]" in built and "field 'Pronoun-offset' is null" in message


# --- 2. a corrupt line names the file and the line, in every reader ------------------------------


def test_a_corrupt_jsonl_line_is_named_by_build_as_by_lint(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    collection = _gap_project(tmp_path)
    data = tmp_path / "train.jsonl"
    lines = data.read_text().splitlines()
    good = data.read_text()
    for bad, message in ((lines[2][:-1], "Expecting ',' delimiter"),  # the loader: "Trailing data"
                         (lines[2] + ' {"ID": "dev-9"}', "Extra data")):  # Arrow takes it as two rows
        data.write_text("\n".join([*lines[:2], bad, *lines[3:]]) + "\n", encoding="utf-8")
        built = _build_error(_build(cli, collection, cache_dir))
        linted = _lint(cli, tmp_path / "gap.yaml", data)
        lint_line = linted.stderr.strip().splitlines()[-1].removeprefix("taskmill: error: ")
        assert linted.exit_code == 2
        assert lint_line.startswith(f"{data}: row line 3: not valid JSON ({message}")
        assert built == lint_line.replace(f"{data}: ", f"{data}: task 'gap': ", 1)
    data.write_text(good, encoding="utf-8")


def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    collection = _gap_project(tmp_path)
    data = tmp_path / "train.jsonl"
    data.write_text(data.read_text() + '["dev-5", "not a row"]\n', encoding="utf-8")
    built = _build_error(_build(cli, collection, cache_dir))
    assert built == f"{data}: task 'gap': row line 5: expected a JSON object (one dataset row per line)"
    linted = _lint(cli, tmp_path / "gap.yaml", data)
    assert linted.stderr.strip().endswith(built.replace(" task 'gap':", ""))


def test_a_csv_record_with_too_many_fields_is_named(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (tmp_path / "train.csv").write_text('Text,A-coref\n"Zoe waved.",1\n"Bo, Cy",0\n"odd, row",1,extra\n', encoding="utf-8")
    (tmp_path / "gap.yaml").write_text("dataset: gap\ntemplates:\n  - {id: a, name: a, input: '{{ Text }}', "
                                       "target: \"{{ example['A-coref'] }}\"}\n", encoding="utf-8")
    (tmp_path / "collection.yaml").write_text(
        "tasks:\n  - {name: gap, dataset: gap, data_files: {train: train.csv}, splits: [train], templates: gap.yaml,"
        " formats: [zero_shot]}\n", encoding="utf-8")
    built = _build_error(_build(cli, tmp_path / "collection.yaml", cache_dir))
    assert built == f"{tmp_path / 'train.csv'}: task 'gap': row line 4: expected 2 fields as in the header, got 3"


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (tmp_path / "train.parquet").write_bytes(b"PAR1 not really parquet")
    (tmp_path / "gap.yaml").write_text("dataset: gap\ntemplates:\n  - {id: a, name: a, input: '{{ Text }}', "
                                       "target: '{{ A }}'}\n", encoding="utf-8")
    (tmp_path / "collection.yaml").write_text(
        "tasks:\n  - {name: gap, dataset: gap, data_files: {train: train.parquet}, splits: [train], templates: gap.yaml,"
        " formats: [zero_shot]}\n", encoding="utf-8")
    built = _build_error(_build(cli, tmp_path / "collection.yaml", cache_dir))
    assert built.startswith(f"{tmp_path / 'train.parquet'}: task 'gap': not a readable Parquet file (ArrowInvalid:")


def test_a_parquet_row_group_that_cannot_be_read_is_named_with_its_rows(tmp_path: Path) -> None:
    """Row group 1 of 2 has its column chunk overwritten: the rows it held are named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from taskmill.builders.sources import _parquet_problem

    path = tmp_path / "train.parquet"
    texts = [f"text number {i} " * 20 for i in range(6)]
    pq.write_table(pa.table({"Text": texts}), path, row_group_size=3, compression="NONE", use_dictionary=False)
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    start = column.data_page_offset
    data[start:start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    path.write_bytes(bytes(data))
    problem = _parquet_problem(path)
    assert problem is not None and problem.row == "3..5"
    assert problem.line().startswith(f"{path}: row 3..5: cannot read Parquet row group 1 (")


def test_an_sni_file_names_the_json_line(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    (tmp_path / "task.json").write_text('{\n  "Definition": ["Copy."],\n  "Instances": [\n    {"id": "a", "input": "x"\n  ]\n}\n',
                                        encoding="utf-8")
    (tmp_path / "collection.yaml").write_text("tasks:\n  - {name: copy, sni: task.json}\n", encoding="utf-8")
    built = _build_error(_build(cli, tmp_path / "collection.yaml", cache_dir))
    assert built.startswith(f"{tmp_path / 'task.json'}: task 'copy': row line 5: not valid JSON (")


def test_an_sni_instance_that_is_not_one_is_named(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    sni = {"Definition": ["Copy."], "Positive Examples": [], "Negative Examples": [],
           "Instances": [{"id": "a", "input": "x", "output": ["x"]}, {"id": "b", "input": "y", "output": "y"}]}
    (tmp_path / "task.json").write_text(json.dumps(sni), encoding="utf-8")
    (tmp_path / "collection.yaml").write_text("tasks:\n  - {name: copy, sni: task.json}\n", encoding="utf-8")
    built = _build_error(_build(cli, tmp_path / "collection.yaml", cache_dir))
    assert built.startswith(f"{tmp_path / 'task.json'}: task 'copy': row Instances[1]: not an SNI task file:")


# --- 3. the prompt is the render, stripped of outer whitespace (the documented rule) -------------

DIALOGUES = [
    {"id": "d1", "dialogue": "#Person1#: Hi.  How are you? \n#Person2#: Fine. ", "summary": " Two people greet. "},
    {"id": "d2", "dialogue": "#Person1#: Lunch?\n#Person2#: Yes!", "summary": "They plan lunch."},
    {"id": "d3", "dialogue": "#Person1#: Rain again.\t", "summary": "Someone notes the rain."},
]
SUMMARY = """dataset: knkarthick/dialogsum
templates:
  - id: sum
    name: summarise
    input: "Summarise the dialogue:\\n{{ dialogue }}"
    target: "{{ summary }}"
  - id: sum-last
    name: summarise then ask
    input: "{{ dialogue }}\\nSummary?"
    target: "{{ summary }}"
"""


def _dialogue_project(tmp_path: Path, extra: str = "") -> Path:
    _write_jsonl(tmp_path / "validation.jsonl", DIALOGUES)
    _write_jsonl(tmp_path / "test.jsonl", [{**d, "id": d["id"] + "-t"} for d in DIALOGUES])
    (tmp_path / "sum.yaml").write_text(SUMMARY, encoding="utf-8")
    (tmp_path / "collection.yaml").write_text(
        "tasks:\n  - name: dialogsum\n    dataset: knkarthick/dialogsum\n"
        "    data_files: {validation: validation.jsonl, test: test.jsonl}\n    splits: [test]\n"
        f"    templates: sum.yaml\n{extra}", encoding="utf-8")
    return tmp_path / "collection.yaml"


def test_prompt_is_the_render_stripped_of_outer_whitespace_only(tmp_path: Path, cli: Any, cache_dir: Path,
                                                                  read_rows: Any) -> None:
    result = _build(cli, _dialogue_project(tmp_path, "    formats: [zero_shot]\n"), cache_dir)
    assert result.exit_code == 0, result.output
    rows = {(r["template_id"], r["row_index"]): r for r in read_rows(tmp_path / "out")}
    # A field at the very end of the prompt loses its trailing whitespace (README, Templates) ...
    assert rows[("sum", 0)]["prompt"] == "Summarise the dialogue:\n#Person1#: Hi.  How are you? \n#Person2#: Fine."
    assert rows[("sum", 2)]["prompt"] == "Summarise the dialogue:\n#Person1#: Rain again."
    assert rows[("sum", 0)]["completion"] == "Two people greet."
    # ... and keeps it, byte for byte, with literal text after it.
    assert rows[("sum-last", 0)]["prompt"] == "#Person1#: Hi.  How are you? \n#Person2#: Fine. \nSummary?"
    assert rows[("sum-last", 2)]["prompt"] == "#Person1#: Rain again.\t\nSummary?"


# --- 4. formats that give no rows are said at build time -----------------------------------------


def test_build_says_which_formats_gave_no_rows_and_why(tmp_path: Path, cli: Any, cache_dir: Path, read_rows: Any) -> None:
    collection = _gap_project(tmp_path, formats="[zero_shot, zero_shot_options]")
    result = _build(cli, collection, cache_dir)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("taskmill: note: ")]
    assert notes == ["taskmill: note: task 'gap': zero_shot_options: no rows from 1 of 2 templates "
                     "(choices already in the prompt (choices_in_prompt))"]
    assert {r["template_id"] for r in read_rows(tmp_path / "out") if r["format"] == "zero_shot_options"} == {"gap-a"}
    card = (tmp_path / "out" / "card.md").read_text()
    assert "skipped 4 rows of train / zero_shot_options: choices already in the prompt (choices_in_prompt)" in card


def test_build_says_nothing_when_every_format_has_rows(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    result = _build(cli, _gap_project(tmp_path), cache_dir)
    assert result.exit_code == 0 and "taskmill: note:" not in result.stderr, result.stderr


# --- 5. shots_split: few-shot for a dataset without a train split --------------------------------


def test_shots_split_gives_few_shot_without_a_train_split(tmp_path: Path, cli: Any, cache_dir: Path,
                                                           read_rows: Any) -> None:
    missing = _build(cli, _dialogue_project(tmp_path, "    formats: [few_shot]\n    shots: 1\n"), cache_dir)
    assert missing.exit_code == 2 and "need exemplars from split 'train'" in missing.stderr
    assert "set shots_split" in missing.stderr
    collection = _dialogue_project(tmp_path, "    formats: [few_shot]\n    shots: 1\n    shots_split: validation\n")
    result = _build(cli, collection, cache_dir)
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    assert len(rows) == 6 and {r["split"] for r in rows} == {"test"}
    for r in rows:
        (shot,) = r["shots"]
        exemplar = DIALOGUES[shot]
        assert r["prompt"].startswith(exemplar["dialogue"].strip() if r["template_id"] == "sum-last" else
                                      "Summarise the dialogue:\n" + exemplar["dialogue"].strip())


# --- 6. lint and build give the same one-line message for the same fault -------------------------


def test_an_out_of_range_index_expression_has_build_s_message_in_lint(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    # `label | int` is not the plain `answer_choices[label]` the label check reads: the engine says it.
    rows = [dict(r) for r in GAP_ROWS]
    rows[1]["label"] = 3
    collection = _gap_project(tmp_path, GOOD_GAP.replace("answer_choices[label]", "answer_choices[label | int]"), rows)
    built, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    assert message == ("target: answer_choices index 3 is out of range of the template's 3 answer_choices "
                       "['Bo', 'Cy', 'neither']; expected 0..2")
    assert "row train[1]" in built and "no element" not in built


def test_a_plain_label_out_of_range_has_the_label_message_in_both(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    rows = [dict(r) for r in GAP_ROWS]
    rows[3]["label"] = -1
    collection = _gap_project(tmp_path, rows=rows)
    _, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    assert message == "label -1 is out of range of the template's 3 answer_choices ['Max', 'Lea', 'neither']; expected 0..2"


def test_a_misspelled_key_is_one_error_in_lint_as_in_build(tmp_path: Path, cli: Any, cache_dir: Path) -> None:
    collection = _gap_project(tmp_path, GOOD_GAP.replace('    answer_choices: "{{ A }}', '    answer_choice: "{{ A }}'))
    built = _build_error(_build(cli, collection, cache_dir))
    linted = _lint(cli, tmp_path / "gap.yaml", tmp_path / "train.jsonl")
    errors = [line for line in linted.output.splitlines() if "error [" in line]
    assert linted.exit_code == 1 and len(errors) == 1, linted.output  # no render error after it
    message = errors[0].split("error [parse] ", 1)[1]
    assert message.startswith("template 'which': unknown key 'answer_choice'") and built.endswith(message)


@pytest.mark.parametrize("case", ["single-brace", "unknown-field", "null", "syntax"])
def test_lint_and_build_report_the_same_line(tmp_path: Path, cli: Any, cache_dir: Path, case: str) -> None:
    rows = [dict(r) for r in GAP_ROWS]
    template = GOOD_GAP
    if case == "single-brace":
        template = GOOD_GAP.replace("refer to {{ A }}?", "refer to {A}?")
    elif case == "unknown-field":
        template = GOOD_GAP.replace("{{ Text }}\\nWho", "{{ text }}\\nWho")
    elif case == "null":
        rows[1]["B"] = None
    else:
        template = GOOD_GAP.replace("{{ Pronoun }}' (at", "{{ Pronoun }' (at")
    collection = _gap_project(tmp_path, template, rows)
    built, message = _same_fault(cli, collection, tmp_path / "gap.yaml", tmp_path / "train.jsonl", cache_dir)
    expected = {"single-brace": "input: single-brace '{A}' would render literally; expected '{{ A }}'",
                "unknown-field": "input: uses field 'text', which the rows do not have",
                "null": "answer_choices: prints a null value (field 'B' is null); expected a value",
                "syntax": "input: Jinja syntax error at line 2"}[case]
    assert message.startswith(expected), message
