"""Checks that turn silent template bugs into errors before (or while) a corpus is built.

* A template reading a field the dataset does not have (PromptSource's lenient Jinja would render
  it as an empty string).
* Single-brace ``{field}`` text, which Jinja prints literally (a format-string habit).
* An integer label indexing ``answer_choices`` out of range (``answer_choices[7]`` with two
  choices renders empty in the PromptSource dialect, and ``-1``, the HF "no label" value, would
  silently pick the last choice).
* A Jinja source that does not compile, or uses a filter or test that does not exist (checked
  before any row is rendered, so the error names the file and task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from taskmill.errors import DataError, TemplateError
from taskmill.records import Template
from taskmill.templates.labels import index_fields, label_problem

__all__ = ["check_labels", "check_template", "index_fields", "single_brace_fields", "sources"]

_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_SINGLE_BRACE = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")


def sources(template: Template) -> list[tuple[str, str]]:
    """(field name, Jinja source) pairs of a template, as its dialect renders them."""
    if template.dialect == "promptsource":
        main = [("jinja", template.jinja if template.jinja is not None else template.input)]
    else:
        main = [("input", template.input), ("target", template.target)]
    extra = [("answer_choices", template.answer_choices), ("cot_target", template.cot_target)]
    return main + [(name, src) for name, src in extra if src is not None]


def single_brace_fields(source: str, columns: Sequence[str]) -> list[str]:
    """Dataset fields written as ``{field}`` outside Jinja constructs (they would render literally)."""
    text = _JINJA_CONSTRUCT.sub("", source)
    return [name for name in _SINGLE_BRACE.findall(text) if name in columns]


def check_template(template: Template, columns: Sequence[str], *, file: str, task: str, row: str) -> None:
    """Reject a template that does not compile, reads absent fields or has single-brace placeholders.

    Args:
        template: The template.
        columns: The fields of the split's rows.
        file: Template file (for the message).
        task: Task name (for the message).
        row: The first row checked, e.g. ``train[0]`` (for the message).

    Raises:
        TemplateError: The first problem found.
    """
    from taskmill.templates.engine import compile_template, variables

    try:
        compile_template(template)
    except TemplateError as err:
        raise TemplateError(err.message, file=file, task=task, template=template.name) from None
    for name, source in sources(template):
        braces = single_brace_fields(source, columns)
        if braces:
            raise TemplateError(
                f"{name}: single-brace '{{{braces[0]}}}' would render literally; expected '{{{{ {braces[0]} }}}}'",
                file=file, task=task, template=template.name,
            )
        missing = sorted(variables(source) - set(columns) - {"answer_choices"})
        if missing:
            raise TemplateError(
                f"{name}: uses field '{missing[0]}' which the row lacks; expected one of: {', '.join(columns)}",
                file=file, task=task, template=template.name, row=row,
            )


def check_labels(row: Mapping[str, Any], fields: tuple[str, ...], choices: Sequence[str] | None, *,
                 file: str, task: str, template: str, where: str) -> None:
    """Raise when an integer field indexing ``answer_choices`` is out of range for this row.

    The check is :func:`taskmill.templates.labels.label_problem`, which lint reports with the same text.

    Raises:
        DataError: ``row[field]`` is an int outside ``0 .. len(choices) - 1``.
    """
    problem = label_problem(row, fields, choices)
    if problem is not None:
        raise DataError(problem, file=file, task=task, template=template, row=where)
