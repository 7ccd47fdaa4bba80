"""Fold-parallel LOCO on a real local Ray cluster: the local executor's bytes, a killed driver resumed
without recomputing finished units, a killed worker retried, and bad input caught before any work.

Every run of a comparison happens at the same absolute path (paths are part of results.json), and
is moved aside afterwards. Compared: every file under the LOCO folder except the trainer's
``log.jsonl`` (step timings) and ``units/`` (each unit's host, pid and seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from taskmill.executors import ExecutorConfig
from taskmill.orchestrate.loco import LocoConfig, run_loco

pytest.importorskip("ray")
pytestmark = pytest.mark.slow
NOT_RESULTS = ("log.jsonl",)


def result_files(root: Path) -> dict[str, bytes]:
    """Every result file under a LOCO folder, by relative path (timings and unit records left out)."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] != "units" and path.name not in NOT_RESULTS:
            files[str(rel)] = path.read_bytes()
    return files


def _config(starter_folds: dict[str, Path], tiny_model_dir: Path, out: Path) -> LocoConfig:
    folds = yaml.safe_load((starter_folds["folds"] / "folds.yaml").read_text())["folds"]
    clusters = [f for f in folds if f["kind"] == "cluster"]
    # one leave-one-task-out fold too: its task is held out by a cluster fold as well, so its base
    # results must come from that fold's answers (the base model answers each task once)
    task = next(f for f in folds if f["kind"] == "task" and f["test_tasks"][0] in clusters[0]["test_tasks"])
    return LocoConfig(
        folds=str(starter_folds["folds"]), model=str(tiny_model_dir), out=str(out),
        fold_names=tuple(f["name"] for f in [*clusters, task]),
        train={"lora": {"r": 4, "alpha": 8}, "data": {"max_length": 128, "tokens_per_step": 512, "micro_batch_tokens": 512},
               "optim": {"lr": 1e-3, "warmup_steps": 1}, "run": {"max_steps": 2, "device": "cpu", "progress": False}},
        eval={"formats": ["zero_shot"], "limit": 2, "max_new_tokens": 4, "bootstrap": 20,
              "clusters": str(starter_folds["clusters"] / "clusters.yaml")},
    )


def _move(out: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    os.rename(out, to)
    return to


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loco_ray")


@pytest.fixture(scope="module")
def local_run(base: Path, starter_folds, tiny_model_dir) -> tuple[LocoConfig, dict[str, bytes], list[str]]:
    """The local executor's run: its config, result files and the units it ran."""
    config = _config(starter_folds, tiny_model_dir, base / "loco")
    ran: list[str] = []
    run_loco(config, on_unit=lambda uid, res: ran.append(uid))
    return config, result_files(_move(base / "loco", base / "local")), ran


def _ray(config: LocoConfig) -> LocoConfig:
    return replace(config, executor=ExecutorConfig(kind="ray", max_retries=3))


def test_ray_executor_writes_the_local_executors_bytes(local_run, ray_cluster, base):
    config, expected, ran_here = local_run
    ran: list[str] = []
    run_loco(_ray(config), on_unit=lambda uid, res: ran.append(uid))
    got = result_files(_move(base / "loco", base / "ray"))
    assert sorted(ran) == sorted(ran_here)
    assert sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == []
    loco = json.loads(got["loco.json"])
    assert len(loco["folds"]) == 4 and all(t["tuned"] is not None for f in loco["folds"] for t in f["tasks"])


def test_base_model_answers_each_held_out_task_once(local_run):
    config, files, ran = local_run
    cluster_folds = [n for n in config.fold_names if n.startswith("cluster:")]
    task_fold = next(n for n in config.fold_names if n.startswith("task:"))
    assert [u for u in ran if u.startswith("answers:")] == [f"answers:{n}" for n in cluster_folds]
    loco = {f["fold"]: f for f in json.loads(files["loco.json"])["folds"]}
    (held,) = loco[task_fold]["tasks"]
    twin = next(t for t in loco[cluster_folds[0]]["tasks"] if t["task"] == held["task"])
    assert held["base"] == twin["base"]  # scored from the same answers


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _write_yaml(config: LocoConfig, path: Path) -> Path:
    raw = {"folds": config.folds, "model": config.model, "out": config.out, "fold_names": list(config.fold_names),
           "train": config.train, "eval": config.eval, "executor": {"kind": "ray", "max_retries": 3}}
    path.write_text(yaml.safe_dump(raw))
    return path


def _records(out: Path) -> dict[str, dict]:
    records = {}
    for path in (out / "units").glob("*.json"):
        try:
            records[path.name] = {**json.loads(path.read_text()), "mtime": path.stat().st_mtime_ns}
        except ValueError:
            continue
    return records


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_driver_rerun_runs_only_unfinished_units(local_run, ray_cluster, base):
    config, expected, ran = local_run
    out = base / "loco"
    cfg = _write_yaml(config, base / "loco.yaml")
    cmd = [sys.executable, "-m", "taskmill", "loco", str(cfg), "--address", ray_cluster]
    driver = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: sum(r["state"] == "done" for r in _records(out).values()) >= 3 or driver.poll() is not None,
              300, "three finished units")
        assert driver.poll() is None, "the driver finished before it could be killed"
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        driver.kill()
    before = _records(out)
    finished = {name: r for name, r in before.items() if r["state"] == "done"}
    assert 3 <= len(finished) < len(ran)
    # Ray ends a dead driver's tasks; wait until none of its workers is still writing
    _wait(lambda: not any(_alive(r["pid"]) for r in before.values() if r["state"] == "running"), 60, "workers to end")
    results_mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("results.json")}
    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=500)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(ran) - len(finished)} of {len(ran)} units to run ({len(finished)} finished earlier)" in again.stdout
    after = _records(out)
    assert all(after[name]["mtime"] == r["mtime"] for name, r in finished.items())  # not run again
    kept = [p for p in results_mtimes if p.stat().st_mtime_ns == results_mtimes[p]]
    assert len(kept) >= len(finished)  # their results were not rewritten either
    got = result_files(_move(out, base / "resumed"))
    assert sorted(got) == sorted(expected) and [n for n in expected if got[n] != expected[n]] == []


def test_a_worker_killed_mid_unit_is_retried_and_the_files_are_identical(local_run, ray_cluster, base):
    config, expected, _ = local_run
    out = base / "loco"
    killed: dict[str, int] = {}

    def kill_first_training_worker() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for name, record in _records(out).items():
                if record["state"] == "running" and record["unit"].startswith("sft:") and record["pid"] != os.getpid():
                    os.kill(record["pid"], signal.SIGKILL)
                    killed[name] = record["pid"]
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_training_worker, daemon=True)
    killer.start()
    run_loco(_ray(config))
    killer.join(5)
    assert killed, "no training unit was seen running"
    ((name, pid),) = killed.items()
    record = json.loads((out / "units" / name).read_text())
    assert record["state"] == "done" and record["pid"] != pid and not _alive(pid)
    got = result_files(_move(out, base / "killed_worker"))
    assert sorted(got) == sorted(expected) and [n for n in expected if got[n] != expected[n]] == []


# --- bad input: one line, exit 2, nothing written --------------------------------------------------


def _small_yaml(tmp_path: Path, folds: Path, model: Path, executor: dict) -> tuple[Path, Path]:
    out = tmp_path / "loco"
    raw = {"folds": str(folds), "model": str(model), "out": str(out), "executor": executor,
           "train": {"run": {"max_steps": 1, "device": "cpu", "progress": False}}, "eval": {"bootstrap": 0}}
    (tmp_path / "loco.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "loco.yaml", out


def _taskmill(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskmill", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_ray_address_is_one_line_within_the_timeout(tmp_path, write_loco_folds, tiny_model_dir, scheme):
    cfg, out = _small_yaml(tmp_path, write_loco_folds(tmp_path), tiny_model_dir, {"kind": "ray", "connect_timeout_s": 2})
    address = f"{scheme}127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    done = _taskmill("loco", str(cfg), "--address", address)
    assert done.returncode == 2 and time.monotonic() - start < 60
    assert done.stderr.strip().splitlines() == [
        f"taskmill: error: executor.address {address}: no Ray cluster answers there within 2 s (Connection refused);"
        " start one with `ray start --head` or pass the address it printed"]
    assert not out.exists()


def test_a_unit_asking_for_gpus_the_cluster_lacks_is_refused_before_any_work(tmp_path, write_loco_folds,
                                                                            tiny_model_dir, ray_cluster):
    cfg, out = _small_yaml(tmp_path, write_loco_folds(tmp_path), tiny_model_dir, {"kind": "ray", "num_gpus_per_unit": 1})
    done = _taskmill("loco", str(cfg), "--address", ray_cluster)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("taskmill: error: executor.num_gpus_per_unit: a unit asks for 1 CPU and 1 GPU, but no node")
    assert not out.exists()


def test_an_output_folder_the_workers_cannot_write_is_refused_before_any_work(tmp_path, write_loco_folds, tiny_model_dir,
                                                                             ray_cluster):
    """A Ray node whose workers see the output folder read-only: its processes live in a mount namespace
    where the folder is bind-mounted read-only, while this driver can write it."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m (root, or user namespaces) to give a Ray node its own view of the folder")
    cfg, out = _small_yaml(tmp_path, write_loco_folds(tmp_path), tiny_model_dir, {"kind": "ray"})
    out.mkdir()  # an empty folder is the driver's to claim; the node sees it read-only
    port, ray_bin = _free_port(), Path(sys.executable).with_name("ray")
    temp = Path(tempfile.mkdtemp(prefix="ray-ro-"))  # short: Ray's socket paths must fit in 107 bytes
    script = (f"mount --bind -o ro {out} {out} && exec {ray_bin} start --head --block --port {port} --num-cpus 1"
              f" --include-dashboard false --disable-usage-stats --temp-dir {temp}")
    node = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        raylet = temp / "session_latest" / "sockets" / "raylet"
        _wait(lambda: raylet.exists() or node.poll() is not None, 180, "the Ray node to start")
        assert node.poll() is None, f"the Ray node did not start: {node.stderr.read().decode()[-2000:]}"
        done = _taskmill("loco", str(cfg), "--address", f"127.0.0.1:{port}", timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)  # the node's processes all share its session's group
        node.wait(30)
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"taskmill: error: {out}: executor: Ray node ")
    assert line.endswith(f"its workers cannot write the output folder {out} (Read-only file system)")
    assert list(out.iterdir()) == []  # nothing written, not even the ownership marker
