"""Rendering a chunk of one task's rows into corpus lines (runs in worker processes).

Work is cut into chunks of consecutive selected rows of one (task, split); each chunk gives its
JSONL lines in order, a small metadata tuple per line (for dedup, mixing and the card), and
counts of skipped rows. Results depend only on the chunk's rows, so any process count merges to
the same corpus.
"""

from __future__ import annotations

import itertools
import random
from array import array
from dataclasses import dataclass, field, replace
from typing import Any

from taskmill.builders import keys
from taskmill.builders.checks import check_labels, index_fields
from taskmill.builders.collection import TaskConfig
from taskmill.builders.formats import Exemplars, Formatted, Skip, format_row, options_skip, with_options
from taskmill.builders.lines import LineEncoder
from taskmill.builders.sources import SourceData
from taskmill.errors import TaskmillError, TemplateError
from taskmill.records import Rendered, Template
from taskmill.templates.engine import RAISE_ON_NULL, Nulls, NullValueError, describe_nulls, null_error_message

SKIP_EMPTY = "template renders empty for this row"
SKIP_EMPTY_INPUT = "empty input"
SKIP_EMPTY_TARGET = "empty target"
SKIP_FEW_EXEMPLARS = "fewer non-empty exemplars than shots"
SKIP_LMEVAL_EXAMPLE = "an lm-eval example drawn for this row renders empty or is skipped"
SKIP_EXAMPLES_KEPT = 3  # row indices kept per skip reason, as examples for the card
SKIP_NULL = "{} (on_null: skip)"
MAX_RANDOM_DRAWS = 256  # exemplar draws before falling back to a scan of the pool
RENDER_CACHE_MAX = 500_000  # cached zero-shot renders per process (cleared when full)


def task_nulls(task: TaskConfig) -> Nulls:
    """The engine's null rule for a task: its ``null_default`` printed, or raise (error and skip)."""
    return Nulls(task.null_default) if task.on_null == "default" and task.null_default is not None else RAISE_ON_NULL


def null_skip_reason(fields: tuple[str, ...]) -> str:
    """The card's skip reason for a row with null fields (``on_null: skip``)."""
    names = ", ".join(f"'{f}'" for f in fields)
    what = f"null field {names}" if len(fields) == 1 else f"null fields {names}" if fields else "null value inside a field"
    return SKIP_NULL.format(what)


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
        template_source: The template file's ``source`` block (converted templates: where they
            came from and their eval settings), recorded in the manifest; None otherwise.
        lmeval_fewshot: For an lm-eval conversion built in a few-shot format, lm-eval's examples
            (see :func:`lmeval_fewshot_plan`); None otherwise.
    """

    index: int
    config: TaskConfig
    seed: int
    templates: tuple[Template, ...]
    template_file: str
    data: SourceData
    selected: dict[str, list[int]]
    template_label: str = ""
    template_source: dict[str, Any] | None = None
    lmeval_fewshot: LmevalFewshot | None = None


@dataclass(frozen=True)
class LmevalFewshot:
    """lm-eval's few-shot examples of every selected row, drawn once in the plan.

    lm-eval's ``default`` sampler advances one generator row by row, so a row's examples depend on
    every row before it. Drawing them in order here (before any chunk is rendered) makes the
    corpus independent of ``--num-proc`` and of the chunking.

    Attributes:
        spec: The converted file's ``source.lm_eval.fewshot``.
        shots: Examples per row (the task's ``shots``: lm-eval's ``num_fewshot``).
        draws: Split -> positions in the ``shots_split`` rows, ``shots`` per selected row, flat,
            in ``selected[split]`` order (row ``k``'s are ``draws[k * shots:(k + 1) * shots]``).
    """

    spec: Any  # templates.lmeval.FewshotSpec (imported lazily)
    shots: int
    draws: dict[str, array]

    def of(self, split: str, position: int) -> tuple[int, ...]:
        """The examples of the row at ``position`` of ``selected[split]``."""
        return tuple(self.draws[split][position * self.shots:(position + 1) * self.shots])


def lmeval_fewshot_plan(task: TaskConfig, template_file: str, source: dict[str, Any] | None, data: SourceData,
                        selected: dict[str, list[int]]) -> LmevalFewshot | None:
    """lm-eval's examples for a task whose template file is an lm-eval conversion, or None.

    Each built split is one lm-eval run: the generator (``fewshot_seed``, default 1234) starts at
    the split's first selected row and advances over its selected rows in ascending row order.
    The pool is the ``shots_split`` rows, whole (``max_examples`` does not cut it).

    Raises:
        ConfigError: ``fewshot_seed`` on a task whose template file is not an lm-eval conversion,
            or a few-shot format asked of a conversion whose lm-eval few-shot features taskmill
            does not reproduce (``fewshot.unsupported``).
        DataError: The pool has fewer rows than lm-eval needs.
    """
    from taskmill.errors import ConfigError, DataError
    from taskmill.templates.lmeval import FEWSHOT_SEED, fewshot_draws, fewshot_spec_of

    spec = fewshot_spec_of(source)
    if spec is None:
        if task.fewshot_seed is not None:
            err = ConfigError(["fewshot_seed applies only to lm-eval conversions (a template file with "
                               "source.lm_eval.fewshot, written by convert-lmeval)"], file=template_file)
            err.task = task.name
            raise err
        return None
    few = [f for f in task.formats if f.startswith("few_shot")]
    if not few:
        return None
    if spec.unsupported:
        err = ConfigError([f"formats {few} need lm-eval's few-shot contexts, but: {spec.unsupported}"],
                          file=template_file)
        err.task = task.name
        raise err
    pool = data.splits[task.shots_split]
    seed = FEWSHOT_SEED if task.fewshot_seed is None else task.fewshot_seed
    draws: dict[str, array] = {}
    for split in task.splits:
        rows = data.splits[split]
        try:
            drawn = fewshot_draws(spec, pool, [rows[i] for i in selected[split]], task.shots, seed)
        except DataError as err:
            raise DataError(f"shots_split '{task.shots_split}': {err.message}", file=template_file,
                            task=task.name) from None
        draws[split] = array("i", itertools.chain.from_iterable(drawn))
    return LmevalFewshot(spec, task.shots, draws)


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


_COLUMNS = ("id", "split", "row_index", "template_id", "format", "prompt", "completion", "answer_choices",
            "target_index", "shots")


@dataclass
class ChunkResult:
    """What a chunk produced; ``error`` is the one-line report of a failure (then nothing else).

    Attributes:
        lines: Corpus lines (without newline) while rendering; :meth:`finish` moves them to ``blob``.
        blob: The chunk's JSONL bytes (every line ended by ``\\n``), joined in the worker.
        offsets: Byte offset of each line in ``blob``, plus the blob's length.
        metas: One :data:`Meta` per line.
        skips: (template_id, split, format, reason) -> [count, example row indices].
        batch: The same rows as an Arrow record batch (built by :meth:`finish`).
        error: The one-line report of a failure.
    """

    lines: list[str] = field(default_factory=list)
    blob: bytes = b""
    offsets: list[int] = field(default_factory=list)
    metas: list[Meta] = field(default_factory=list)
    skips: dict[tuple[str, str, str, str], list[Any]] = field(default_factory=dict)
    batch: Any = None
    error: str | None = None
    values: list[tuple[Any, ...]] = field(default_factory=list)

    def skip(self, template_id: str, split: str, fmt: str, reason: str, row_index: int) -> None:
        """Count a skipped row (keeping a few row indices as examples)."""
        entry = self.skips.setdefault((template_id, split, fmt, reason), [0, []])
        entry[0] += 1
        if len(entry[1]) < SKIP_EXAMPLES_KEPT:
            entry[1].append(row_index)

    def add(self, line: str, row_id: str, split: str, row_index: int, template_id: str, fmt: str, prompt: str,
            completion: str, choices: tuple[str, ...] | None, target_index: int | None, shots: tuple[int, ...]) -> None:
        """Append one corpus row: its line, its metadata and its column values."""
        self.lines.append(line)
        key = keys.text_key(split, prompt, completion)
        self.metas.append((split, template_id, fmt, row_id, key, len(prompt), len(completion), target_index,
                           choices is not None))
        self.values.append((row_id, split, row_index, template_id, fmt, prompt, completion, choices, target_index,
                            shots))

    def finish(self, task: str, dataset: str, templates: dict[str, tuple[str, tuple[str, ...], bool | None]]) -> ChunkResult:
        """Build the Arrow batch (``templates``: id -> (name, metrics, original_task)) and drop the values."""
        from taskmill.builders.writer import corpus_batch

        columns = dict(zip(_COLUMNS, map(list, zip(*self.values)))) if self.values else {c: [] for c in _COLUMNS}
        self.batch = corpus_batch(columns, task, dataset, templates)
        self.values = []
        self.blob = "".join(line + "\n" for line in self.lines).encode("utf-8")
        # Byte length of each line: its character count when ASCII (most lines), else its UTF-8 size.
        sizes = (len(line) + 1 if line.isascii() else len(line.encode("utf-8")) + 1 for line in self.lines)
        self.offsets = [0, *itertools.accumulate(sizes)]
        self.lines = []
        return self


class TemplateRenderer:
    """Renders the rows of a template-based task.

    Zero-shot renders of the exemplar split are cached per process (bounded), so a row drawn as a
    few-shot exemplar, or rendered as an instance after being drawn, is rendered once.
    """

    def __init__(self, plan: TaskPlan) -> None:
        from taskmill.templates.engine import compile_template

        self.plan = plan
        self.task = plan.config
        self.compiled = [compile_template(t, task_nulls(self.task)) for t in plan.templates]
        self.fields = {t.id: index_fields(t) for t in plan.templates}
        self.lines = LineEncoder(self.task.name, self.task.dataset)
        for t in plan.templates:
            self.lines.add_template(t)
        self.info = {t.id: (t.name, t.metadata.metrics, t.metadata.original_task) for t in plan.templates}
        self.few_shot = any(f.startswith("few_shot") for f in self.task.formats)
        self._keys: dict[str, keys.SplitKeys] = {}
        self._cache: dict[tuple[str, int], Rendered | str] = {}

    def split_keys(self, split: str) -> keys.SplitKeys:
        """The digest maker of a split."""
        if split not in self._keys:
            self._keys[split] = keys.SplitKeys(self.plan.seed, self.task.name, split)
        return self._keys[split]

    def render_chunk(self, chunk: Chunk) -> ChunkResult:
        """Render positions ``lo:hi`` of a split in every template and format."""
        out = ChunkResult()
        rows = self.plan.data.splits[chunk.split]
        split_keys = self.split_keys(chunk.split)
        for pos, idx in enumerate(self.plan.selected[chunk.split][chunk.lo:chunk.hi], start=chunk.lo):
            row = rows[idx]
            for ct in self.compiled:
                self._row(ct, chunk.split, idx, row, split_keys.row(idx, ct.template.id), out, pos)
        return out.finish(self.task.name, self.task.dataset, self.info)

    def _zero_shot(self, ct: Any, split: str, idx: int, row: dict[str, Any], digest: bytes) -> Rendered | str:
        if not self.few_shot or split != self.task.shots_split:
            return self.render(ct, split, idx, row, keys.render_seed(digest))
        key = (ct.template.id, idx)
        got = self._cache.get(key)
        if got is None:
            if len(self._cache) >= RENDER_CACHE_MAX:
                self._cache.clear()
            got = self._cache[key] = self.render(ct, split, idx, row, keys.render_seed(digest))
        return got

    def _row(self, ct: Any, split: str, idx: int, row: dict[str, Any], digest: bytes, out: ChunkResult,
             pos: int) -> None:
        t: Template = ct.template
        rendered = self._zero_shot(ct, split, idx, row, digest)
        if isinstance(rendered, str):
            for fmt in self.task.formats:
                out.skip(t.id, split, fmt, rendered, idx)
            return
        drawn: list[Exemplars] = []

        def exemplars() -> Exemplars:
            if not drawn:
                drawn.append(self._exemplars(ct, split, idx, digest))
            return drawn[0]

        def cot() -> str | Skip | None:
            try:
                return ct.render_cot(row, keys.render_seed(digest))
            except NullValueError as err:
                return Skip(self._null(t, split, idx, err))
            except TemplateError as err:
                raise TemplateError(err.message, file=self.plan.template_file, task=self.task.name,
                                    template=t.name, row=f"{split}[{idx}]") from None

        choices, target_index = rendered.answer_choices, rendered.target_index
        lmeval = self.plan.lmeval_fewshot
        for fmt in self.task.formats:
            if lmeval is not None and fmt in ("few_shot", "few_shot_options"):
                f = self._lmeval_format(ct, fmt, rendered, lmeval.of(split, pos))
            else:
                f = format_row(fmt, t, rendered, exemplars, cot)
            if isinstance(f, str):
                out.skip(t.id, split, fmt, f, idx)
                continue
            row_id = keys.row_id(digest, fmt)
            line = self.lines.line(row_id, split, idx, t.id, fmt, f.prompt, f.completion, choices, target_index,
                                   f.shots)
            out.add(line, row_id, split, idx, t.id, fmt, f.prompt, f.completion, choices, target_index, f.shots)

    def _lmeval_format(self, ct: Any, fmt: str, rendered: Rendered, shots: tuple[int, ...]) -> Formatted | str:
        """lm-eval's ``fewshot_context``: each example ``text + target_delimiter + answer +
        fewshot_delimiter``, then the row's text; the completion and choices stay zero-shot.

        ``few_shot_options`` (not an lm-eval request: lm-eval has no options format) shows the
        FLAN options block after every text, the examples' and the row's, with the same examples.
        """
        from taskmill.templates.lmeval import fewshot_example

        options = fmt == "few_shot_options"
        if options:
            skip = options_skip(ct.template, rendered)
            if skip:
                return skip
        spec = self.plan.lmeval_fewshot.spec  # type: ignore[union-attr]
        parts = []
        for j in shots:
            ex = self._exemplar(ct, j)
            if ex is None:
                return SKIP_LMEVAL_EXAMPLE
            if options and ex.answer_choices:
                ex = replace(ex, input=with_options(ex.input, ex.answer_choices))
            parts.append(fewshot_example(ex, spec))
        own = with_options(rendered.input, rendered.answer_choices or ()) if options else rendered.input
        return Formatted(fmt, "".join(parts) + own, rendered.target, shots)

    def render(self, ct: Any, split: str, idx: int, row: dict[str, Any], seed: int) -> Rendered | str:
        """The zero-shot render of a row, or why it is skipped.

        Raises:
            TemplateError: The template fails on the row (missing field, bad expression, a null
                field it prints with ``on_null: error``, ...).
            DataError: A label indexing ``answer_choices`` is out of range.
        """
        try:
            return self._render(ct, split, idx, row, seed)
        except NullValueError as err:
            return self._null(ct.template, split, idx, err)

    def _null(self, t: Template, split: str, idx: int, err: NullValueError) -> str:
        """The skip reason of a row with a null field (``on_null: skip``), else its one-line error."""
        if self.task.on_null == "skip":
            return null_skip_reason(err.fields)
        raise TemplateError(null_error_message(err.message, self.task.on_null),
                            file=self.plan.template_file, task=self.task.name, template=t.name,
                            row=f"{split}[{idx}]")

    def _render(self, ct: Any, split: str, idx: int, row: dict[str, Any], seed: int) -> Rendered | str:
        t: Template = ct.template
        try:
            rendered = ct.render(row, seed)
        except TemplateError as err:
            return self._failed(ct, split, idx, row, seed, err)
        if not rendered.input and not rendered.target:
            return SKIP_EMPTY  # e.g. a template conditional on a field; its label index was not used
        if self.fields[t.id]:
            check_labels(row, self.fields[t.id], rendered.answer_choices, file=self.plan.template_file,
                         task=self.task.name, template=t.name, where=f"{split}[{idx}]")
        if rendered.input and rendered.target:
            return rendered
        if t.dialect == "promptsource" and ct.null_fields(row):
            # Lenient Jinja renders answer_choices[null] or null.attr as "": a null, not an empty part.
            part = "target" if rendered.input else "input"
            raise NullValueError(f"jinja: {part} renders empty and {describe_nulls(ct.null_fields(row))}",
                                 fields=ct.null_fields(row), template=t.name)
        return SKIP_EMPTY_TARGET if rendered.input else SKIP_EMPTY_INPUT

    def _failed(self, ct: Any, split: str, idx: int, row: dict[str, Any], seed: int,
                err: TemplateError) -> str:
        """Classify a failed render: a bad label, a legitimately empty render, or an error."""
        t: Template = ct.template
        where = f"{split}[{idx}]"
        if t.dialect == "promptsource":
            try:
                parts = ct.render_parts(row, seed)
            except TemplateError:
                parts = ["?"]
            if not any(parts):  # a template conditional on a field (e.g. only one label) renders ""
                return SKIP_EMPTY
        if self.fields[t.id] and t.answer_choices is not None:
            try:
                choices = ct.choices(row, seed)
            except TemplateError:
                choices = None
            check_labels(row, self.fields[t.id], choices, file=self.plan.template_file,
                         task=self.task.name, template=t.name, where=where)
        if isinstance(err, NullValueError):
            raise err  # render() decides: skipped or reported, per the task's on_null
        raise TemplateError(err.message, file=self.plan.template_file, task=self.task.name,
                            template=t.name, row=where)

    def _exemplar(self, ct: Any, j: int) -> Rendered | None:
        got = self._cache.get((ct.template.id, j))  # checked first: most draws hit the cache
        if got is None:
            shots_split = self.task.shots_split
            row = self.plan.data.splits[shots_split][j]
            got = self._zero_shot(ct, shots_split, j, row, self.split_keys(shots_split).row(j, ct.template.id))
        return None if isinstance(got, str) else got

    def _exemplars(self, ct: Any, split: str, idx: int, digest: bytes) -> Exemplars:
        """Draw ``shots`` distinct non-empty exemplars from the shots split, never the row itself."""
        pool = len(self.plan.data.splits[self.task.shots_split])
        own = idx if split == self.task.shots_split else None
        candidates = pool - (own is not None)
        tried: set[int] = set()
        chosen: list[tuple[int, Rendered]] = []

        def take(j: int) -> None:
            if j != own and j not in tried and len(chosen) < self.task.shots:
                tried.add(j)
                ex = self._exemplar(ct, j)
                if ex is not None:
                    chosen.append((j, ex))

        for n, j in enumerate(keys.draws(digest, pool)):
            if len(chosen) == self.task.shots or len(tried) == candidates or n == MAX_RANDOM_DRAWS:
                break
            take(j)
        if len(chosen) < self.task.shots:
            # Few non-empty candidates (e.g. a template conditional on a rare label): scan a seeded
            # permutation of the whole pool instead of drawing forever.
            for j in random.Random(keys.shots_seed(digest)).sample(range(pool), pool):
                take(j)
        return chosen if len(chosen) == self.task.shots else SKIP_FEW_EXEMPLARS


_STATE: dict[str, Any] = {}


def init_worker(plans: list[TaskPlan]) -> None:
    """Give a worker (process, Ray actor, or this process) the plans; forked processes inherit
    them instead of unpickling them."""
    _STATE["plans"] = plans
    _STATE["renderers"] = {}


def run_chunk(chunk: Chunk) -> ChunkResult:
    """Render a chunk; a :class:`TaskmillError` comes back as its one-line report."""
    return _render(chunk)


def _render(chunk: Chunk) -> ChunkResult:
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
