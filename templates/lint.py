"""``taskmill templates lint``: find template problems before a build trips on them.

Checks, each finding naming file, template and row:

* ``parse``: the file does not load (YAML, schema) or a Jinja source does not compile (error);
* ``duplicate``: two templates share an id or a name (error);
* ``invalid-name``: a field whose name is not an identifier written bare (``{{ A-coref }}``, which
  Jinja reads as ``A - coref``); the message says to write ``example['A-coref']`` (error);
* ``unknown-field``: a source reads a variable the dataset rows do not have (error, in both
  dialects, as in build: PromptSource would render it as empty text);
* ``single-brace``: literal text such as ``{premise}`` whose name is a row field (or a variable of
  the template): Jinja prints it verbatim, the classic silent template bug (error);
* ``render``: the template fails on a row (error), with the message ``taskmill build`` stops on;
* ``label-out-of-range``: an integer label indexing ``answer_choices`` is outside the choices
  (``-1``, HF's "no label"): the row ``taskmill build`` rejects, with build's message (error);
* ``not-applicable``: a promptsource-dialect template renders empty on a row, PromptSource's
  "this template does not apply", which build skips (warning);
* ``empty-render``: the input or the target renders empty on a row (warning);
* ``target-not-choice``: the target is not one of the answer choices (error for templates of the
  original task, warning when ``original_task`` is false).

Every row of the data file is checked unless a sample (the first N rows) is asked for: the row
checks are those of ``taskmill build`` (shared with it, :mod:`taskmill.templates.labels`), so a file
that lints clean against the rows also builds. The static checks are build's too
(:mod:`taskmill.templates.static`), and every message is build's message for the same fault:
build's line is ``FILE: task 'T': template 'N': row split[i]: MESSAGE``, lint's is
``FILE: template 'N': row data.jsonl:LINE: LEVEL [code] MESSAGE``. Row-level findings are reported once per template
and check, at the first row, with a count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from taskmill.errors import DataError, TaskmillError, TemplateError
from taskmill.records import Rendered, Template, TemplateFile
from taskmill.templates.engine import ChoiceIndexError, NullValueError, compile_template, null_error_message
from taskmill.templates.fileformat import collect_taskmill, duplicate_problems
from taskmill.fileio import JSON_OBJECT_EXPECTED, iter_jsonl, parse_yaml, read_text, utf8_problem
from taskmill.templates.labels import index_fields, label_problem
from taskmill.templates.promptsource import load_promptsource
from taskmill.templates.static import sources, static_problems

__all__ = ["Finding", "LintReport", "lint_file", "lint_paths", "read_rows", "sources"]

Level = Literal["error", "warning"]
# Static findings after which every row would fail too (said once, not per row).
_FAILS_EVERY_ROW = ("parse", "unknown-field", "invalid-name")


@dataclass(frozen=True)
class Finding:
    """One problem found by lint."""

    level: Level
    code: str
    message: str
    file: str
    template: str | None = None
    row: str | None = None

    def line(self) -> str:
        """``FILE: template 'T': row R: LEVEL [code] message`` on one line."""
        where = [self.file]
        if self.template is not None:
            where.append(f"template '{self.template}'")
        if self.row is not None:
            where.append(f"row {self.row}")
        return ": ".join([*where, f"{self.level} [{self.code}] {' '.join(self.message.split())}"])


@dataclass
class LintReport:
    """Findings over all files, with what was checked."""

    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    templates: int = 0
    rows: int = 0
    sample: int | None = None
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        """Number of error findings."""
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        """Number of warning findings."""
        return sum(f.level == "warning" for f in self.findings)

    def summary(self) -> str:
        """One line: counts of errors, warnings, files, templates and rows (which, and how fast)."""
        line = (f"{self.errors} error(s), {self.warnings} warning(s) in {self.files} file(s),"
                f" {self.templates} template(s), {self.rows} row(s)")
        if self.sample is not None and self.rows >= self.sample:
            line += f" (the first {self.sample} row(s) only; omit --rows to check every row)"
        if self.rows and self.seconds > 0:
            line += f" in {self.seconds:.2f} s ({self.rows / self.seconds:,.0f} rows/s)"
        return line


def read_rows(path: str | Path, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
    """The first ``limit`` rows of a JSONL file, labelled ``name:line``.

    Raises:
        DataError: Missing file, a line that is not a JSON object (build's message for it), or no rows.
    """
    path = Path(path)
    rows: list[tuple[str, dict[str, Any]]] = []
    if not path.is_file():
        raise DataError("data file not found", file=str(path))
    try:
        for number, row in iter_jsonl(path):
            if limit is not None and len(rows) >= limit:
                break
            if not isinstance(row, dict):
                raise DataError(JSON_OBJECT_EXPECTED, file=str(path), row=f"line {number}")
            rows.append((f"{path.name}:{number}", row))
    except UnicodeDecodeError:
        raise DataError(utf8_problem(path) or "not valid UTF-8", file=str(path)) from None
    if not rows:
        raise DataError("no rows (expected JSON Lines, one object per line)", file=str(path))
    return rows


def load_for_lint(path: Path) -> tuple[TemplateFile | None, list[str]]:
    """Load a template file keeping the valid templates, with every problem as text."""
    try:
        text = read_text(path)
        if "!Template" in text[:4096]:
            tf = load_promptsource(path)
            return tf, duplicate_problems(tf.templates)
        return collect_taskmill(parse_yaml(text, path), path)
    except TaskmillError as err:
        return None, list(getattr(err, "problems", [err.message]))
    except (OSError, UnicodeDecodeError) as err:
        return None, [f"cannot read: {err}"]


def _static_findings(template: Template, file: str, fields: Sequence[str] | None) -> list[Finding]:
    """Findings that need no rendering (build's static checks, :func:`static_problems`)."""
    return [Finding("error", p.code, p.message, file, template.name) for p in static_problems(template, fields)]


def _render(template: Template, row: dict[str, Any], seed: int) -> Rendered | tuple[Level, str, str]:
    """The rendered row, or the (level, code, message) problem that stopped it.

    Decided as ``taskmill build`` decides (``builders.render.TemplateRenderer.render``): a failed
    render is an error, except a promptsource-dialect render that is empty throughout.
    """
    compiled = compile_template(template)
    try:
        return compiled.render(row, seed=seed)
    except NullValueError as err:  # build's message under the default on_null (error)
        return ("error", "render", null_error_message(err.message))
    except ChoiceIndexError as err:  # answer_choices[expression] out of range: build's message
        return ("error", "label-out-of-range", err.message)
    except TemplateError as err:
        if template.dialect == "promptsource":
            try:
                parts = compiled.render_parts(row, seed=seed)
            except TemplateError:
                parts = ["?"]
            if not any(parts):
                # PromptSource's convention for "this template does not apply to this row" (e.g.
                # trec's per-category templates): build skips the row and counts it on the card.
                return ("warning", "not-applicable", "renders empty on this row, so the row is skipped")
        return ("error", "render", err.message)


def _label_problem(template: Template, row: dict[str, Any], seed: int, out: Rendered | tuple[Level, str, str]) -> str | None:
    """Build's label check on a row (after a render, or where the render failed), or None."""
    fields = index_fields(template)
    if not fields:
        return None
    if isinstance(out, Rendered):
        # build skips a row that renders empty throughout before looking at its labels
        return label_problem(row, fields, out.answer_choices) if out.input or out.target else None
    if out[1] not in ("render", "label-out-of-range") or template.answer_choices is None:
        return None
    try:
        choices = compile_template(template).choices(row, seed)
    except TemplateError:
        return None
    return label_problem(row, fields, choices)


def _row_problems(template: Template, row: dict[str, Any], seed: int) -> list[tuple[Level, str, str]]:
    """(level, code, message) problems of rendering one row."""
    out = _render(template, row, seed)
    label = _label_problem(template, row, seed, out)
    if label is not None:
        return [("error", "label-out-of-range", label)]
    if isinstance(out, tuple):
        return [out]
    problems: list[tuple[Level, str, str]] = []
    for part in ("input", "target"):
        if not getattr(out, part):
            problems.append(("warning", "empty-render", f"{part} renders empty"))
    if out.answer_choices is not None and out.target and out.target_index is None:
        level: Level = "warning" if template.metadata.original_task is False else "error"
        problems.append((level, "target-not-choice",
                         f"target {out.target!r:.80} is not one of answer_choices {list(out.answer_choices)!r:.160}"))
    return problems


def _row_findings(template: Template, file: str, rows: Sequence[tuple[str, dict[str, Any]]], seed: int) -> list[Finding]:
    """Render the rows; one finding per check, at its first row, with how many rows hit it."""
    first: dict[str, Finding] = {}
    counts: dict[str, int] = {}
    for label, row in rows:
        for level, code, message in _row_problems(template, row, seed):
            counts[code] = counts.get(code, 0) + 1
            first.setdefault(code, Finding(level, code, message, file, template.name, label))
    out = []
    for code, finding in first.items():
        more = counts[code] - 1
        suffix = f" (and {more} more of {len(rows)} rows)" if more else ""
        out.append(Finding(finding.level, code, finding.message + suffix, file, template.name, finding.row))
    return out


def lint_file(path: str | Path, rows: Sequence[tuple[str, dict[str, Any]]] | None = None, seed: int = 0) -> tuple[list[Finding], int]:
    """Lint one template file, optionally against data rows; returns findings and template count."""
    path = Path(path)
    tf, problems = load_for_lint(path)
    findings = [Finding("error", "duplicate" if p.startswith("duplicate") else "parse", p, str(path)) for p in problems]
    if tf is None:
        return findings, 0
    # the rows' fields in first-seen order, as build lists them
    fields = list(dict.fromkeys(k for _, r in rows for k in r)) if rows else None
    row_checked = []  # by position: two templates may share an id (reported as a duplicate)
    for template in tf.templates:
        static = _static_findings(template, str(path), fields)
        findings += static
        # A template that does not compile, or reads a field the rows lack in the strict dialect,
        # would fail on every row: its static finding says it once.
        if not any(f.level == "error" and f.code in _FAILS_EVERY_ROW for f in static):
            row_checked.append(template)
    for template in row_checked if rows else ():
        findings += _row_findings(template, str(path), rows, seed)
    return findings, len(tf.templates)


def lint_paths(paths: Sequence[str | Path], data: str | Path | None = None, rows: int | None = None,
               seed: int = 0) -> LintReport:
    """Lint template files (taskmill or PromptSource format) against the rows of a data file.

    Args:
        paths: Template files.
        data: A JSONL file of dataset rows (HF schema), or None to skip the row checks.
        rows: Render only the first ``rows`` rows of ``data`` (None: every row, as build does).
        seed: Seed of the ``choice`` filter.

    Raises:
        DataError: The data file is missing or malformed.
    """
    start = time.perf_counter()
    sample = read_rows(data, rows) if data is not None else None
    report = LintReport(files=len(paths), rows=len(sample or []), sample=rows if data is not None else None)
    for path in paths:
        findings, count = lint_file(path, sample, seed)
        report.findings += findings
        report.templates += count
    report.seconds = time.perf_counter() - start
    return report
