"""The template engine: taskmill dialect (strict, sandboxed) and promptsource dialect edge cases.

Edge cases are checked against a hand-derived expected value and, when promptsource is installed,
against PromptSource's own ``Template.apply`` too.
"""

from __future__ import annotations

import random
import warnings

import pytest

from taskmill.errors import TemplateError
from taskmill.records import Template
from taskmill.records import Rendered
from taskmill.templates.engine import (
    PROMPTSOURCE_NULLS,
    RAISE_ON_NULL,
    CompiledTemplate,
    Nulls,
    NullValueError,
    compile_template,
    variables,
)


def tm(input: str, target: str, choices: str | None = None, cot: str | None = None) -> CompiledTemplate:
    return compile_template(Template(id="t", name="t", input=input, target=target, answer_choices=choices, cot_target=cot))


def ps(jinja: str, choices: str | None = None) -> CompiledTemplate:
    return compile_template(Template(id="p", name="p", input="", target="", answer_choices=choices,
                                     dialect="promptsource", jinja=jinja))


def promptsource_apply(jinja: str, row: dict, choices: str | None = None, seed: int = 0) -> list[str]:
    """PromptSource's own rendering (skips the calling test when promptsource is absent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        templates = pytest.importorskip("promptsource.templates")
    random.seed(seed)
    return templates.Template("p", jinja, "", answer_choices=choices).apply(dict(row))


def test_taskmill_render_input_target_choices() -> None:
    t = tm("Review: {{ sentence }}\nMood?", "{{ answer_choices[label] }}", "negative ||| positive")
    out = t.render({"sentence": "great film", "label": 1})
    assert (out.input, out.target, out.answer_choices, out.target_index) == (
        "Review: great film\nMood?", "positive", ("negative", "positive"), 1)
    assert t.render_parts({"sentence": "bad", "label": 0}) == ["Review: bad\nMood?", "negative"]


def test_strict_undefined_names_the_field() -> None:
    with pytest.raises(TemplateError) as info:
        tm("{{ premise }} / {{ hypothesis }}", "x").render({"premise": "p"})
    assert "'hypothesis' is undefined" in info.value.line()
    assert "template 't'" in info.value.line() and "premise" in info.value.line()


def test_sandbox_blocks_dunder_access() -> None:
    with pytest.raises(TemplateError, match="unsafe|SecurityError|not safely accessible"):
        tm("{{ ''.__class__.__mro__[1].__subclasses__() }}", "x").render({})
    with pytest.raises(TemplateError):
        ps("{{ ''.__class__.__mro__ }} ||| x").render_parts({})


def test_syntax_error_names_template_and_line() -> None:
    with pytest.raises(TemplateError, match=r"input: Jinja syntax error at line 2"):
        tm("ok\n{{ broken ", "x")


def test_choice_filter_is_seeded_not_global() -> None:
    t = tm("{{ ['a', 'b', 'c', 'd', 'e'] | choice }} {{ [1, 2, 3, 4, 5, 6] | choice }}", "x")
    first = [t.render({}, seed=s).input for s in range(20)]
    random.seed(12345)  # the global RNG must not matter
    assert [t.render({}, seed=s).input for s in range(20)] == first
    assert len(set(first)) > 3  # different seeds give different draws
    rng = random.Random(7)
    assert t.render({}, seed=7).input == f"{rng.choice('abcde')} {rng.choice([1, 2, 3, 4, 5, 6])}"
    with pytest.raises(TemplateError, match="seeded RNG"):
        t.render({}, seed=None)


def test_choice_seeded_matches_promptsource() -> None:
    jinja = "{{ [text, 'b', 'c'] | choice }} {{ range(10) | list | choice }} ||| {{ label }}"
    row = {"text": "a", "label": "x"}
    for seed in range(5):
        assert ps(jinja).render_parts(row, seed=seed) == promptsource_apply(jinja, row, seed=seed)


def test_pipes_inside_a_row_value_stay_in_their_part() -> None:
    row = {"text": "left ||| right", "label": "x"}
    jinja = "{{ text }} ||| {{ label }}"
    assert ps(jinja).render_parts(row) == ["left ||| right", "x"]
    assert ps("{{ text | upper }} ||| {{ text | length }}").render_parts(row) == promptsource_apply(
        "{{ text | upper }} ||| {{ text | length }}", row)
    assert tm("{{ text }}", "{{ label }}").render(row).input == "left ||| right"
    assert ps(jinja).render_parts(row) == promptsource_apply(jinja, row)


def test_long_value_truncated_like_promptsource() -> None:
    text = "word " * 600  # 3,000 characters
    row = {"text": text, "label": "x"}
    expected = text[: 2048 - 3].rsplit(" ", 1)[0] + "..."  # Jinja's truncate(2048), as PromptSource applies it
    parts = ps("{{ text }} ||| {{ label }}").render_parts(row)
    assert parts == [expected, "x"]
    assert tm("{{ text }}", "x").render(row).input == text.strip()  # taskmill dialect never truncates
    long_pipes = {"text": "a " * 1020 + "|||" + " b" * 20, "label": "x"}
    assert ps("{{ text }} ||| {{ label }}").render_parts(long_pipes) == promptsource_apply(
        "{{ text }} ||| {{ label }}", long_pipes)
    assert parts == promptsource_apply("{{ text }} ||| {{ label }}", row)


def test_promptsource_dialect_is_lenient_about_missing_fields() -> None:
    jinja = "Q: {{ question }}{{ missing }}! ||| {{ answer }}"
    row = {"question": "why", "answer": "because"}
    assert ps(jinja).render_parts(row) == ["Q: why!", "because"]
    assert ps(jinja).render_parts(row) == promptsource_apply(jinja, row)


def test_promptsource_answer_choices_and_reserved_key() -> None:
    t = ps("{{ premise }} ||| {{ answer_choices[label] }}", choices="Yes ||| No")
    out = t.render({"premise": "p", "label": 1})
    assert (out.input, out.target, out.answer_choices) == ("p", "No", ("Yes", "No"))
    with pytest.raises(TemplateError, match="answer_choices"):
        t.render({"premise": "p", "label": 0, "answer_choices": "x"})


def test_promptsource_part_count_enforced_by_render() -> None:
    t = ps("{% if label == 1 %}{{ text }} ||| yes{% endif %}")
    assert t.render_parts({"text": "a", "label": 0}) == [""]
    with pytest.raises(TemplateError, match="1 part"):
        t.render({"text": "a", "label": 0})


def test_cot_target_and_variables() -> None:
    t = tm("{{ q }}", "{{ a }}", cot="{{ why }} So the answer is {{ a }}.")
    assert t.render_cot({"q": "1+1?", "a": "2", "why": "One and one make two."}) == "One and one make two. So the answer is 2."
    assert tm("{{ q }}", "{{ a }}").render_cot({"q": "", "a": ""}) is None
    assert variables("{% for c in choices %}{{ c }}{% endfor %}{{ zip(a, b) | list }}{{ x.y }}") == {"choices", "a", "b", "x"}
    assert variables("{{ broken") == set()


def test_compile_is_cached_per_template() -> None:
    template = Template(id="c", name="c", input="{{ a }}", target="{{ b }}")
    assert compile_template(template) is compile_template(Template(id="c", name="c", input="{{ a }}", target="{{ b }}"))


# --- nulls and unknown filters (issue 21) ---------------------------------------------------------

def test_printed_null_raises_naming_the_field() -> None:
    cases = [("Review: {{ sentence }}", "x", "input", "prints a null value"),
             ("{{ sentence | upper }}", "x", "input", "prints a null value"),
             ("{{ sentence | string | truncate(10) }}", "x", "input", "prints a null value"),
             ("ok", "{{ label | int }}", "target", "converts a null value to a number")]
    for source, target, field, what in cases:
        row = {"sentence": None, "label": None}
        with pytest.raises(NullValueError) as info:
            tm(source, target).render(row)
        assert f"template 't': {field}: {what} (field " in info.value.line(), source
    with pytest.raises(NullValueError, match="cot_target: prints a null value \\(field 'why' is null\\)"):
        tm("{{ q }}", "{{ a }}", cot="{{ why }}").render_cot({"q": "q", "a": "a", "why": None})
    with pytest.raises(NullValueError, match="a value inside a field is null"):
        tm("{{ tags | join(', ') }}", "x").render({"tags": ["a", None]})
    with pytest.raises(NullValueError, match="field 'label' is null") as info:
        tm("x", "{{ answer_choices[label] }}", "no ||| yes").render({"label": None})
    assert info.value.fields == ("label",)


def test_null_that_is_tested_not_printed_renders() -> None:
    t = tm("{% if sentence is none %}no text{% else %}{{ sentence }}{% endif %} / {{ sentence | default('-', true) }}"
           " / {{ other }}", "{{ sentence if sentence else 'empty' }}")
    assert t.render({"sentence": None, "other": "o"}) == Rendered("no text / - / o", "empty", None)
    with pytest.raises(NullValueError) as info:  # names the printed null, not the tested one
        t.render({"sentence": None, "other": None})
    assert info.value.fields == ("other",)


def test_null_rule_prints_a_declared_text() -> None:
    template = Template(id="t", name="t", input="{{ a }} {{ a | upper }} {{ [a, b] | join('+') }}", target="{{ b }}")
    assert compile_template(template, Nulls("n/a")).render({"a": None, "b": "x"}) == Rendered("n/a N/A n/a+x", "x", None)
    number = Template(id="n", name="n", input="{{ answer_choices[label | int] }}", target="x", answer_choices="a ||| b")
    with pytest.raises(NullValueError, match="converts a null value to a number"):  # never silently choice 0
        compile_template(number, Nulls("n/a")).render({"label": None})


def test_promptsource_dialect_prints_none_as_promptsource_unless_told() -> None:
    jinja = "{{ a }} {{ a | upper }} {{ b if c else a }} ||| {{ [a, 'x'] | join(',') }}"
    row = {"a": None, "b": "b", "c": False}
    assert ps(jinja).render_parts(row) == ["None NONE None", "None,x"]
    assert ps(jinja).render_parts(row) == promptsource_apply(jinja, row)
    template = Template(id="p", name="p", input="", target="", dialect="promptsource", jinja=jinja)
    with pytest.raises(NullValueError, match="jinja: prints a null value \\(field 'a' is null\\)"):
        compile_template(template, RAISE_ON_NULL).render_parts(row)
    assert compile_template(template, PROMPTSOURCE_NULLS).render_parts(row) == ["None NONE None", "None,x"]
    full = {"a": "v", "b": "b", "c": False}
    assert compile_template(template, RAISE_ON_NULL).render_parts(full) == ps(jinja).render_parts(full)


@pytest.mark.parametrize("source, what", [
    ("{{ x | shout }}", "unknown Jinja filter 'shout' at line 1"),
    ("a\n{% if x > 5 %}{{ x | shout }}{% endif %}", "unknown Jinja filter 'shout' at line 2"),
    ("{% if x is bogus %}y{% endif %}", "unknown Jinja test 'bogus' at line 1"),
])
def test_unknown_filter_or_test_is_a_compile_error(source: str, what: str) -> None:
    with pytest.raises(TemplateError, match=f"template 'u': input: {what}; expected a Jinja built-in"):
        compile_template(Template(id="u", name="u", input=source, target="y"))
    with pytest.raises(TemplateError, match=what):
        ps(f"{source} ||| y")
    assert variables(source) in (set(), {"x"})  # lint's helper does not raise on it


def test_masked_text_is_the_templates_own_words_with_every_printed_value_masked() -> None:
    from taskmill.templates.engine import masked_text, template_texts

    loop = Template(id="t", name="t", target="{{ answer_choices[label] }}", answer_choices="No ||| Yes",
                    input="Q:  {{ question | trim }}\n{% for c in choices %}{{ 'ABCD'[loop.index0] }}) {{ c }}\n{% endfor %}"
                          "{# a comment #}{{ 'Why?' if why else 'Pick one.' }}")
    assert masked_text(loop) == "Q: {value}\n{value}) {value}\n{value}\nNo | Yes"
    per_row = Template(id="r", name="r", input="{{ premise }} What happened next?", target="{{ answer_choices[label] }}",
                       answer_choices="{{ choice1 }} ||| {{ choice2 }}")
    assert masked_text(per_row) == "{value} What happened next?\n{value} | {value}"
    open_ended = Template(id="o", name="o", input="Summarise: {{ document }}", target="{{ summary }}")
    assert masked_text(open_ended) == "Summarise: {value}"
    promptsource = Template(id="p", name="p", input="", target="", answer_choices="yes ||| no", dialect="promptsource",
                            jinja="{{ passage }}\nQuestion: {{ question }}? ||| {{ answer_choices[label] }}")
    assert masked_text(promptsource) == "{value}\nQuestion: {value}?\nyes | no"
    assert template_texts([open_ended, per_row]) == {"o": "Summarise: {value}", "r": "{value} What happened next?\n{value} | {value}"}
    assert masked_text(Template(id="x", name="x", input="{{ unclosed", target="")) == ""
