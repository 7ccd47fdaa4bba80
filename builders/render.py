"""Rendering a chunk of one task's rows into corpus lines (runs in worker processes).

Work is cut into chunks of consecutive selected rows of one (task, split); each chunk gives its
JSONL lines in order, a small metadata tuple per line (for dedup, mixing and the card), and
counts of skipped rows. Results depend only on the chunk's rows, so any process count merges to
the same corpus.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from taskmill.builders import keys
from taskmill.builders.checks import check_labels, index_fields
from taskmill.builders.collection import TaskConfig
from taskmill.builders.formats import Exemplars, Formatted, format_row
from taskmill.builders.sources import SourceData
from taskmill.errors import TaskmillError, TemplateError
from taskmill.records import Rendered, Row, Template

SKIP_EMPTY = "template renders empty for this row"
SKIP_EMPTY_INPUT = "empty input"
SKIP_EMPTY_TARGET = "empty target"
SKIP_FEW_EXEMPLARS = "fewer non-empty exemplars than shots"
SKIP_EXAMPLES_KEPT = 3  # row indices kept per skip reason, as examples for the card
MAX_RANDOM_DRAWS = 256  # exemplar draws before falling back to a scan of the pool


@dataclass(frozen=True)
class TaskPlan:
    """Everything a worker needs to render one task.

    Attributes:
        index: Position of the task in the collection.
        config: The task's config.
        seed: The collection seed.
        templates: Templates used, in file order (empty for SNI tasks).
        template_file: Path of the template file (or SNI file), for messages.
        data: The loaded splits.
        selected: Split -> row indices built (after ``max_examples``), ascending.
        template_label: The template file as the card and manifest show it (relative to the
            collection, or ``taskmill/templates/library/<file>``), so they are machine-independent.
    """

    index: int
    config: TaskConfig
    seed: int
    templates: tuple[Template, ...]
    template_file: str
    data: SourceData
    selected: dict[str, list[int]]
    template_label: str = ""


@dataclass(frozen=True)
class Chunk:
    """Positions ``lo:hi`` of ``selected[split]`` of task ``task``."""

    task: int
    split: str
    lo: int
    hi: int


# Per corpus line: (split, template_id, format, id, dedup key, prompt chars, completion chars,
# target_index, has answer_choices).
Meta = tuple[str, str, str, str, bytes, int, int, int | None, bool]


@dataclass
class ChunkResult:
    """What a chunk produced; ``error`` is the one-line report of a failure (then nothing else)."""

    lines: list[str] = field(default_factory=list)
    metas: list[Meta] = field(default_factory=list)
    skips: dict[tuple[str, str, str, str], list[Any]] = field(default_factory=dict)
    error: str | None = None

    def skip(self, template_id: str, split: str, fmt: str, reason: str, row_index: int) -> None:
        """Count a skipped row (keeping a few row indices as examples)."""
        entry = self.skips.setdefault((template_id, split, fmt, reason), [0, []])
        entry[0] += 1
        if len(entry[1]) < SKIP_EXAMPLES_KEPT:
            entry[1].append(row_index)

    def add(self, row: Row) -> None:
        """Append one corpus row."""
        self.lines.append(json.dumps(row.to_json(), ensure_ascii=False))
        key = keys.text_key(row.split, row.prompt, row.completion)
        self.metas.append((row.split, row.template_id, row.format, row.id, key, len(row.prompt),
                           len(row.completion), row.target_index, row.answer_choices is not None))


class TemplateRenderer:
    """Renders the rows of a template-based task (exemplar renders cached per process)."""

    def __init__(self, plan: TaskPlan) -> None:
        from taskmill.templates.engine import compile_template

        self.plan = plan
        self.task = plan.config
        self.compiled = [compile_template(t) for t in plan.templates]
        self.fields = {t.id: index_fields(t) for t in plan.templates}
        self._exemplar_cache: dict[tuple[str, int], Rendered | None] = {}

    def render_chunk(self, chunk: Chunk) -> ChunkResult:
        """Render positions ``lo:hi`` of a split in every template and format."""
        out = ChunkResult()
        rows = self.plan.data.splits[chunk.split]
        for idx in self.plan.selected[chunk.split][chunk.lo:chunk.hi]:
            for ct in self.compiled:
                self._row(ct, chunk.split, idx, rows[idx], out)
        return out

    def _row(self, ct: Any, split: str, idx: int, row: dict[str, Any], out: ChunkResult) -> None:
        t: Template = ct.template
        digest = keys.row_digest(self.plan.seed, self.task.name, split, idx, t.id)
        rendered = self.render(ct, split, idx, row, keys.render_seed(digest))
        if isinstance(rendered, str):
            for fmt in self.task.formats:
                out.skip(t.id, split, fmt, rendered, idx)
            return
        drawn: list[Exemplars] = []

        def exemplars() -> Exemplars:
            if not drawn:
                drawn.append(self._exemplars(ct, split, idx, keys.shots_seed(digest)))
            return drawn[0]

        def cot() -> str | None:
            return ct.render_cot(row, keys.render_seed(digest))

        for fmt in self.task.formats:
            result = format_row(fmt, t, rendered, exemplars, cot)
            if isinstance(result, str):
                out.skip(t.id, split, fmt, result, idx)
            else:
                out.add(self._make_row(t, split, idx, digest, rendered, result))

    def _make_row(self, t: Template, split: str, idx: int, digest: bytes, rendered: Rendered,
                  f: Formatted) -> Row:
        return Row(
            id=keys.row_id(digest, f.format), task=self.task.name, dataset=self.task.dataset, split=split,
            row_index=idx, template_id=t.id, template_name=t.name, format=f.format, prompt=f.prompt,
            completion=f.completion,
            messages=({"role": "user", "content": f.prompt}, {"role": "assistant", "content": f.completion}),
            answer_choices=rendered.answer_choices, target_index=rendered.target_index, shots=f.shots,
            metrics=t.metadata.metrics, original_task=t.metadata.original_task,
        )

    def render(self, ct: Any, split: str, idx: int, row: dict[str, Any], seed: int) -> Rendered | str:
        """The zero-shot render of a row, or why it is skipped.

        Raises:
            TemplateError: The template fails on the row (missing field, bad expression, ...).
            DataError: A label indexing ``answer_choices`` is out of range.
        """
        t: Template = ct.template
        try:
            rendered = ct.render(row, seed)
        except TemplateError as err:
            return self._failed(ct, split, idx, row, seed, err)
        if self.fields[t.id]:
            check_labels(row, self.fields[t.id], rendered.answer_choices, file=self.plan.template_file,
                         task=self.task.name, template=t.name, where=f"{split}[{idx}]")
        if not rendered.input:
            return SKIP_EMPTY if not rendered.target else SKIP_EMPTY_INPUT
        return rendered if rendered.target else SKIP_EMPTY_TARGET

    def _failed(self, ct: Any, split: str, idx: int, row: dict[str, Any], seed: int,
                err: TemplateError) -> str:
        """Classify a failed render: a bad label, a legitimately empty render, or an error."""
        t: Template = ct.template
        where = f"{split}[{idx}]"
        if self.fields[t.id] and t.answer_choices is not None:
            try:
                choices = ct.choices(row, seed)
            except TemplateError:
                choices = None
            check_labels(row, self.fields[t.id], choices, file=self.plan.template_file,
                         task=self.task.name, template=t.name, where=where)
        if t.dialect == "promptsource":
            try:
                parts = ct.render_parts(row, seed)
            except TemplateError:
                parts = ["?"]
            if not any(parts):  # a template conditional on a field (e.g. only one label) renders ""
                return SKIP_EMPTY
        raise TemplateError(err.message, file=self.plan.template_file, task=self.task.name,
                            template=t.name, row=where)

    def _exemplar(self, ct: Any, j: int) -> Rendered | None:
        key = (ct.template.id, j)
        if key not in self._exemplar_cache:
            shots_split = self.task.shots_split
            row = self.plan.data.splits[shots_split][j]
            digest = keys.row_digest(self.plan.seed, self.task.name, shots_split, j, ct.template.id)
            got = self.render(ct, shots_split, j, row, keys.render_seed(digest))
            self._exemplar_cache[key] = None if isinstance(got, str) else got
        return self._exemplar_cache[key]

    def _exemplars(self, ct: Any, split: str, idx: int, seed: int) -> Exemplars:
        """Draw ``shots`` distinct non-empty exemplars from the shots split, never the row itself."""
        pool = len(self.plan.data.splits[self.task.shots_split])
        own = idx if split == self.task.shots_split else None
        candidates = pool - (own is not None)
        rng = random.Random(seed)
        tried: set[int] = set()
        chosen: list[tuple[int, Rendered]] = []

        def take(j: int) -> None:
            if j != own and j not in tried and len(chosen) < self.task.shots:
                tried.add(j)
                ex = self._exemplar(ct, j)
                if ex is not None:
                    chosen.append((j, ex))

        for _ in range(MAX_RANDOM_DRAWS):
            if len(chosen) == self.task.shots or len(tried) == candidates:
                break
            take(rng.randrange(pool))
        if len(chosen) < self.task.shots:
            # Few non-empty candidates (e.g. a template conditional on a rare label): scan a seeded
            # permutation of the whole pool instead of drawing forever.
            for j in rng.sample(range(pool), pool):
                take(j)
        return chosen if len(chosen) == self.task.shots else SKIP_FEW_EXEMPLARS


_STATE: dict[str, Any] = {}


def init_worker(plans: list[TaskPlan]) -> None:
    """Give a worker process the plans (inherited, not pickled, when processes fork)."""
    _STATE["plans"] = plans
    _STATE["renderers"] = {}


def run_chunk(chunk: Chunk) -> ChunkResult:
    """Render one chunk; a :class:`TaskmillError` comes back as its one-line report."""
    renderers = _STATE["renderers"]
    if chunk.task not in renderers:
        plan = _STATE["plans"][chunk.task]
        if plan.config.sni is not None:
            from taskmill.builders.sni import SniRenderer

            renderers[chunk.task] = SniRenderer(plan)
        else:
            renderers[chunk.task] = TemplateRenderer(plan)
    try:
        return renderers[chunk.task].render_chunk(chunk)
    except TaskmillError as err:
        return ChunkResult(error=err.line())
