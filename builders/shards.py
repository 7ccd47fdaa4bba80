"""Sharded rendering: chunks spread over workers that write their own shard files.

A build cuts its rows into chunks (runs of one task's split, see
:func:`taskmill.builders.build.make_chunks`). Workers render chunks and keep each chunk's output
in a :class:`ShardStore`: its JSONL bytes and per-row metadata in memory, its Arrow batch in a
shard file. What comes back to the parent is a :class:`ChunkSummary`: line offsets, dedup keys,
row ids and the card's counters, never the rows' text. The parent decides dedup and mixing from
those small facts, asks the workers for the card counters of chunks that lost rows, fixes where
each chunk's kept lines go in corpus.jsonl and which rows make each Parquet shard
(:func:`taskmill.builders.writer.plan_parquet_shards`); then every worker writes its own chunks'
lines into corpus.jsonl and takes Parquet shards as it comes free, reading the Arrow batches of
any worker's chunks from the shard folder. No row passes through the parent, and the bytes
depend neither on the number of workers nor on which rendered or wrote what.

Three kinds of workers run the same functions (:func:`render_shard`, :func:`kept_stats`,
:func:`write_kept`):

- :class:`InlineLanes`: this process (``--num-proc 1``), shards kept in memory;
- :class:`ProcessLanes`: forked worker processes, one pipe each (``--num-proc N``);
- :class:`~taskmill.builders.shards_ray.RayLanes`: Ray actors, one CPU each (``--executor ray``),
  on a local Ray instance or a running cluster; shard files go to the output folder's temp area,
  which every node must see.

Each worker starts on a contiguous run of chunks (:class:`Schedule`) and, when done, takes chunks
from the end of the busiest worker's run: neighbouring chunks share few-shot exemplars, which a
worker renders once and caches.
"""

from __future__ import annotations

import array
import collections
import contextlib
import multiprocessing
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from taskmill.builders import writer
from taskmill.builders.mixing import ID_SIZE
from taskmill.builders.card import TaskStats, chunk_stats
from taskmill.builders.render import Chunk, ChunkResult, Meta, TaskPlan, init_worker, run_chunk
from taskmill.errors import TaskmillError

EXECUTORS = ("local", "ray")
DEPTH = 2  # chunks queued per worker, so that none waits for the parent between chunks


@dataclass
class ChunkSummary:
    """What a worker sends back for a chunk: small facts about its rows, not their text.

    Attributes:
        task: Task index of the chunk.
        split: Split of the chunk.
        rows: Corpus rows rendered.
        offsets: Byte offset of each JSONL line in the shard, plus the shard's length.
        keys: The rows' exact-duplicate keys (32 bytes each), in row order.
        ids: The rows' ids (16 ASCII bytes each), in row order.
        groups: The distinct (template_id, format) of the rows.
        group_of: Each row's index in ``groups``.
        stats: The card's counters of all the chunk's rows.
        skips: (template_id, split, format, reason) -> [count, example row indices].
        error: The one-line report of a failure (then nothing else is set).
    """

    task: int
    split: str
    rows: int = 0
    offsets: array.array = field(default_factory=lambda: array.array("q", [0]))
    keys: bytes = b""
    ids: bytes = b""
    groups: tuple[tuple[str, str], ...] = ()
    group_of: array.array = field(default_factory=lambda: array.array("H"))
    stats: TaskStats | None = None
    skips: dict[tuple[str, str, str, str], list[Any]] | None = None
    error: str | None = None


def summarize(chunk: Chunk, result: ChunkResult) -> ChunkSummary:
    """The summary of a rendered chunk (its metas condensed to keys, ids, groups and counters)."""
    if result.error is not None:
        return ChunkSummary(chunk.task, chunk.split, error=result.error)
    metas = result.metas
    assert all(len(m[3]) == ID_SIZE for m in metas), "row ids are keys.row_id's 16 hex digits"
    codes: dict[tuple[str, str], int] = {}
    group_of = array.array("H", (codes.setdefault((m[1], m[2]), len(codes)) for m in metas))
    return ChunkSummary(
        chunk.task, chunk.split, len(metas), array.array("q", result.offsets or [0]), b"".join(m[4] for m in metas),
        "".join(m[3] for m in metas).encode("ascii"), tuple(codes), group_of, chunk_stats(metas), result.skips)


class ShardStore:
    """What a worker keeps of the chunks it rendered, until the corpus is written.

    JSONL bytes and metas stay in the worker's memory (the worker writes the kept lines into
    corpus.jsonl itself, and counts the card's rows of chunks that lost some); the Arrow batch goes
    to the shard folder, which the parent reads as soon as the chunk is done. Without a folder
    (``--num-proc 1``) everything stays in memory, in the one process.

    Args:
        folder: The shard folder, or None to keep the batches in memory.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._memory: dict[int, ChunkResult] = {}

    def put(self, number: int, result: ChunkResult) -> None:
        """Keep chunk ``number``'s output (its batch spilled when there is a folder)."""
        if self.folder is not None:
            writer.spill_batch(self.folder, number, result.batch)
            result.batch = None
        self._memory[number] = result

    def batch(self, number: int) -> Any:
        """Chunk ``number``'s Arrow batch: from memory, else memory-mapped from the shard folder
        (any worker's: a Parquet shard holds rows that several workers rendered)."""
        kept = self._memory.get(number)
        if kept is not None and kept.batch is not None:
            return kept.batch
        assert self.folder is not None
        return writer.load_batch(self.folder, number)

    def metas(self, number: int) -> list[Meta]:
        """Chunk ``number``'s per-row metadata (this worker rendered it)."""
        return self._memory[number].metas

    def write(self, number: int, runs: Sequence[tuple[int, int]], path: Path, offset: int) -> None:
        """Write the ``runs`` of chunk ``number``'s JSONL bytes into ``path`` from ``offset``, then
        let the bytes go."""
        result = self._memory[number]
        writer.write_runs(path, offset, result.blob, runs)
        result.blob = b""


_WORKER: dict[str, ShardStore] = {}


def start_worker(plans: list[TaskPlan], folder: Path | None) -> None:
    """Prepare this process (or actor) to render ``plans``, spilling batches to ``folder``."""
    init_worker(plans)
    _WORKER["store"] = ShardStore(folder)


def render_shard(number: int, chunk: Chunk) -> ChunkSummary:
    """Worker: render chunk ``number`` and keep its output; returns its summary."""
    result = run_chunk(chunk)
    if result.error is None:
        _WORKER["store"].put(number, result)
    return summarize(chunk, result)


def kept_stats(number: int, kept: bytes) -> TaskStats:
    """Worker: the card counters of chunk ``number``'s rows at ``kept`` (``array('I')`` bytes, ascending)."""
    positions = array.array("I")
    positions.frombytes(kept)
    return chunk_stats(_WORKER["store"].metas(number), positions)


def write_kept(number: int, runs: Sequence[tuple[int, int]], path: str, offset: int) -> None:
    """Worker: write chunk ``number``'s kept lines (byte ``runs``) into corpus.jsonl at ``offset``."""
    _WORKER["store"].write(number, runs, Path(path), offset)


def write_parquet_shard(shard: writer.ParquetShard, folder: str) -> str:
    """Worker: write one Parquet shard into ``folder``; returns its sha256."""
    return writer.write_parquet_shard(_WORKER["store"].batch, shard, Path(folder) / shard.name)


def stop_worker() -> None:
    """Drop the plans and the shards kept in this process."""
    init_worker([])
    _WORKER.clear()


class Lanes(Protocol):
    """Workers that run :mod:`taskmill.builders.shards` functions; calls to one worker run in order."""

    size: int

    def submit(self, lane: int, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` on worker ``lane``; ``tag`` comes back with its result."""

    def wait(self) -> tuple[int, Any, Any]:
        """(lane, tag, result) of a finished call (any lane's, the first to finish)."""

    def pending(self) -> int:
        """Calls submitted and not yet returned by :meth:`wait`."""

    def close(self) -> None:
        """Stop the workers, whatever they are doing."""


class InlineLanes:
    """One worker: this process (``--num-proc 1``); each call runs when submitted."""

    size = 1

    def __init__(self) -> None:
        self._done: collections.deque[tuple[int, Any, Any]] = collections.deque()

    def submit(self, lane: int, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` now."""
        self._done.append((lane, tag, fn(*args)))

    def wait(self) -> tuple[int, Any, Any]:
        """The oldest result."""
        return self._done.popleft()

    def pending(self) -> int:
        """Results not yet taken."""
        return len(self._done)

    def close(self) -> None:
        """Nothing to stop."""


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the parent dies (SIGKILL runs no cleanup)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker stops at its next message instead
        pass


def _lane_main(conn: Connection, plans: list[TaskPlan], folder: Path, others: list[Connection]) -> None:
    """A worker process: run the calls that arrive on ``conn`` until it closes.

    ``others`` are the parent's ends of the pipes, which a forked worker inherits (the earlier
    workers' and its own): it closes them, so that the parent alone holds them. A worker's death
    then reads as end of file in the parent, and the parent's closing its end as end of file here,
    so a worker that missed its stop signal (one arriving before the handlers below are set, which
    the CLI's SIGTERM handler turns into an exception Python ignores inside fork hooks) still ends.
    """
    for other in others:
        other.close()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (inherited from the CLI, which raises SystemExit)
    start_worker(plans, folder)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = (True, fn(*args))
        except BaseException:  # a bug, not bad input: sent back whole for the parent to raise
            reply = (False, traceback.format_exc())
        try:
            conn.send(reply)
        except OSError:  # the parent is gone (killed): nobody to answer
            return


STOP_GRACE_S = 5.0  # how long a stopped worker may take to end before it is killed


class WorkerDied(TaskmillError):
    """A worker process ended without answering (killed, or out of memory)."""


class ProcessLanes:
    """``size`` forked worker processes, each with its own pipe (no thread in the parent).

    Args:
        size: Worker processes.
        plans: The planned tasks (inherited through fork, else pickled once per worker).
        folder: The shard folder the workers write.
    """

    def __init__(self, size: int, plans: list[TaskPlan], folder: Path) -> None:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        self.size = size
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._queued: list[collections.deque[Any]] = [collections.deque() for _ in range(size)]
        for _ in range(size):
            parent, child = context.Pipe()
            others = [*self._conns, parent] if method == "fork" else []
            proc = context.Process(target=_lane_main, args=(child, plans, folder, others), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def submit(self, lane: int, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Send ``fn(*args)`` to worker ``lane``."""
        self._conns[lane].send((fn, args))
        self._queued[lane].append(tag)

    def wait(self) -> tuple[int, Any, Any]:
        """The next answer of any busy worker.

        Raises:
            WorkerDied: A worker ended without answering.
            RuntimeError: A call raised an unexpected exception (its traceback is the message).
        """
        busy = {self._conns[i]: i for i in range(self.size) if self._queued[i]}
        conn = wait(list(busy))[0]
        lane = busy[conn]  # type: ignore[index]
        try:
            ok, value = conn.recv()  # type: ignore[union-attr]
        except (EOFError, OSError):
            self._procs[lane].join(timeout=5)
            code = self._procs[lane].exitcode
            raise WorkerDied(f"build worker {lane + 1} of {self.size} stopped without finishing (exit code {code}; "
                             "killed, or out of memory?); nothing was written") from None
        tag = self._queued[lane].popleft()
        if not ok:
            raise RuntimeError(f"build worker {lane + 1} failed:\n{value}")
        return lane, tag, value

    def pending(self) -> int:
        """Calls sent and not yet answered."""
        return sum(len(q) for q in self._queued)

    def close(self) -> None:
        """Stop the workers (at once, whatever they are doing) and wait for them."""
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(timeout=STOP_GRACE_S)
            if proc.is_alive():  # SIGTERM was lost (see _lane_main): never wait forever on a worker
                proc.kill()
                proc.join()


@contextlib.contextmanager
def open_lanes(executor: str, size: int | None, plans: list[TaskPlan], folder: Path | None,
               address: str | None = None) -> Iterator[Lanes]:
    """The workers of a build, stopped on the way out (whatever they are doing).

    Args:
        executor: ``local`` or ``ray``.
        size: Workers (``local`` with 1: this process; ``ray`` with None: one per cluster CPU).
        plans: The planned tasks.
        folder: The shard folder (required unless ``local`` with one worker).
        address: Ray cluster address (``ray`` only).
    """
    if executor == "local" and size == 1:
        start_worker(plans, None)
        try:
            yield InlineLanes()
        finally:
            stop_worker()
        return
    if folder is None:
        raise ValueError("open_lanes: workers need a shard folder")
    if executor == "local":
        lanes: Lanes = ProcessLanes(size or 1, plans, folder)
    else:
        from taskmill.builders.shards_ray import RayLanes

        lanes = RayLanes(size, plans, folder, address)
    try:
        yield lanes
    finally:
        lanes.close()


class Schedule:
    """Which chunk each worker renders next: a contiguous run each, then work taken from the end
    of the run with the most work left.

    Args:
        costs: Estimated cost of each chunk, in corpus order.
        lanes: Workers.
    """

    def __init__(self, costs: Sequence[int], lanes: int) -> None:
        self.costs = list(costs)
        total = sum(self.costs) or 1
        self.runs: list[collections.deque[int]] = [collections.deque() for _ in range(lanes)]
        done = 0
        for number, cost in enumerate(self.costs):
            # A chunk goes to the run whose share of the total cost its middle falls in.
            lane = min(lanes - 1, (2 * done + cost) * lanes // (2 * total))
            self.runs[lane].append(number)
            done += cost

    def next(self, lane: int) -> int | None:
        """The chunk worker ``lane`` renders next, or None when no chunk is left."""
        if self.runs[lane]:
            return self.runs[lane].popleft()
        busiest = max(range(len(self.runs)), key=lambda i: (sum(self.costs[n] for n in self.runs[i]), -i))
        return self.runs[busiest].pop() if self.runs[busiest] else None

    def drop_after(self, number: int) -> None:
        """Forget the chunks after ``number`` (a chunk failed: only earlier failures still matter)."""
        for run in self.runs:
            kept = [n for n in run if n < number]
            run.clear()
            run.extend(kept)


def render_chunks(lanes: Lanes, chunks: Sequence[Chunk],
                  costs: Sequence[int]) -> Iterator[tuple[int, int, ChunkSummary]]:
    """Render every chunk on ``lanes``; yields (number, lane, summary) as they finish (any order).

    The worker ``lane`` keeps the chunk's JSONL bytes and metas: later calls about the chunk
    (:func:`kept_stats`, :func:`write_kept`) go to it.

    After a failure, chunks after the failing one are not started; the caller reports the first
    failure in corpus order once every earlier chunk is done.
    """
    schedule = Schedule(costs, lanes.size)
    busy = [0] * lanes.size

    def feed(lane: int) -> None:
        # A queued chunk hides the round trip to the parent; once a worker lives on chunks taken
        # from others, it queues none, so that at the end no worker waits on another's queue.
        while busy[lane] < (DEPTH if schedule.runs[lane] else 1):
            number = schedule.next(lane)
            if number is None:
                return
            lanes.submit(lane, number, render_shard, number, chunks[number])
            busy[lane] += 1

    for lane in range(lanes.size):
        feed(lane)
    while lanes.pending():
        lane, number, summary = lanes.wait()
        busy[lane] -= 1
        if summary.error is not None:
            schedule.drop_after(number)
        feed(lane)
        yield number, lane, summary


def run_calls(lanes: Lanes, calls: Sequence[tuple[Any, int | None, Callable[..., Any], tuple[Any, ...]]]) -> dict[Any, Any]:
    """Run ``(tag, lane, fn, args)`` calls; returns tag -> result. See :func:`iter_calls`."""
    return dict(iter_calls(lanes, calls))


def iter_calls(lanes: Lanes,
               calls: Sequence[tuple[Any, int | None, Callable[..., Any], tuple[Any, ...]]]) -> Iterator[tuple[Any, Any]]:
    """Run ``(tag, lane, fn, args)`` calls; yields (tag, result) as they finish.

    A call with a ``lane`` runs on that worker (it holds the chunk the call is about), in the
    order given; a call with lane None runs on whichever worker is free first, once that worker
    has none of its own calls left, taken in the order given (so give the largest first).
    """
    queues: list[collections.deque[tuple[Any, Callable[..., Any], tuple[Any, ...]]]] = [
        collections.deque() for _ in range(lanes.size)]
    free: collections.deque[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = collections.deque()
    for tag, lane, fn, args in calls:
        (free if lane is None else queues[lane]).append((tag, fn, args))
    busy = [0] * lanes.size

    def feed(lane: int) -> None:
        # One free call at a time per worker, so that none is left queued behind a slow one.
        while busy[lane] < DEPTH and (queues[lane] or (free and not busy[lane])):
            tag, fn, args = (queues[lane] or free).popleft()
            lanes.submit(lane, tag, fn, *args)
            busy[lane] += 1

    for lane in range(lanes.size):
        feed(lane)
    while lanes.pending():
        lane, tag, value = lanes.wait()
        busy[lane] -= 1
        feed(lane)
        yield tag, value
