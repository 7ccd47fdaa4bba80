"""Checks that turn silent template bugs into errors before (or while) a corpus is built.

* A template reading a field the dataset does not have (PromptSource's lenient Jinja would render
  it as an empty string).
* A field whose name is not an identifier written bare (``{{ A-coref }}`` is ``A - coref`` to
  Jinja): the message says to write ``example['A-coref']``.
* Single-brace ``{field}`` text, which Jinja prints literally (a format-string habit).
* An integer label indexing ``answer_choices`` out of range (``answer_choices[7]`` with two
  choices renders empty in the PromptSource dialect, and ``-1``, the HF "no label" value, would
  silently pick the last choice).
* A Jinja source that does not compile, or uses a filter or test that does not exist (checked
  before any row is rendered, so the error names the file and task).

The static checks are :mod:`taskmill.templates.static`'s and the label check
:mod:`taskmill.templates.labels`'s, shared with ``taskmill templates lint`` so that both commands
give the same message for the same fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskmill.errors import DataError, TemplateError
from taskmill.records import Template
from taskmill.templates.labels import index_fields, label_problem

if TYPE_CHECKING:
    from taskmill.templates.engine import Nulls

__all__ = ["check_labels", "check_template", "index_fields"]


def check_template(template: Template, columns: Sequence[str], *, file: str, task: str, row: str,
                   nulls: Nulls | None = None) -> None:
    """Reject a template that does not compile, reads absent fields, names a field Jinja cannot read
    (``A-coref``) or has single-brace placeholders.

    The checks are :func:`taskmill.templates.static.static_problems`, which lint reports with the
    same messages; build stops at the first.

    Args:
        template: The template.
        columns: The fields of the split's rows.
        file: Template file (for the message).
        task: Task name (for the message).
        row: The first row checked, e.g. ``train[0]`` (for the message about fields it lacks).
        nulls: The task's null rule, so that the template compiled here is the one its rows render
            with (compiled once per process).

    Raises:
        TemplateError: The first problem found.
    """
    from taskmill.templates.static import static_problems

    for problem in static_problems(template, columns, nulls):
        raise TemplateError(problem.message, file=file, task=task, template=template.name,
                            row=row if problem.code == "unknown-field" else None)


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
