"""The whole row as ``example`` (fields that are not identifiers) and the ``answer_choices`` index
message, at the engine and static-check level (issue 17; the CLI side is tests/builders/test_any_schema.py)."""

from __future__ import annotations

import pytest

from taskmill.errors import TemplateError
from taskmill.records import Template
from taskmill.templates.engine import ChoiceIndexError, NullValueError, compile_template, variables
from taskmill.templates.static import invalid_names, static_problems

ROW = {"Text": "Zoe waved.", "A": "Zoe", "A-coref": True, "Pronoun-offset": 4, "label": 1, "first name": "Zoe"}


def _t(input: str, target: str = "x", choices: str | None = None, dialect: str = "taskmill") -> Template:
    if dialect == "promptsource":
        return Template(id="t", name="t", input="", target="", answer_choices=choices, dialect="promptsource",
                        jinja=f"{input} ||| {target}")
    return Template(id="t", name="t", input=input, target=target, answer_choices=choices)


def test_example_reads_any_field_and_counts_as_reading_it() -> None:
    t = _t("{{ example['Pronoun-offset'] }} {{ example['first name'] }} {{ example.A }} {{ example.get('A-coref') }}")
    assert compile_template(t).render(ROW).input == "4 Zoe Zoe True"
    assert variables(t.input) == {"Pronoun-offset", "first name", "A"}  # `get` is the dict's method, not a field


def test_a_row_field_named_example_wins() -> None:
    row = {"example": "my own field", "label": 0}
    assert compile_template(_t("{{ example }}")).render(row).input == "my own field"


def test_templates_not_naming_example_do_not_get_it() -> None:
    # PromptSource parity: a template that never names `example` renders from exactly the row, as before
    # (and pays nothing for the copy); PromptSource-format files may use it too.
    assert not compile_template(_t("{{ Text }}")).reads_row
    assert not compile_template(_t("{{ Text }}", dialect="promptsource")).reads_row
    ps = compile_template(_t("{{ example['A-coref'] }}", "{{ A }}", dialect="promptsource"))
    assert ps.render_parts(ROW) == ["True", "Zoe"]


def test_a_null_read_through_example_names_the_field() -> None:
    with pytest.raises(NullValueError) as info:
        compile_template(_t("{{ example['A-coref'] }}")).render({**ROW, "A-coref": None})
    assert info.value.fields == ("A-coref",) and "field 'A-coref' is null" in info.value.message


def test_invalid_names_are_found_in_code_only() -> None:
    columns = list(ROW)
    assert invalid_names("{{ A-coref }} and {% if Pronoun-offset > 2 %}y{% endif %}", columns) == ["A-coref", "Pronoun-offset"]
    assert invalid_names("A-coref: {{ example['A-coref'] }}", columns) == []  # literal text and a string key
    assert invalid_names("{{ first name }}", columns) == ["first name"]  # a syntax error that example[...] fixes
    assert invalid_names("{{ Text }' {{ example['A-coref'] }}", columns) == []  # a syntax error of its own


def test_static_problems_say_the_intended_field_not_jinja_s_reading() -> None:
    problems = static_problems(_t("{{ Text }} {{ A-coref }}"), list(ROW))
    assert [(p.code, p.message) for p in problems] == [
        ("invalid-name", "input: 'A-coref' is not a valid name: use example['A-coref']")]
    # Without the rows, nothing is known about the names: no claim is made.
    assert static_problems(_t("{{ Text }} {{ A-coref }}"), None) == []


def test_an_out_of_range_index_expression_gets_the_label_message() -> None:
    ct = compile_template(_t("q", "{{ answer_choices[label | int] }}", "no ||| yes"))
    assert ct.render({"label": 1}).target == "yes"
    with pytest.raises(ChoiceIndexError) as info:
        ct.render({"label": 2})
    assert info.value.message == ("target: answer_choices index 2 is out of range of the template's 2 answer_choices"
                                  " ['no', 'yes']; expected 0..1")
    # Negative indices inside the range stay Python's: "the last choice" is a common template idiom.
    assert compile_template(_t("{{ answer_choices[-1] }}", "x", "a ||| b")).render({}).input == "b"
    with pytest.raises(TemplateError):
        compile_template(_t("{{ answer_choices[-3] }}", "x", "a ||| b")).render({})


def test_promptsource_dialect_keeps_its_lenient_index() -> None:
    # PromptSource renders an index past the choices as empty text; parity keeps that.
    ct = compile_template(_t("q {{ answer_choices[label] }}", "t", "no ||| yes", dialect="promptsource"))
    assert ct.render_parts({"label": 5}) == ["q", "t"]
