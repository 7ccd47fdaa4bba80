"""``taskmill build --executor ray`` on a real local Ray cluster: the same bytes as one process.

Starting Ray takes 10-20 s here, so these tests are marked slow (CI installs ray and runs them).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Iterator

import pytest

from taskmill.builders import build as build_module
from taskmill.builders.build import build_collection

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_starts_and_stops_its_own_ray(project: Path, cache_dir: Path, tmp_path: Path, cli: Any) -> None:
    assert not ray.is_initialized()
    build_collection(project / "collection.yaml", tmp_path / "local", progress=False, cache_dir=cache_dir)
    result = cli(["build", project / "collection.yaml", "--out", tmp_path / "ray", "--executor", "ray",
                  "--num-proc", "2", "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    assert _hashes(tmp_path / "ray") == _hashes(tmp_path / "local")
    assert not ray.is_initialized()  # the build shut down the Ray instance it started


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A local two-CPU Ray instance shared by the tests below (builds use it as it is)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_shards_are_byte_identical_to_one_process(cluster: Any, project: Path, cache_dir: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_collection(project / "collection.yaml", tmp_path / "one", progress=False, cache_dir=cache_dir)
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)  # many chunks over the two actors
    for procs in (2, None):  # None: one actor per cluster CPU
        out = tmp_path / f"ray{procs}"
        build_collection(project / "collection.yaml", out, num_proc=procs, executor="ray", progress=False,
                         cache_dir=cache_dir)
        assert _hashes(out) == _hashes(tmp_path / "one")
    assert cluster.is_initialized()  # a Ray the caller started is left running


def test_failing_ray_shard_is_one_line_and_leaves_no_temp_folder(cluster: Any, project: Path, cache_dir: Path,
                                                                 tmp_path: Path, cli: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    lines = (project / "tiny" / "train.jsonl").read_text().splitlines()
    lines[8] = lines[8].replace('"label": 1', '"label": 9').replace('"label": 0', '"label": 9')
    (project / "tiny" / "train.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)
    out = tmp_path / "out"
    result = cli(["build", project / "collection.yaml", "--out", out, "--executor", "ray", "--num-proc", "2",
                  "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "row train[8]" in result.stderr, result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_more_ray_workers_than_cluster_cpus_is_one_line(cluster: Any, project: Path, cache_dir: Path,
                                                        tmp_path: Path, cli: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 4)  # enough chunks for 3 workers
    out = tmp_path / "out"
    result = cli(["build", project / "collection.yaml", "--out", out, "--executor", "ray", "--num-proc", "3",
                  "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "the cluster has 2 CPUs" in result.stderr, result.stderr
    assert not out.exists()
