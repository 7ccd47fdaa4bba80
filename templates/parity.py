"""Check that the promptsource dialect renders exactly what PromptSource's ``Template.apply`` does.

Used by the parity test (a few rows per split) and ``bench/promptsource_parity.py`` (every row).
PromptSource itself is imported only inside :func:`load_promptsource_reference`, so this module
imports without it. Both sides see the same row and the same seed: PromptSource's ``choice``
filter draws from the global :mod:`random` state, so it is seeded with ``random.seed(seed)``
right before each ``apply``; taskmill renders with ``seed=seed``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmill.errors import TaskmillError
from taskmill.templates.engine import compile_template
from taskmill.templates.promptsource import load_promptsource

# Longest rendered text kept in a mismatch record (the report only needs to show where it differs).
_KEEP = 300


@dataclass(frozen=True)
class DatasetPair:
    """A dataset folder of ``shared/data`` and its PromptSource ``templates.yaml``."""

    name: str
    data_dir: Path
    templates_file: Path


@dataclass(frozen=True)
class Failure:
    """One render that failed (on PromptSource's side, ours, or both)."""

    dataset: str
    template: str
    split: str
    row: int
    error: str


@dataclass
class ParityReport:
    """Counts and a few examples from comparing renders; worker reports add up with ``merge``.

    Attributes:
        templates: (dataset, template id) pairs compared.
        renders: Rows rendered by both sides.
        identical: Renders whose part lists are equal.
        mismatches: Renders both sides produced but that differ.
        ps_failed: Renders PromptSource itself raised on.
        ours_failed_too: Of those, renders taskmill also refused (TemplateError).
        ours_failed_only: Renders taskmill refused but PromptSource produced.
        examples: Up to ``keep`` examples per kind ("mismatch", "ps_failed", "ours_failed_only").
        ps_seconds: Time spent in PromptSource's ``Template.apply``.
        ours_seconds: Time spent in taskmill's ``render_parts``.
    """

    templates: set[tuple[str, str]] = field(default_factory=set)
    renders: int = 0
    identical: int = 0
    mismatches: int = 0
    ps_failed: int = 0
    ours_failed_too: int = 0
    ours_failed_only: int = 0
    examples: dict[str, list[Failure]] = field(default_factory=dict)
    ps_seconds: float = 0.0
    ours_seconds: float = 0.0

    def merge(self, other: ParityReport, keep: int = 20) -> None:
        """Add another report's counts (and examples, up to ``keep`` per kind) to this one."""
        self.templates |= other.templates
        for name in ("renders", "identical", "mismatches", "ps_failed", "ours_failed_too",
                     "ours_failed_only", "ps_seconds", "ours_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, items in other.examples.items():
            mine = self.examples.setdefault(kind, [])
            mine.extend(items[: max(0, keep - len(mine))])

    def note(self, kind: str, failure: Failure, keep: int) -> None:
        """Keep an example of a kind of outcome (at most ``keep`` per kind)."""
        items = self.examples.setdefault(kind, [])
        if len(items) < keep:
            items.append(failure)

    @property
    def ok(self) -> bool:
        """True when every render PromptSource produced, taskmill produced identically."""
        return self.mismatches == 0 and self.ours_failed_only == 0


def discover(shared: Path) -> tuple[list[DatasetPair], list[str]]:
    """Dataset folders of ``shared/data`` with PromptSource templates, and those without.

    Folder ``a__b`` maps to ``shared/promptsource_templates/a/b/templates.yaml``.
    """
    pairs, missing = [], []
    for folder in sorted(p for p in (shared / "data").iterdir() if p.is_dir()):
        tfile = shared / "promptsource_templates" / Path(*folder.name.split("__")) / "templates.yaml"
        if tfile.is_file():
            pairs.append(DatasetPair(folder.name, folder, tfile))
        else:
            missing.append(folder.name)
    return pairs, missing


def read_split(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` rows (all when None) of a JSONL split."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(json.loads(line))
    return rows


def splits(pair: DatasetPair) -> list[str]:
    """Split names (file stems) of a dataset folder, sorted."""
    return sorted(p.stem for p in pair.data_dir.glob("*.jsonl"))


def load_promptsource_reference(templates_file: Path) -> dict[str, Any]:
    """PromptSource's own ``Template`` objects, loaded the way PromptSource loads them."""
    import yaml
    import promptsource.templates  # noqa: F401 - registers the !Template / !TemplateMetadata tags

    with templates_file.open(encoding="utf-8") as fh:
        return dict(yaml.load(fh, Loader=yaml.FullLoader)["templates"])  # noqa: S506 - PS's own loader


def _apply_reference(ps_template: Any, rows: Sequence[dict[str, Any]], seeds: Sequence[int]) -> list[Any]:
    out: list[Any] = []
    for row, seed in zip(rows, seeds):
        random.seed(seed)
        try:
            out.append(ps_template.apply(row))
        except Exception as err:  # PromptSource's failure on this row is a result to report
            out.append(err)
    return out


def _apply_ours(compiled: Any, rows: Sequence[dict[str, Any]], seeds: Sequence[int]) -> list[Any]:
    out: list[Any] = []
    for row, seed in zip(rows, seeds):
        try:
            out.append(compiled.render_parts(row, seed=seed))
        except TaskmillError as err:
            out.append(err)
    return out


def compare_template(
    dataset: str, split: str, ps_template: Any, ours: Any, rows: Sequence[dict[str, Any]],
    first_row: int = 0, keep: int = 20,
) -> ParityReport:
    """Render ``rows`` with PromptSource and with taskmill and compare part lists exactly.

    Args:
        dataset: Dataset folder name (for reports).
        split: Split name (for reports).
        ps_template: PromptSource's ``Template`` object.
        ours: The same template as loaded by taskmill (a :class:`~taskmill.records.Template`).
        rows: The rows to render; row ``i`` is rendered with seed ``first_row + i``.
        first_row: Index of ``rows[0]`` in its split.
        keep: Most failure/mismatch examples kept per list.
    """
    seeds = range(first_row, first_row + len(rows))
    compiled = compile_template(ours)
    t0 = time.perf_counter()
    expected = _apply_reference(ps_template, rows, seeds)
    t1 = time.perf_counter()
    got = _apply_ours(compiled, rows, seeds)
    t2 = time.perf_counter()
    report = ParityReport(templates={(dataset, ours.id)}, renders=len(rows), ps_seconds=t1 - t0, ours_seconds=t2 - t1)
    for seed, exp, res in zip(seeds, expected, got):
        _tally(report, Failure(dataset, ours.name, split, seed, ""), exp, res, keep)
    return report


def _tally(report: ParityReport, where: Failure, exp: Any, res: Any, keep: int) -> None:
    def note(kind: str, error: str) -> None:
        report.note(kind, Failure(where.dataset, where.template, where.split, where.row, error[:_KEEP]), keep)

    if isinstance(exp, Exception):
        report.ps_failed += 1
        report.ours_failed_too += isinstance(res, Exception)
        note("ps_failed", f"{type(exp).__name__}: {exp}")
    elif isinstance(res, Exception):
        report.ours_failed_only += 1
        note("ours_failed_only", str(res))
    elif res == exp:
        report.identical += 1
    else:
        report.mismatches += 1
        note("mismatch", f"expected {exp!r:.{_KEEP}} got {res!r:.{_KEEP}}")
