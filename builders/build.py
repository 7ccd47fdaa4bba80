"""``taskmill build``: collection file -> corpus folder (JSONL, Parquet, card, manifest).

Steps: validate the collection; load every task's splits and templates and check them; render
chunks of rows on workers (this process, ``num_proc`` processes or Ray actors: see
:mod:`taskmill.builders.shards`) that leave their shards in the output's temp folder, with a
progress bar giving rows/s and the projected size; drop exact duplicates and mix, decided from the
shards' small summaries; check the corpus's size against ``max_size`` and say it (rows, bytes)
before writing; the workers write their kept JSONL lines at offsets fixed here while this process
builds the Parquet file from the Arrow shards in chunk order, all into that temporary folder, which
replaces ``DIR`` at the end.
"""

from __future__ import annotations

import array
import contextlib
import gc
import itertools
import random
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskmill.builders import keys, shards
from taskmill.builders.card import BuildStats, TaskStats, empty_format_notes, merge_stats, no_rows_error, render_card
from taskmill.builders.checks import check_template
from taskmill.builders.collection import Collection, TaskConfig, library_file, load_collection, starter_collection
from taskmill.builders.mixing import Dedup, mix
from taskmill.builders.render import SKIP_EXAMPLES_KEPT, Chunk, TaskPlan, lmeval_fewshot_plan, task_nulls
from taskmill.builders import writer
from taskmill.builders.sources import load_task, needed_splits
from taskmill.errors import ConfigError, TaskmillError
from taskmill.fileio import atomic_dir, claim_output, sha256_file, write_json, write_text
from taskmill.records import FORMATS, Template
from taskmill.templates.engine import template_fields, template_texts

RENDERS_PER_CHUNK = 2000  # (row, template) renders per unit of parallel work (small: a short tail when workers finish)
# Largest corpus.jsonl written unless asked for more (--max-size): a forgotten max_examples or
# mixing cap should cost one line, not an hour and gigabytes of disk.
DEFAULT_MAX_SIZE = 1_000_000_000
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i)?)?b?\s*$", re.I)
_SIZE_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote.

    Attributes:
        out: The corpus folder.
        rows: Rows in the corpus.
        rendered: Rows rendered before dedup and mixing.
        outputs: File name -> sha256 of each output file.
    """

    out: Path
    rows: int
    rendered: int
    outputs: dict[str, str]


def _check_formats(formats: Sequence[str]) -> None:
    """Reject unknown ``--format`` names (named as the option's, not as the collection file's)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError([f"unknown format '{f}' (expected one of {list(FORMATS)})" for f in unknown])


def parse_size(text: str) -> int | None:
    """Bytes from ``500MB``, ``2GB``, ``1.5G``, ``1GiB`` or ``123`` (decimal units; ``0``/``none``: None, no limit).

    Raises:
        ConfigError: Not a size.
    """
    if text.strip().lower() in ("none", "off", "inf"):
        return None
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError([f"--max-size must be a size such as 500MB or 2GB (0: no limit), got '{text}'"])
    number, unit, binary = match.groups()
    scale = (1024 if binary else 1000) ** _SIZE_POWERS[unit.lower()] if unit else 1
    size = int(float(number) * scale)
    return size or None


def format_size(size: float) -> str:
    """``1.68 GB``, ``12.3 MB``, ``4.0 kB`` or ``512 B`` (decimal units)."""
    for unit, scale, digits in (("GB", 1e9, 2), ("MB", 1e6, 1), ("kB", 1e3, 1)):
        if size >= scale:
            return f"{size / scale:.{digits}f} {unit}"
    return f"{int(size)} B"


def template_path(collection: Collection, task: TaskConfig) -> Path:
    """The task's template file: as given, or the library file of its dataset."""
    if task.instructions and not task.templates:
        from taskmill.builders.handwritten import builtin_templates

        return builtin_templates()
    return collection.resolve(task.templates) if task.templates else library_file(task.dataset)


def _templates(collection: Collection, task: TaskConfig) -> tuple[str, tuple[Template, ...], dict[str, Any] | None]:
    """(template file, its templates the task uses, its ``source`` block: where converted templates came from)."""
    from taskmill.templates.fileformat import load_template_file

    path = template_path(collection, task)
    try:
        loaded = load_template_file(path)
        templates, source = loaded.templates, loaded.source
    except TaskmillError as err:
        err.task = err.task or task.name
        raise
    if task.template_ids is not None:
        have = {t.id for t in templates}
        missing = [i for i in task.template_ids if i not in have]
        if missing:
            raise ConfigError([f"task '{task.name}': template id '{i}' is not in {path}" for i in missing])
        templates = tuple(t for t in templates if t.id in task.template_ids)
    return str(path), templates, source


def _sample(n: int, cap: int | None, seed: int) -> list[int]:
    """Row indices kept under ``max_examples``: a seeded sample, in source order."""
    if cap is None or cap >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), cap))


def plan_task(collection: Collection, index: int, task: TaskConfig, cache_dir: str | None = None) -> TaskPlan:
    """Load and check one task: its rows, templates and the rows selected per split."""
    data = load_task(task, collection, cache_dir)
    template_file, templates, source = (str(collection.resolve(task.sni)), (), None) if task.sni else _templates(collection, task)
    checked: set[tuple[str, ...]] = set()
    for split in needed_splits(task) if templates else ():
        columns = data.columns(split)
        if columns in checked:  # same fields, same problems: the first split with them names the row
            continue
        checked.add(columns)
        for t in templates:
            check_template(t, columns, file=template_file, task=task.name, row=f"{split}[0]", nulls=task_nulls(task))
    selected = {
        s: _sample(len(data.splits[s]), task.max_examples, keys.sample_seed(collection.seed, task.name, s))
        for s in task.splits
    }
    lmeval = lmeval_fewshot_plan(task, template_file, source, data, selected) if templates else None
    return TaskPlan(index, task, collection.seed, templates, template_file, data, selected, _label(task, template_file),
                    source, lmeval)


def _label(task: TaskConfig, template_file: str) -> str:
    """The template (or SNI) file as written, or its place in the package's library."""
    if task.sni:
        return task.sni
    if task.instructions and not task.templates:
        return "taskmill/builders/handwritten.yaml"
    return task.templates or f"taskmill/templates/library/{Path(template_file).name}"


def make_chunks(plans: Sequence[TaskPlan]) -> list[Chunk]:
    """Units of work in corpus order: runs of selected rows of one (task, split)."""
    chunks = []
    for plan in plans:
        size = max(1, RENDERS_PER_CHUNK // max(1, len(plan.templates)))
        for split in plan.config.splits:
            n = len(plan.selected[split])
            chunks += [Chunk(plan.index, split, lo, min(lo + size, n)) for lo in range(0, n, size)]
    return chunks


def chunk_costs(plans: Sequence[TaskPlan], chunks: Sequence[Chunk]) -> list[int]:
    """Estimated work of each chunk: renders (rows x templates x formats)."""
    return [(c.hi - c.lo) * max(1, len(plans[c.task].templates)) * len(plans[c.task].config.formats) for c in chunks]


@dataclass
class Rendered:
    """Every chunk's summary, in chunk order (the rows stay with the workers and in shard files).

    Attributes:
        chunks: The chunks, in corpus order.
        summaries: Each chunk's summary (line offsets, keys, ids, card counters).
        lanes: The worker that rendered each chunk (and keeps its JSONL bytes).
        skips: (task, template_id, split, format, reason) -> [count, example row indices].
        starts: Corpus position of each chunk's first row, then the number of rows.
        dedup: Exact-duplicate removal over every chunk, done as they finished (None: not asked for).
    """

    chunks: list[Chunk]
    summaries: list[shards.ChunkSummary]
    lanes: list[int]
    skips: dict[tuple[int, str, str, str, str], list[Any]]
    starts: list[int]
    dedup: Dedup | None = None

    @property
    def rows(self) -> int:
        """Rows rendered (before dedup and mixing)."""
        return self.starts[-1]


def render_all(plans: list[TaskPlan], lanes: shards.Lanes, progress: bool = True,
               remove_duplicates: bool = False) -> Rendered:
    """Render every chunk on ``lanes`` and merge the summaries in chunk order.

    Args:
        plans: The planned tasks.
        lanes: The workers (see :func:`taskmill.builders.shards.open_lanes`).
        progress: Show a progress bar.
        remove_duplicates: Remove exact duplicates, chunk by chunk in corpus order as the chunks finish (this
            process waits on the workers meanwhile).

    Raises:
        TaskmillError: The first failure in corpus order.
    """
    chunks = make_chunks(plans)
    summaries: list[shards.ChunkSummary | None] = [None] * len(chunks)
    where = [0] * len(chunks)
    deduped, ready = (Dedup() if remove_duplicates else None), 0
    with _progress(progress, sum(c.hi - c.lo for c in chunks)) as advance:
        for number, lane, summary in shards.render_chunks(lanes, chunks, chunk_costs(plans, chunks)):
            summaries[number], where[number] = summary, lane
            advance(chunks[number].hi - chunks[number].lo, summary.rows, summary.offsets[-1])
            while deduped is not None and ready < len(chunks) and summaries[ready] is not None:
                done = summaries[ready]
                assert done is not None
                if done.error is not None:
                    deduped = None  # the build fails: no need to go on
                    break
                deduped.add(done)
                ready += 1
    failed = next((s.error for s in summaries if s is not None and s.error is not None), None)
    if failed is not None:
        raise TaskmillError(failed)
    out = Rendered(chunks, [], where, {}, [0], deduped)
    for summary in summaries:
        assert summary is not None
        out.summaries.append(summary)
        out.starts.append(out.starts[-1] + summary.rows)
        for key, (count, examples) in (summary.skips or {}).items():
            entry = out.skips.setdefault((summary.task, *key), [0, []])
            entry[0] += count
            entry[1] = (entry[1] + examples)[:SKIP_EXAMPLES_KEPT]
    return out


def progress_console() -> Any:
    """The rich console progress bars draw on: stderr (a seam for tests)."""
    from rich.console import Console

    return Console(stderr=True)


class _progress:
    """A rich progress bar on stderr over source rows, with corpus rows made, rows/s and the
    projected JSONL size (before dedup and mixing); silent when off or not a terminal.

    Entering gives ``advance(source_rows, corpus_rows, jsonl_bytes)`` for each merged chunk.
    """

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self.done = self.rows = self.bytes = 0

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n, rows, size: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("source rows · {task.fields[stats]}"), TimeRemainingColumn(),
                            console=progress_console(), transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("rendering rows", total=self.total, stats="")
        self.start = time.perf_counter()
        return self.advance

    def advance(self, source_rows: int, rows: int, size: int) -> None:
        """Count a merged chunk and redraw the rate and the projection."""
        self.done, self.rows, self.bytes = self.done + source_rows, self.rows + rows, self.bytes + size
        rate = self.rows / max(time.perf_counter() - self.start, 1e-9)
        projected = self.bytes * self.total / max(self.done, 1)
        self.bar.update(self.task, advance=source_rows,
                        stats=f"{self.rows:,} rows · {rate:,.0f} rows/s · ≈ {format_size(projected)} before dedup/mixing")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


def _versions() -> dict[str, str]:
    import datasets
    import jinja2
    import pyarrow

    import taskmill

    return {"taskmill": taskmill.__version__, "datasets": datasets.__version__, "jinja2": jinja2.__version__,
            "pyarrow": pyarrow.__version__}


def _inputs(collection: Collection, plans: Sequence[TaskPlan]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(data inputs, template files) with sha256, paths as written (machine-independent)."""
    data, templates = [], []
    for plan in plans:
        task = plan.config
        written = [task.sni or task.instructions] if task.sni or task.instructions else [f for s in needed_splits(task) for f in (task.data_files or {}).get(s, ())]
        for rel in written:
            data.append({"task": task.name, "path": rel, "sha256": sha256_file(collection.resolve(rel))})
        if not task.sni:
            entry = {"task": task.name, "path": plan.template_label, "sha256": sha256_file(Path(plan.template_file)),
                     "template_fields": template_fields(plan.templates, task_nulls(task)),
                     "template_texts": template_texts(plan.templates)}
            if plan.template_source:  # converted templates (e.g. an lm-eval task): origin and eval settings
                entry["source"] = plan.template_source
            templates.append(entry)
    return data, templates


def _input_paths(collection: Collection) -> list[Path]:
    """Every local file the collection reads (the output folder may hold none of them)."""
    paths = [collection.path]
    for task in collection.tasks:
        named = [task.sni, task.instructions, task.templates, *(f for fs in (task.data_files or {}).values() for f in fs)]
        paths += [collection.resolve(p) for p in named if p]
    return paths


def _manifest(collection: Collection, plans: Sequence[TaskPlan], rows: int, outputs: dict[str, str]) -> dict[str, Any]:
    data, templates = _inputs(collection, plans)
    sources = [{"task": p.config.name, "dataset": p.config.dataset, "origin": p.data.origin,
                "split_rows": {s: len(r) for s, r in p.data.splits.items()},
                "selected_rows": {s: len(ix) for s, ix in p.selected.items()}} for p in plans]
    return {
        "collection": {"file": collection.path.name, "sha256": sha256_file(collection.path)},
        "seed": collection.seed, "config": collection.resolved(), "rows": rows, "sources": sources,
        "inputs": data, "templates": templates, "outputs": outputs, "versions": _versions(),
    }


def _select(collection: Collection, plans: Sequence[TaskPlan], rendered: Rendered) -> tuple[list[int], BuildStats]:
    """Positions of the rows kept after dedup and mixing, and the counters for the card."""
    from collections import Counter

    positions = list(range(rendered.rows))
    duplicates: Counter = Counter()
    if collection.dedup:
        assert rendered.dedup is not None, "render_all(..., remove_duplicates=collection.dedup) removes them"
        positions, duplicates = rendered.dedup.kept, rendered.dedup.removed
    report = None
    if collection.mixing is not None:
        positions, report = mix(positions, rendered.summaries, collection.mixing, len(plans))
    return positions, BuildStats(rendered.skips, duplicates, report, rendered.rows)


def kept_by_chunk(rendered: Rendered, positions: Sequence[int]) -> list[list[int] | None]:
    """The kept rows of each chunk, as positions within the chunk (None: all of them)."""
    kept: list[list[int]] = [[] for _ in rendered.chunks]
    starts, number = rendered.starts, 0
    for pos in positions:
        while starts[number + 1] <= pos:
            number += 1
        kept[number].append(pos - starts[number])
    return [None if len(rows) == s.rows else rows for rows, s in zip(kept, rendered.summaries)]


def corpus_stats(lanes: shards.Lanes, rendered: Rendered, kept: Sequence[list[int] | None]) -> dict[int, TaskStats]:
    """Task index -> the card counters of its kept rows, merged in corpus order.

    A chunk that kept every row has its counters in its summary; the worker that rendered a chunk
    that lost some counts its kept rows.
    """
    partial = [(n, rendered.lanes[n], shards.kept_stats, (n, array.array("I", rows).tobytes()))
               for n, rows in enumerate(kept) if rows]
    counted = shards.run_calls(lanes, partial)
    per_task: dict[int, TaskStats] = {}
    for n, (rows, summary) in enumerate(zip(kept, rendered.summaries)):
        if rows is None or rows:
            merge_stats(per_task.setdefault(summary.task, {}), counted.get(n, summary.stats))
    return per_task


def _kept_runs(rendered: Rendered, kept: Sequence[list[int] | None]) -> list[list[tuple[int, int]]]:
    """Each chunk's kept lines as byte ranges of its JSONL bytes."""
    return [writer.byte_runs(s.offsets, rows) for s, rows in zip(rendered.summaries, kept)]


def _write_corpus(tmp: Path, lanes: shards.Lanes, collection: Collection, plans: Sequence[TaskPlan],
                  rendered: Rendered, kept: Sequence[list[int] | None], runs: list[list[tuple[int, int]]],
                  per_task: dict[int, TaskStats], stats: BuildStats) -> dict[str, str]:
    """Write corpus.jsonl, the Parquet shards and card.md into ``tmp`` (the output's temp folder).

    Every worker writes its chunks' kept lines into corpus.jsonl at offsets fixed here, then
    takes Parquet shards as it comes free; this process writes the card, and hashes corpus.jsonl
    in a thread as its written prefix grows (workers write their chunks in corpus order).
    """
    jsonl = tmp / writer.CORPUS_JSONL
    offsets = list(itertools.accumulate((sum(b - a for a, b in r) for r in runs), initial=0))
    with jsonl.open("wb") as fh:
        fh.truncate(offsets[-1])
    (tmp / writer.PARQUET_DIR).mkdir()
    parts = writer.plan_parquet_shards([(s.offsets, rows) for s, rows in zip(rendered.summaries, kept)])
    lines = [(n, rendered.lanes[n], shards.write_kept, (n, r, str(jsonl), offsets[n])) for n, r in enumerate(runs) if r]
    parquet = [(part.name, None, shards.write_parquet_shard, (part, str(tmp / writer.PARQUET_DIR)))
               for part in sorted(parts, key=lambda p: -p.size)]  # largest first: an even finish
    write_text(tmp / writer.CARD, render_card(collection.path.name, collection.seed, plans, per_task, stats))
    outputs: dict[str, str] = {}
    hasher = writer.PrefixHasher(jsonl)
    written, frontier = [not r for r in runs], 0  # chunks with no kept line count as written
    try:
        for tag, value in shards.iter_calls(lanes, lines + parquet):
            if isinstance(tag, str):
                outputs[f"{writer.PARQUET_DIR}/{tag}"] = value
                continue
            written[tag] = True
            while frontier < len(runs) and written[frontier]:
                frontier += 1
            hasher.written(offsets[frontier])
    except BaseException:
        with contextlib.suppress(BaseException):
            hasher.hexdigest()  # stops its thread; the build's own error is the one to report
        raise
    outputs[writer.CORPUS_JSONL] = hasher.hexdigest()
    outputs[writer.CARD] = sha256_file(tmp / writer.CARD)
    return {name: outputs[name] for name in [writer.CORPUS_JSONL, *sorted(o for o in outputs if o.startswith(
        writer.PARQUET_DIR + "/")), writer.CARD]}


def _write_rest(tmp: Path, collection: Collection, plans: Sequence[TaskPlan], rows: int, outputs: dict[str, str],
                hf: bool) -> dict[str, str]:
    """The optional HF folder, then manifest.json (with every output's sha256)."""
    if hf:
        writer.save_to_disk(tmp, tmp / writer.HF_DIR, outputs[writer.CORPUS_JSONL])
        for path in sorted((tmp / writer.HF_DIR).rglob("*")):
            if path.is_file():
                outputs[path.relative_to(tmp).as_posix()] = sha256_file(path)
    write_json(tmp / writer.MANIFEST, _manifest(collection, plans, rows, outputs))
    return outputs


def _check_size(collection: Collection, runs: list[list[tuple[int, int]]], rows: int, max_size: int | None,
                out: Path, progress: bool) -> None:
    """Refuse a corpus larger than ``max_size`` before anything is written; else say what comes.

    Raises:
        TaskmillError: corpus.jsonl would exceed ``max_size`` bytes (one line with its size and rows).
    """
    size = sum(b - a for r in runs for a, b in r)
    if max_size is not None and size > max_size:
        raise TaskmillError(
            f"{writer.CORPUS_JSONL} would be {format_size(size)} ({rows:,} rows), over the --max-size limit "
            f"of {format_size(max_size)}; nothing was written: raise --max-size (0: no limit) or make the corpus "
            f"smaller (max_examples, mixing cap/total, fewer formats)", file=str(collection.path))
    if progress:
        limit = format_size(max_size) if max_size is not None else "none"
        print(f"taskmill: writing {rows:,} rows, {writer.CORPUS_JSONL} {format_size(size)} (limit {limit})"
              f" to {out}", file=sys.stderr, flush=True)


FULL_COLLECTION_EVERY = 1_000_000  # young (generation 1) collections between full ones while building


@contextlib.contextmanager
def _young_collections_only() -> Iterator[None]:
    """No full cyclic garbage collections while a corpus is planned, rendered and written.

    What a build keeps (the rows, the cached zero-shot renders, the chunks' results) only grows
    until it ends, and a full collection walks all of it each time the heap has grown by a quarter:
    0.6-0.8 s of a 20 s one-process build, in forked workers too (where walking inherited objects
    also copies their pages). Renders make next to no cyclic garbage (about 3,000 objects in a
    200k-row build), and what they make dies young: young collections, which stay on, free it.
    Forked workers inherit the setting; it is restored on the way out.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], FULL_COLLECTION_EVERY)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@_young_collections_only()
def build_collection(
    collection_file: str | Path | None,
    out: str | Path,
    *,
    num_proc: int | None = 1,
    executor: str = "local",
    address: str | None = None,
    save_to_disk: bool = False,
    formats: Sequence[str] | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> BuildResult:
    """Build a corpus folder from a collection file.

    Args:
        collection_file: The collection YAML (None: the embedded starter collection).
        out: The corpus folder to (re)place.
        num_proc: Workers rendering shards (the output does not depend on it): processes with the
            ``local`` executor (1: this process), Ray actors with ``ray`` (None: one per CPU of the
            cluster; with ``local``, None means 1).
        executor: ``local`` (worker processes on this machine) or ``ray`` (Ray actors).
        address: The Ray cluster (``auto``, ``host:port``, ``ray://host:port``); None starts Ray on
            this machine (or uses ``RAY_ADDRESS``). Only with ``executor="ray"``.
        save_to_disk: Also write the corpus as an HF ``datasets`` folder (``DIR/hf_dataset``).
        formats: Replace every task's formats.
        progress: Show a progress bar on stderr, and the corpus's rows and size before writing.
        cache_dir: The ``datasets`` cache folder (None: ``HF_DATASETS_CACHE`` or its default).
        overwrite: Replace ``out`` even when it is not an earlier corpus folder (never the current
            or home directory, nor a folder holding the collection's inputs).
        max_size: Refuse (before writing) a corpus.jsonl larger than this many bytes (None: no limit).

    Raises:
        TaskmillError: Bad collection, data or template, a corpus over ``max_size``, or an output
            folder that must not be replaced (one line); nothing is written.
    """
    if formats:
        _check_formats(formats)
    collection = load_collection(collection_file if collection_file is not None else starter_collection(), formats)
    workers = _check_workers(num_proc, executor, address)
    if max_size is not None and max_size < 1:
        raise ConfigError([f"--max-size must be a positive number of bytes or None (got {max_size})"])
    target = claim_output(out, "build", inputs=_input_paths(collection), overwrite=overwrite)
    cache = str(cache_dir) if cache_dir is not None else None
    plans = [plan_task(collection, i, task, cache) for i, task in enumerate(collection.tasks)]
    if workers is not None:  # no more workers than chunks
        workers = max(1, min(workers, len(make_chunks(plans))))
    with _new_parents(target.path), atomic_dir(target.path, marker=target.write_marker) as tmp, \
            _shard_folder(tmp, executor, workers) as folder:
        with shards.open_lanes(executor, workers, plans, folder, address) as lanes:
            rendered = render_all(plans, lanes, progress, collection.dedup)
            if not rendered.rows:  # e.g. --format cot and no template has a cot_target
                raise no_rows_error(str(collection.path), plans, rendered.skips)
            positions, stats = _select(collection, plans, rendered)
            kept = kept_by_chunk(rendered, positions)
            per_task = corpus_stats(lanes, rendered, kept)
            runs = _kept_runs(rendered, kept)
            _check_size(collection, runs, len(positions), max_size, Path(out), progress)
            outputs = _write_corpus(tmp, lanes, collection, plans, rendered, kept, runs, per_task, stats)
        outputs = _write_rest(tmp, collection, plans, len(positions), outputs, save_to_disk)
    _say_empty_formats(plans, rendered)  # once the corpus is in place (a failed build says only its error)
    return BuildResult(Path(out), len(positions), rendered.rows, outputs)


def _say_empty_formats(plans: Sequence[TaskPlan], rendered: Rendered) -> None:
    """Say on stderr, one line per task, which formats gave no rows from which templates and why
    (``zero_shot_options`` skips templates with ``choices_in_prompt: true``; the card counts them too)."""
    produced = {(s.task, tid, fmt) for s in rendered.summaries for tid, fmt in s.groups}
    for line in empty_format_notes(plans, produced, rendered.skips):
        print(f"taskmill: note: {line}", file=sys.stderr, flush=True)


def _check_workers(num_proc: int | None, executor: str, address: str | None) -> int | None:
    """The number of workers asked for (None: every CPU of the Ray cluster), after checking the options.

    Raises:
        ConfigError: An unknown executor, ``--address`` without Ray or unreachable, Ray not installed,
            or fewer than one worker.
    """
    if executor not in shards.EXECUTORS:
        raise ConfigError([f"--executor must be one of {list(shards.EXECUTORS)} (got '{executor}')"])
    if address is not None and executor != "ray":
        raise ConfigError([f"--address {address} is a Ray cluster address; expected --executor ray with it"])
    if num_proc is not None and num_proc < 1:
        raise ConfigError([f"--num-proc must be >= 1 (got {num_proc})"])
    if executor == "ray":  # missing Ray, or no cluster at --address: one line now, before any data is loaded
        from taskmill.builders.shards_ray import check_reachable, import_ray

        import_ray()
        if address is not None:
            check_reachable(address)
    return num_proc if num_proc is not None or executor == "ray" else 1


@contextlib.contextmanager
def _shard_folder(tmp: Path, executor: str, workers: int | None) -> Iterator[Path | None]:
    """The workers' shard folder, inside the output's temp folder (so a killed build's shards are
    swept with it, and every Ray node that sees the output sees them); removed on the way out.
    None when this process renders alone (its shards stay in memory)."""
    if executor == "local" and workers == 1:
        yield None
        return
    folder = tmp / ".shards"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _new_parents(folder: Path) -> Iterator[None]:
    """On failure, remove the (still empty) parent folders of ``folder`` that this build created."""
    missing = [p for p in folder.parents if not p.exists()]  # innermost first
    try:
        yield
    except BaseException:
        for parent in missing:
            try:
                parent.rmdir()
            except OSError:
                break
        raise
