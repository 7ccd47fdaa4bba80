"""Sharded rendering: chunks spread over workers that write their own shard files.

A build cuts its rows into chunks (runs of one task's split, see
:func:`taskmill.builders.build.make_chunks`). Workers render chunks and keep each chunk's output
in a :class:`ShardStore`: its JSONL bytes and per-row metadata in memory, its Arrow batch in a
shard file. What comes back to the parent is a :class:`ChunkSummary`: line offsets, dedup keys,
row ids and the card's counters, never the rows' text. The parent decides dedup and mixing from
those small facts, asks the workers for the card counters of chunks that lost rows, fixes where
each chunk's kept lines go in corpus.jsonl, and has every worker write its own there (in
parallel), while it builds corpus.parquet from the Arrow shards in chunk order. So
the bytes depend neither on the number of workers nor on which rendered what.

Three kinds of workers run the same functions (:func:`render_shard`, :func:`kept_stats`,
:func:`write_kept`):

- :class:`InlineLanes`: this process (``--num-proc 1``), shards kept in memory;
- :class:`ProcessLanes`: forked worker processes, one pipe each (``--num-proc N``);
- :class:`RayLanes`: Ray actors, one CPU each (``--executor ray``), on a local Ray instance or a
  running cluster; shard files go to the output folder's temp area, which every node must see.

Each worker starts on a contiguous run of chunks (:class:`Schedule`) and, when done, takes chunks
from the end of the busiest worker's run: neighbouring chunks share few-shot exemplars, which a
worker renders once and caches.
"""

from __future__ import annotations

import array
import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

from taskmill.builders import writer
from taskmill.builders.card import TaskStats, chunk_stats
from taskmill.builders.render import Chunk, ChunkResult, Meta, TaskPlan, init_worker, run_chunk
from taskmill.errors import ConfigError, TaskmillError

EXECUTORS = ("local", "ray")
DEPTH = 2  # chunks queued per worker, so that none waits for the parent between chunks
RAY_INSTALL = "pip install 'ray>=2.9'"
_ID_SIZE = 16  # keys.row_id: 16 hex digits
_KEY_SIZE = 32  # keys.text_key: a sha256 digest


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
        """Chunk ``number``'s Arrow batch: from memory, else read (and removed) from the shard folder."""
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


def stop_worker() -> None:
    """Drop the plans and the shards kept in this process."""
    init_worker([])
    _WORKER.clear()


class Lanes(Protocol):
    """Workers that run :mod:`taskmill.builders.shards` functions; calls to one worker run in order."""

    size: int
    store: ShardStore  # the parent's view of where the workers leave their shards

    def submit(self, lane: int, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` on worker ``lane``; ``tag`` comes back with its result."""

    def wait(self) -> tuple[int, Any, Any]:
        """(lane, tag, result) of a finished call (any lane's, the first to finish)."""

    def pending(self) -> int:
        """Calls submitted and not yet returned by :meth:`wait`."""


class InlineLanes:
    """One worker: this process (``--num-proc 1``); each call runs when submitted."""

    size = 1

    def __init__(self) -> None:
        self.store = _WORKER["store"]  # the same object the worker functions fill
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


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the parent dies (SIGKILL runs no cleanup)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker stops at its next message instead
        pass


def _lane_main(conn: Connection, plans: list[TaskPlan], folder: Path, others: list[Connection]) -> None:
    """A worker process: run the calls that arrive on ``conn`` until it closes.

    ``others`` are the parent's ends of the earlier workers' pipes, which a forked worker inherits:
    it closes them, so that the parent alone holds them (a worker's death reads as end of file).
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
        self.store = ShardStore(folder)
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._queued: list[collections.deque[Any]] = [collections.deque() for _ in range(size)]
        for _ in range(size):
            parent, child = context.Pipe()
            others = self._conns if method == "fork" else []
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
            proc.join()


class ShardWorker:
    """A Ray actor's state: the plans and the shard store (wrapped by ``ray.remote`` in :class:`RayLanes`)."""

    def __init__(self, plans: list[TaskPlan], folder: str) -> None:
        start_worker(plans, Path(folder))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one of this module's worker functions."""
        return fn(*args)


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (one line with the install command).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError([f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}"]) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None for ``auto`` and other forms."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at ``address``.

    Raises:
        ConfigError: No connection to ``address`` (one line with how to start a cluster).
    """
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout):
            pass
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ConfigError([f"--address {address}: cannot reach a Ray cluster there ({why}); start one with "
                           "'ray start --head' and pass the address it prints, or leave --address out to start "
                           "Ray on this machine"]) from None


def connect_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to the Ray cluster at ``address``, or start one on this machine (``num_cpus`` CPUs)
    when ``address`` is None and ``RAY_ADDRESS`` is unset; an already connected Ray is used as is.

    Returns:
        Whether this call connected (and so whoever called it should disconnect).

    Raises:
        ConfigError: Ray is missing or the cluster cannot be reached (one line).
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:  # "local": a new instance, even when `ray start` left one this machine knows of
        options.update(num_cpus=num_cpus, include_dashboard=False)
    try:
        ray.init(address=address or "local", **options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = f"--address {address}" if address else "a local Ray instance"
        raise ConfigError([f"{where}: cannot connect to Ray: {' '.join(str(err).split())[:300]}"]) from None
    return True


class RayLanes:
    """``size`` Ray actors (one CPU each) that render into a shard folder every node can see.

    Args:
        size: Actors (None: one per CPU of the cluster).
        plans: The planned tasks (put in Ray's object store once).
        folder: The shard folder (inside the output folder's temp area).
        address: The cluster (``auto``, ``host:port``, ``ray://host:port``), or None to start Ray here.

    Raises:
        ConfigError: Ray missing, the cluster unreachable, or fewer CPUs in it than ``size``.
    """

    def __init__(self, size: int | None, plans: list[TaskPlan], folder: Path, address: str | None) -> None:
        self.ray = import_ray()
        self.store = ShardStore(folder)
        self._started = connect_ray(address, size or os.cpu_count() or 1)
        self._inflight: dict[Any, tuple[int, Any]] = {}
        self._actors: list[Any] = []
        try:
            cpus = int(self.ray.cluster_resources().get("CPU", 0))
            self.size = size = size or max(1, cpus)
            if cpus < size:
                raise ConfigError([f"--num-proc {size} asks for {size} Ray workers of 1 CPU each, but the cluster "
                                   f"has {cpus} CPUs; expected --num-proc {max(cpus, 1)} or less"])
            actor = self.ray.remote(num_cpus=1)(ShardWorker)
            shared = self.ray.put(plans)
            self._actors = [actor.remote(shared, str(folder)) for _ in range(size)]
        except BaseException:
            self.close()
            raise

    def submit(self, lane: int, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on actor ``lane``."""
        self._inflight[self._actors[lane].call.remote(fn, *args)] = (lane, tag)

    def wait(self) -> tuple[int, Any, Any]:
        """The first finished call.

        Raises:
            WorkerDied: An actor died (its node lost, killed, out of memory).
        """
        ready, _ = self.ray.wait(list(self._inflight), num_returns=1)
        lane, tag = self._inflight.pop(ready[0])
        try:
            value = self.ray.get(ready[0])
        except self.ray.exceptions.RayActorError as err:
            raise WorkerDied(f"Ray build worker {lane + 1} of {self.size} died ({' '.join(str(err).split())[:200]}); "
                             "nothing was written (every node needs taskmill installed and the output folder "
                             "mounted at the same path)") from None
        return lane, tag, value

    def pending(self) -> int:
        """Calls not yet returned."""
        return len(self._inflight)

    def close(self) -> None:
        """Kill the actors (so none writes after this) and disconnect if this connected."""
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self._actors, self._inflight = [], {}
        if self._started:
            self.ray.shutdown()


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
    lanes: ProcessLanes | RayLanes = (ProcessLanes(size or 1, plans, folder) if executor == "local"
                                      else RayLanes(size, plans, folder, address))
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

    def feed(lane: int) -> None:
        number = schedule.next(lane)
        if number is not None:
            lanes.submit(lane, number, render_shard, number, chunks[number])

    for _ in range(DEPTH):
        for lane in range(lanes.size):
            feed(lane)
    while lanes.pending():
        lane, number, summary = lanes.wait()
        if summary.error is not None:
            schedule.drop_after(number)
        feed(lane)
        yield number, lane, summary


def run_calls(lanes: Lanes, calls: Sequence[tuple[Any, int, Callable[..., Any], tuple[Any, ...]]]) -> dict[Any, Any]:
    """Run ``(tag, lane, fn, args)`` calls, each on its worker ``lane``; returns tag -> result."""
    queues: list[collections.deque[tuple[Any, Callable[..., Any], tuple[Any, ...]]]] = [
        collections.deque() for _ in range(lanes.size)]
    for tag, lane, fn, args in calls:
        queues[lane].append((tag, fn, args))
    results: dict[Any, Any] = {}

    def feed(lane: int) -> None:
        if queues[lane]:
            tag, fn, args = queues[lane].popleft()
            lanes.submit(lane, tag, fn, *args)

    for _ in range(DEPTH):
        for lane in range(lanes.size):
            feed(lane)
    while lanes.pending():
        lane, tag, value = lanes.wait()
        results[tag] = value
        feed(lane)
    return results
