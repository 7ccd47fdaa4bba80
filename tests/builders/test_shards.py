"""Sharded builds: workers write their own shards, the parent merges them in a fixed order.

Same bytes for any number of worker processes (dedup, mixing and card counted from the shards'
summaries), a schedule that keeps each worker on a contiguous run of chunks, summaries that carry
no row text, and one line (nothing left behind) for a failing or dying worker and bad options.
The real-Ray tests are in test_shards_ray.py.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmill.builders import build as build_module
from taskmill.builders import shards
from taskmill.builders.build import build_collection, make_chunks, plan_task
from taskmill.builders.collection import load_collection


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_temps(folder: Path) -> None:
    """Neither the output nor any temp or shard folder beside it."""
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")] == []


def _mixed_collection(project: Path) -> Path:
    """Three tasks: one duplicating another's rows (dedup), one of distinct text, mixed with a cap."""
    text = (project / "tiny" / "train.jsonl").read_text()
    (project / "tiny" / "train2.jsonl").write_text(text.replace(" .", " !"))
    task = {"dataset": "tiny", "templates": "templates.yaml", "splits": ["train"]}
    data = {"seed": 5, "formats": ["zero_shot", "few_shot"], "shots": 1,
            "mixing": {"cap": 12, "splits": ["train"]},
            "tasks": [{"name": "big", **task, "data_files": {"train": "tiny/train.jsonl"}},
                      {"name": "dup", **task, "data_files": {"train": "tiny/train.jsonl"}, "max_examples": 6},
                      {"name": "other", **task, "data_files": {"train": "tiny/train2.jsonl"}}]}
    path = project / "mixed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_byte_identical_for_any_number_of_workers_with_dedup_and_mixing(
        project: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collection = _mixed_collection(project)
    build_collection(collection, tmp_path / "one", progress=False, cache_dir=cache_dir)
    card = (tmp_path / "one" / "card.md").read_text()
    assert "exact duplicates from train" in card and "left out by mixing" in card  # both decisions taken
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)  # many chunks, most losing some rows
    for procs in (2, 3):
        build_collection(collection, tmp_path / f"p{procs}", num_proc=procs, progress=False, cache_dir=cache_dir)
        assert _hashes(tmp_path / f"p{procs}") == _hashes(tmp_path / "one")


def test_schedule_gives_contiguous_runs_then_takes_from_the_end_of_the_busiest() -> None:
    schedule = shards.Schedule([1] * 10, 2)
    assert [list(r) for r in schedule.runs] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert [schedule.next(0) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert schedule.next(1) == 5
    assert schedule.next(0) == 9  # lane 0 is done: it takes lane 1's last chunk
    assert schedule.next(0) == 8 and schedule.next(1) == 6 and schedule.next(1) == 7
    assert schedule.next(0) is None and schedule.next(1) is None
    weighted = shards.Schedule([8, 1, 1, 1, 1, 1, 1, 1, 1], 2)  # one heavy chunk is half the work
    assert [list(r) for r in weighted.runs] == [[0], [1, 2, 3, 4, 5, 6, 7, 8]]
    weighted.drop_after(3)
    assert [list(r) for r in weighted.runs] == [[0], [1, 2]]  # chunk 3 failed: later ones are not started


def test_worker_summaries_carry_no_row_text(project: Path, cache_dir: Path, tmp_path: Path) -> None:
    collection = load_collection(project / "collection.yaml")
    plans = [plan_task(collection, i, t, str(cache_dir)) for i, t in enumerate(collection.tasks)]
    chunks = make_chunks(plans)
    folder = tmp_path / "shards"
    folder.mkdir()
    with shards.open_lanes("local", 2, plans, folder) as lanes:
        results = list(shards.render_chunks(lanes, chunks, [1] * len(chunks)))
    assert sorted(n for n, _, _ in results) == list(range(len(chunks)))
    assert {lane for _, lane, _ in results} == {0, 1}
    jsonl = sum(s.offsets[-1] for _, _, s in results)
    piped = sum(len(pickle.dumps(s)) for _, _, s in results)
    assert jsonl > 0 and piped < jsonl / 3  # offsets, keys, ids and counters only
    assert sorted(p.suffix for p in folder.iterdir()) == [".arrow"] * len(chunks)  # the Parquet pieces


def test_failing_shard_leaves_no_temp_folder(project: Path, cache_dir: Path, tmp_path: Path, cli: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lines = (project / "tiny" / "train.jsonl").read_text().splitlines()
    lines[8] = lines[8].replace('"label": 1', '"label": 9').replace('"label": 0', '"label": 9')
    (project / "tiny" / "train.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)  # the bad row is in a later chunk
    out = tmp_path / "out"
    result = cli(["build", project / "collection.yaml", "--out", out, "--num-proc", "3", "--no-progress",
                  "--cache-dir", cache_dir])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "row train[8]" in result.stderr and "Traceback" not in result.output
    _no_temps(out)


def test_a_killed_worker_is_one_line_and_leaves_nothing(project: Path, cache_dir: Path, tmp_path: Path, cli: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = shards.run_chunk

    def dies_on_a_later_chunk(chunk: Any) -> Any:
        if chunk.lo >= 4 and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return real(chunk)

    parent = os.getpid()
    monkeypatch.setattr(shards, "run_chunk", dies_on_a_later_chunk)  # forked workers inherit it
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)
    out = tmp_path / "nested" / "out"
    result = cli(["build", project / "collection.yaml", "--out", out, "--num-proc", "2", "--no-progress",
                  "--cache-dir", cache_dir])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "stopped without finishing (exit code -9" in result.stderr
    assert not (tmp_path / "nested").exists()  # the parent folder the build made is gone too


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("args, expected", [
    (["--executor", "ray", "--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster there"),
    (["--executor", "ray", "--address", "ray://127.0.0.1:{port}"], "cannot reach a Ray cluster there"),
    (["--address", "127.0.0.1:{port}"], "expected --executor ray with it"),
    (["--executor", "spark"], "--executor must be one of ['local', 'ray']"),
    (["--num-proc", "0"], "--num-proc must be >= 1"),
])
def test_bad_executor_options_are_one_line(project: Path, cache_dir: Path, tmp_path: Path, cli: Any,
                                           args: list[str], expected: str) -> None:
    port = _free_port()
    out = tmp_path / "out"
    result = cli(["build", project / "collection.yaml", "--out", out, "--no-progress", "--cache-dir", cache_dir,
                  *(a.format(port=port) for a in args)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    if "ray" in args and not _has_ray():
        expected = "needs Ray, which is not installed"
    assert expected in lines[0], lines[0]
    _no_temps(out)


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _ignore_sigterm() -> None:
    """Runs in a worker: what a worker does when a stop signal reaches it before its handlers are set."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def test_a_worker_ends_when_the_parent_closes_its_pipe(tmp_path: Path) -> None:
    """A forked worker holds no copy of the parent's end of its own pipe: closing it is end of file
    there, so a worker that never got its stop signal does not live on (and a parent joining it
    does not hang)."""
    lanes = shards.ProcessLanes(2, [], tmp_path)
    procs = list(lanes._procs)
    for conn in lanes._conns:
        conn.close()  # no None sent, no SIGTERM: end of file is the only way out
    for proc in procs:
        proc.join(timeout=10)
    alive = [proc.is_alive() for proc in procs]
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    assert alive == [False, False]


def test_close_kills_a_worker_that_ignores_its_stop_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "STOP_GRACE_S", 0.5)
    lanes = shards.ProcessLanes(1, [], tmp_path)
    lanes.submit(0, "tag", _ignore_sigterm)
    assert lanes.wait() == (0, "tag", None)
    proc = lanes._procs[0]
    os.kill(proc.pid, signal.SIGSTOP)  # it cannot read the end of file either: only SIGKILL ends it
    lanes.close()
    assert not proc.is_alive() and proc.exitcode == -signal.SIGKILL


def test_a_build_runs_no_full_collection_and_restores_the_collector(
        project: Path, cache_dir: Path, tmp_path: Path) -> None:
    """Full cyclic collections (which walk every row and render a build keeps) are off while it
    runs, young ones stay on, and the caller's thresholds come back, after a failure too."""
    building: list[int] = []  # generations collected while the build's thresholds were in force

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and gc.get_threshold() == (1, 1, build_module.FULL_COLLECTION_EVERY):
            building.append(info["generation"])

    before = gc.get_threshold()
    gc.set_threshold(1, 1, 1)  # by default, every other young collection would be a full one
    gc.callbacks.append(count)
    try:
        build_collection(_mixed_collection(project), tmp_path / "out", progress=False, cache_dir=cache_dir)
        with pytest.raises(Exception):
            build_collection(project / "missing.yaml", tmp_path / "bad", progress=False, cache_dir=cache_dir)
        after = gc.get_threshold()
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*before)
    assert 0 in building and 2 not in building
    assert after == (1, 1, 1)
