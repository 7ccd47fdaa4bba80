"""The Ray executor on a real local Ray cluster (loopback, 2 CPUs): dependencies as object references,
worker deaths retried, user errors as one line, and the checks made before any unit starts."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from taskmill.errors import ConfigError, DataError, TaskmillError
from taskmill.executors import ExecutorConfig, Resources, Unit, run_units

ray = pytest.importorskip("ray")
# Unit functions of this test module travel by value: Ray workers cannot import a test module by name.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

RAY = ExecutorConfig(kind="ray", max_retries=2)


def _slow(value, seconds):
    time.sleep(seconds)
    return value


def _plus(a, b):
    return a + b


def _where():
    import taskmill

    return os.getpid(), taskmill.__file__


def _die_once(marker):
    """Record this attempt's pid; the first attempt SIGKILLs its own worker process."""
    marker = Path(marker)
    attempts = marker.read_text().split() if marker.exists() else []
    marker.write_text(" ".join([*attempts, str(os.getpid())]))
    if not attempts:
        os.kill(os.getpid(), signal.SIGKILL)
    return len(attempts) + 1


def _bad_row():
    raise DataError("expected a label", file="rows.jsonl", row=3)


def _touch(path):
    Path(path).write_text("ran")
    return 1


def test_dependencies_travel_as_object_refs_and_results_stream_in_completion_order(ray_cluster):
    order: list[str] = []
    units = [Unit("slow", _slow, (1, 2.0)), Unit("after_slow", _plus, (10,), ("slow",)),
             Unit("quick", _slow, (5, 0.0)), Unit("after_done", _plus, (100,), ("earlier",))]
    results = run_units(units, RAY, done={"earlier": 7}, describe=lambda u, r: order.append(u.id) or None)
    assert results == {"earlier": 7, "slow": 1, "after_slow": 11, "quick": 5, "after_done": 107}
    assert order.index("quick") < order.index("slow") < order.index("after_slow")


def test_units_run_in_worker_processes_with_the_worktrees_code(ray_cluster):
    import taskmill

    ((pid, package),) = run_units([Unit("where", _where)], RAY).values()
    assert pid != os.getpid() and package == taskmill.__file__


def test_a_worker_killed_with_sigkill_has_its_unit_retried(ray_cluster, tmp_path):
    marker = tmp_path / "attempts"
    assert run_units([Unit("flaky", _die_once, (str(marker),))], RAY) == {"flaky": 2}
    first, second = marker.read_text().split()
    assert first != second  # a new worker process ran it again


def test_a_units_own_error_is_its_one_line_not_a_ray_traceback(ray_cluster):
    with pytest.raises(DataError) as err:
        run_units([Unit("bad", _bad_row)], RAY)
    assert err.value.line() == "rows.jsonl: row 3: expected a label"


def test_a_unit_asking_for_gpus_the_cluster_lacks_fails_before_anything_runs(ray_cluster, tmp_path):
    units = [Unit("cpu", _touch, (str(tmp_path / "cpu"),)),
             Unit("gpu", _touch, (str(tmp_path / "gpu"),), resources=Resources(num_gpus=1))]
    with pytest.raises(ConfigError, match=r"executor.num_gpus_per_unit: a unit asks for 1 CPU and 1 GPU, but no node"
                                          r" of the Ray cluster has that much \(cluster: 2 CPUs and 0 GPUs"):
        run_units(units, RAY)
    assert not any(tmp_path.iterdir())


def test_every_node_must_see_and_write_the_shared_folder_and_the_inputs(ray_cluster, tmp_path):
    run_units([Unit("one", _slow, (1, 0))], RAY, shared=[tmp_path], inputs=[tmp_path])
    assert not any(tmp_path.iterdir())  # the check leaves nothing behind
    with pytest.raises(TaskmillError, match="the input /nonexistent/model does not exist there"):
        run_units([Unit("one", _slow, (1, 0))], RAY, shared=[tmp_path], inputs=["/nonexistent/model"])


_FRESH_GPU_WORKERS = """
import os, sys
import ray
from taskmill.executors import ExecutorConfig, Resources, Unit, run_units

def pid(*_):
    return os.getpid()

ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
gpu, cpu = Resources(num_cpus=1, num_gpus=1), Resources(num_cpus=1, num_gpus=0)
units = [Unit("g1", pid, resources=gpu), Unit("g2", pid, (), ("g1",), resources=gpu),
         Unit("c1", pid, (), ("g2",), resources=cpu), Unit("c2", pid, (), ("c1",), resources=cpu)]
got = run_units(units, ExecutorConfig(kind="ray"))
print(" ".join(str(got[u]) for u in ("g1", "g2", "c1", "c2")))
"""


@pytest.mark.slow
def test_each_gpu_unit_runs_in_a_fresh_worker_process(tmp_path):
    """What a GPU unit loads (a vLLM engine takes most of the GPU) ends with its worker process; CPU
    units share workers. This machine has no GPU: its own Ray cluster (in a driver process of its
    own, since the session's cluster has none) is told of one, which Ray only counts — a stand-in
    for a GPU node."""
    import subprocess

    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-c", _FRESH_GPU_WORKERS], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    g1, g2, c1, c2 = proc.stdout.split()[-4:]
    assert g1 != g2
    assert os.getpid() not in {int(g1), int(g2), int(c1), int(c2)}
