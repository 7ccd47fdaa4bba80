"""``taskmill templates show``: rendered examples of a template file on dataset rows, readably."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from taskmill.errors import TaskmillError
from taskmill.records import Rendered
from taskmill.templates.engine import compile_template
from taskmill.templates.fileformat import load_template_file
from taskmill.templates.lint import read_rows


@dataclass(frozen=True)
class Example:
    """One template applied to one row (``rendered`` is None when it failed, with ``error``)."""

    template: str
    template_id: str
    row: str
    rendered: Rendered | None
    error: str | None = None


def show_examples(path: str | Path, data: str | Path, n: int = 3, seed: int | None = None,
                  template: str | None = None) -> list[Example]:
    """Render ``n`` rows of ``data`` with every template of ``path`` (or the one named ``template``).

    Rows are the first ``n``; with a seed, ``n`` rows drawn with that seed, which also seeds the
    ``choice`` filter (seed 0 otherwise). A row a template fails on gives an example with its error.

    Raises:
        TaskmillError: The file or data cannot be read, or no template has that name or id.
    """
    tf = load_template_file(path)
    templates = [t for t in tf.templates if template is None or template in (t.name, t.id)]
    if not templates:
        names = ", ".join(t.name for t in tf.templates)
        raise TaskmillError(f"no template named '{template}' (have: {names})", file=str(path))
    rows = read_rows(data, None if seed is not None else n)
    if seed is not None:
        picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
        rows = [rows[i] for i in picked]
    examples = []
    for t in templates:
        compiled = compile_template(t)
        for label, row in rows:
            try:
                examples.append(Example(t.name, t.id, label, compiled.render(row, seed=seed or 0)))
            except TaskmillError as err:
                examples.append(Example(t.name, t.id, label, None, err.message))
    return examples


def format_example(example: Example) -> str:
    """A plain-text block: header, INPUT, TARGET and CHOICES (with the target's index)."""
    head = f"── {example.template} [{example.template_id}] · row {example.row} "
    lines = [head + "─" * max(0, 78 - len(head))]
    if example.rendered is None:
        return "\n".join([*lines, f"ERROR: {example.error}", ""])
    r = example.rendered
    lines += ["INPUT:", _indent(r.input), "TARGET:", _indent(r.target)]
    if r.answer_choices is not None:
        mark = f"target = choice {r.target_index}" if r.target_index is not None else "target is not a choice"
        lines += [f"CHOICES ({mark}):", *(f"  {i}. {c}" for i, c in enumerate(r.answer_choices))]
    return "\n".join([*lines, ""])


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.split("\n")) if text else "  (empty)"
