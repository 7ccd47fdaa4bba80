"""Labels that index ``answer_choices``: the range check that build and lint share.

``answer_choices[label]`` with a label outside the choices must not render: ``-1`` (the Hugging
Face "no label" value) would silently pick the last choice, and ``7`` of two choices renders empty
in the PromptSource dialect. ``taskmill build`` rejects such a row and ``taskmill templates lint``
reports it, both with :func:`label_problem`'s message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from taskmill.records import Template

_CHOICE_INDEX = re.compile(r"answer_choices\s*\[\s*([A-Za-z_][A-Za-z0-9_]*)\s*\]")


def _sources(template: Template) -> list[str]:
    """The Jinja sources a template renders, as its dialect renders them."""
    if template.dialect == "promptsource":
        main = [template.jinja if template.jinja is not None else template.input]
    else:
        main = [template.input, template.target]
    return main + [s for s in (template.answer_choices, template.cot_target) if s is not None]


def index_fields(template: Template) -> tuple[str, ...]:
    """Fields used directly as an index into ``answer_choices`` (``answer_choices[label]``)."""
    found: list[str] = []
    for source in _sources(template):
        for name in _CHOICE_INDEX.findall(source):
            if name not in found:
                found.append(name)
    return tuple(found)


def label_problem(row: Mapping[str, Any], fields: tuple[str, ...], choices: Sequence[str] | None) -> str | None:
    """What is wrong with a row's integer labels for these choices, or None when they are in range.

    Args:
        row: One dataset row.
        fields: The template's :func:`index_fields`.
        choices: The row's rendered answer choices (None: the template has none; nothing to check).
    """
    if choices is None:
        return None
    for name in fields:
        value = row.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < len(choices):
            return (f"{name} {value} is out of range of the template's {len(choices)} answer_choices "
                    f"{list(choices)}; expected 0..{len(choices) - 1}")
    return None
