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
from taskmill.templates.engine import CompiledTemplate, compile_template, variables


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
