"""Checks of a template against a dataset's field names, before any row is rendered.

``taskmill build`` (which stops at the first problem) and ``taskmill templates lint`` (which lists
them all) both take their static checks from :func:`static_problems`, so the same fault gets the
same message from both commands:

* ``parse``: a Jinja source does not compile, or uses a filter or test that does not exist;
* ``invalid-name``: a field whose name is not a Python identifier (GAP's ``A-coref``, a column with
  a space or a leading digit) written as a bare name: Jinja reads ``{{ A-coref }}`` as ``A - coref``,
  so the message names the field and the way to read it, ``example['A-coref']``;
* ``unknown-field``: a source reads a field the rows do not have;
* ``single-brace``: literal text such as ``{premise}`` whose name is a field or a variable of the
  template, which Jinja prints verbatim (a format-string habit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jinja2
from jinja2 import nodes

from taskmill.errors import TemplateError
from taskmill.records import Template
from taskmill.templates.engine import ROW_VARIABLE, Nulls, compile_template, environment, variables

# "{name}" or "{ name }" not part of "{{" / "}}": how Python format strings and slips of the pen look.
_SINGLE_BRACE = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")
_JINJA_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_RESERVED = {"answer_choices"}


@dataclass(frozen=True)
class Problem:
    """One static problem: its lint code and its one-line message (which names the source)."""

    code: str
    message: str


def sources(template: Template) -> list[tuple[str, str]]:
    """(field name, Jinja source) pairs of a template, as its dialect renders them."""
    if template.dialect == "promptsource" and template.jinja is not None:
        main = [("jinja", template.jinja)]
    else:
        main = [("input", template.input), ("target", template.target)]
    extra = [("answer_choices", template.answer_choices), ("cot_target", template.cot_target)]
    return main + [(name, src) for name, src in extra if src is not None]


def literal_texts(source: str) -> list[str]:
    """Text a Jinja source prints verbatim (template data and raw blocks)."""
    try:
        ast = environment(True).parse(source)
    except jinja2.TemplateSyntaxError:
        return []
    return [node.data for node in ast.find_all(nodes.TemplateData)]


def single_braces(source: str, names: Iterable[str]) -> list[str]:
    """``{name}`` snippets in the literal text of a source whose name is in ``names``."""
    known = set(names)
    return [m.group(0) for text in literal_texts(source) for m in _SINGLE_BRACE.finditer(text) if m.group(1) in known]


def bare_invalid_names(source: str, columns: Iterable[str]) -> list[str]:
    """Fields whose names are not identifiers, written bare inside ``{{ }}`` or ``{% %}`` (outside
    string literals, so ``example['A-coref']`` is fine), in order of first use."""
    invalid = [c for c in columns if not c.isidentifier()]
    if not invalid:
        return []
    code = " ".join(_STRING_LITERAL.sub("''", m.group(0)) for m in _JINJA_CODE.finditer(source))
    found = []
    for name in sorted(invalid, key=len, reverse=True):  # "A-coref-2" before "A-coref"
        match = re.search(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", code)
        if match:
            found.append((match.start(), name))
            code = code.replace(name, " ")
    return [name for _, name in sorted(found)]


def _parses(source: str) -> bool:
    try:
        environment(True).parse(source)
    except jinja2.TemplateSyntaxError:
        return False
    return True


def _rewritten(source: str, names: Sequence[str]) -> str:
    """``source`` with each bare name inside Jinja code written as ``example['name']``."""
    def fix(code: re.Match[str]) -> str:
        text = code.group(0)
        for name in sorted(names, key=len, reverse=True):
            text = re.sub(r"(?<![\w.'\"])" + re.escape(name) + r"(?![\w'\"])", f"{ROW_VARIABLE}['{name}']", text)
        return text
    return _JINJA_CODE.sub(fix, source)


def invalid_names(source: str, columns: Iterable[str]) -> list[str]:
    """:func:`bare_invalid_names` that are the fault: in a source that parses, every one; in one
    that does not (``{{ first name }}``), only when writing them as ``example[...]`` makes it parse
    (otherwise the syntax error is the fault, and is reported as one)."""
    names = bare_invalid_names(source, columns)
    if names and not _parses(source) and not _parses(_rewritten(source, names)):
        return []
    return names


def invalid_name_message(where: str, name: str) -> str:
    """The message for a field written as a bare name that Jinja cannot read."""
    return f"{where}: '{name}' is not a valid name: use {ROW_VARIABLE}['{name}']"


def static_problems(template: Template, columns: Sequence[str] | None, nulls: Nulls | None = None) -> list[Problem]:
    """Every static problem of a template, in the order build reports them (it stops at the first).

    Args:
        template: The template.
        columns: The rows' field names, in order (None: unknown, so only the checks that need no
            data run: compiling and single braces around the template's own variables).
        nulls: The null rule it will render with (None: its dialect's). It changes no finding; given
            the renderer's, the compiled template this check makes is the one rendering reuses
            (:func:`compile_template` caches it per process, and forked build workers inherit it).
    """
    out: list[Problem] = []
    invalid = [(where, name) for where, src in sources(template) for name in invalid_names(src, columns or ())]
    # A bare invalid name also fails to parse ("Pronoun offset") or reads a wrong field ("coref"):
    # those follow from it, so they are not reported beside it.
    if invalid:
        return [Problem("invalid-name", invalid_name_message(where, name)) for where, name in invalid]
    try:
        compile_template(template, nulls)
    except TemplateError as err:
        return [Problem("parse", err.message)]
    used: set[str] = set()
    for where, src in sources(template):
        names = variables(src) - _RESERVED
        used |= names
        if columns is not None:
            for name in sorted(names - set(columns)):
                out.append(Problem("unknown-field", f"{where}: uses field '{name}', which the rows do not have;"
                                   f" expected one of: {', '.join(columns)}"))
    known = used | set(columns or ())
    for where, src in sources(template):
        for snippet in dict.fromkeys(single_braces(src, known)):
            name = snippet.strip("{} ")
            out.append(Problem("single-brace", f"{where}: single-brace '{snippet}' would render literally;"
                               f" expected '{{{{ {name} }}}}'"))
    return out
