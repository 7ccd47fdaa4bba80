"""CPU seconds of one ``taskmill build`` by phase and by process: where the time goes, and what the
build would take on an idle machine.

Wall time on a shared machine measures the other users as much as the build. CPU seconds do not:
this runs one build in this process (the steps of ``build_collection``, each timed), records the
CPU time of every worker (their answers carry it back), and projects the wall time on an idle
machine with one core per worker as the critical path:

    start-up + plan + slowest worker's rendering + select + card counters
    + max(slowest worker's writing (its JSONL lines, then Parquet shards), this process's writing)

Usage (``build_throughput.py --profile`` runs it for --num-proc 1 and 2)::

    python bench/build_profile.py COLLECTION.yaml OUT_DIR NUM_PROC [CACHE_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

START_CPU = time.process_time()  # interpreter start-up is not in it; the imports below are


_REAL: dict[str, Any] = {}


def timed_render_shard(*args: Any) -> Any:
    """:func:`taskmill.builders.shards.render_shard`, its summary carrying the worker's CPU seconds so far
    (module-level, so that it pickles by name to the forked workers)."""
    summary = _REAL["render_shard"](*args)
    summary.worker_cpu = time.process_time()
    return summary


class TimedSha(str):
    """A Parquet shard's sha256, carrying the worker's CPU seconds after writing it."""

    worker_cpu: float = 0.0

    def __reduce__(self) -> Any:
        return _timed_sha, (str(self), self.worker_cpu)


def _timed_sha(sha: str, cpu: float) -> TimedSha:
    out = TimedSha(sha)
    out.worker_cpu = cpu
    return out


def timed_write_kept(*args: Any) -> float:
    """:func:`taskmill.builders.shards.write_kept`, returning the worker's CPU seconds so far."""
    _REAL["write_kept"](*args)
    return time.process_time()


def timed_write_parquet_shard(*args: Any) -> TimedSha:
    """:func:`taskmill.builders.shards.write_parquet_shard`, its sha256 carrying the worker's CPU seconds."""
    return _timed_sha(_REAL["write_parquet_shard"](*args), time.process_time())


def profile(collection_file: str, out: str, num_proc: int, cache_dir: str | None) -> dict[str, Any]:
    """Run one build step by step; returns CPU seconds per phase, per worker, and the projection."""

    from taskmill.builders import build as B
    from taskmill.builders import shards
    from taskmill.builders.collection import load_collection
    from taskmill.fileio import atomic_dir, claim_output

    cpu: dict[str, float] = {"imports": time.process_time() - START_CPU}
    threads: dict[str, float] = {}

    _REAL.update(render_shard=shards.render_shard, write_kept=shards.write_kept,
                 write_parquet_shard=shards.write_parquet_shard)
    shards.render_shard, shards.write_kept = timed_render_shard, timed_write_kept
    shards.write_parquet_shard = timed_write_parquet_shard
    render_cpu: dict[int, float] = {}
    write_cpu: dict[int, float] = {}
    real_chunks, real_calls = shards.render_chunks, shards.iter_calls

    def render_chunks(lanes: Any, *args: Any) -> Any:
        for number, lane, summary in real_chunks(lanes, *args):
            render_cpu[lane] = max(render_cpu.get(lane, 0.0), summary.worker_cpu)
            yield number, lane, summary

    def iter_calls(lanes: Any, calls: Any) -> Any:
        # Which worker ran a free call is not known here: take the latest CPU time any answer carries
        # per worker that rendered (write_kept) and, for Parquet shards, the largest answer overall.
        lane_of = {tag: lane for tag, lane, _, _ in calls}
        for tag, value in real_calls(lanes, calls):
            cpu_now = value.worker_cpu if isinstance(value, TimedSha) else value
            if isinstance(cpu_now, float):
                key = lane_of[tag] if lane_of[tag] is not None else "parquet"
                write_cpu[key] = max(write_cpu.get(key, 0.0), cpu_now)
            yield tag, value

    shards.render_chunks, shards.iter_calls = render_chunks, iter_calls
    mark = [time.process_time()]

    def phase(name: str) -> None:
        now = time.process_time()
        cpu[name] = now - mark[0]
        mark[0] = now

    wall = time.perf_counter()
    collection = load_collection(collection_file)
    workers = B._check_workers(num_proc, "local", None)
    target = claim_output(out, "build", inputs=B._input_paths(collection), overwrite=True)
    plans = [B.plan_task(collection, i, t, cache_dir) for i, t in enumerate(collection.tasks)]
    phase("plan")
    with atomic_dir(target.path, marker=target.write_marker) as tmp, B._shard_folder(tmp, "local", workers) as folder:
        with shards.open_lanes("local", workers, plans, folder) as lanes:
            phase("start workers")
            rendered = B.render_all(plans, lanes, False, collection.dedup)
            phase("render (this process)")
            positions, stats = B._select(collection, plans, rendered)
            kept = B.kept_by_chunk(rendered, positions)
            phase("dedup + mixing")
            per_task = B.corpus_stats(lanes, rendered, kept)
            runs = B._kept_runs(rendered, kept)
            phase("card counters")
            main_start = time.thread_time()
            outputs = B._write_corpus(tmp, lanes, collection, plans, rendered, kept, runs, per_task, stats)
            threads["main"] = time.thread_time() - main_start
            phase("write corpus (all threads)")
        B._write_rest(tmp, collection, plans, len(positions), outputs, False)
        phase("manifest")
    wall = time.perf_counter() - wall
    if workers == 1:
        slowest_render = cpu["render (this process)"]
        slowest_write = 0.0  # in the main thread's time
    else:
        slowest_render = max(render_cpu.values())
        # A worker's writing ends at the last CPU time its answers carried; Parquet shards go to any
        # worker, so the latest of those stands for the slowest worker's end.
        ends = [write_cpu.get(lane, 0.0) for lane in render_cpu] + [write_cpu.get("parquet", 0.0)]
        slowest_write = max(ends) - min(render_cpu.values())
    serial = cpu["imports"] + cpu["plan"] + cpu["start workers"] + cpu["dedup + mixing"] + cpu["card counters"] \
        + cpu["manifest"]
    post = max(threads["main"], slowest_write)
    return {"num_proc": workers, "phases_cpu_s": cpu, "threads_cpu_s": threads, "workers_render_cpu_s": render_cpu,
            "workers_write_cpu_s": {str(k): v - min(render_cpu.values(), default=0.0) for k, v in write_cpu.items()},
            "projected_idle_wall_s": serial + slowest_render + post, "measured_wall_s": wall}


def main() -> None:
    args = sys.argv[1:]
    result = profile(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
