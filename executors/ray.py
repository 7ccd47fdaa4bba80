"""The Ray executor: every unit one Ray task, dependencies passed as object references.

Ray places each unit on a node with the CPUs and GPUs it asks for, starts a unit once the results
it depends on exist, and starts a unit again when its worker process dies (``max_retries``); this
module only connects, checks what can be checked before any work, submits, and collects results as
they come. Ray is an optional dependency, imported here only.

Checks before the first unit is submitted, each failing with one line:

- the address answers within ``connect_timeout_s`` (a TCP connect, so a wrong address fails in
  seconds, not after Ray's own minute-long retries);
- some node has the CPUs and GPUs a unit asks for (Ray would otherwise wait for ever);
- from every node, the shared folders are the driver's own (a check file the driver wrote is
  visible there) and writable, and the input paths exist.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError, TaskmillError
from taskmill.executors.config import ExecutorConfig
from taskmill.executors.units import Unit, call_unit, order_units
from taskmill.fileio import temp_path, write_bytes

INSTALL_HINT = "the ray executor needs Ray, which is not installed: pip install 'taskmill[ray]'"
# A node's first worker starts a Python process and imports taskmill: slow on a loaded machine.
FOLDER_CHECK_TIMEOUT_S = 180.0


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`TaskmillError` with the install command."""
    try:
        import ray
    except ImportError:
        raise TaskmillError(INSTALL_HINT) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float) -> None:
    """Raise one line unless ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts a TCP connection in ``timeout`` s."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        why = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise TaskmillError(f"executor.address {address}: no Ray cluster answers there within {timeout:g} s ({why});"
                            " start one with `ray start --head` or pass the address it printed") from None


def connect(config: ExecutorConfig) -> Callable[[], None]:
    """Connect this process to Ray (unless it already is); returns the function that disconnects.

    ``address`` None starts a private Ray instance on this machine (no dashboard), which the
    returned function shuts down; a process already connected (a test, a notebook) is left so.
    """
    ray = import_ray()
    if ray.is_initialized():
        return lambda: None
    address = config.address
    if address not in (None, "auto"):
        check_reachable(address, config.connect_timeout_s)
    # Workers' output stays in Ray's session logs: the driver shows one progress bar and one line
    # per unit, which worker chatter would break up.
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        options["include_dashboard"] = False
    try:
        with _private_instance_env(address is None):
            ray.init(address=address, **options)
    except (ConnectionError, TimeoutError, RuntimeError) as err:
        raise TaskmillError(f"executor.address {address}: {_connect_problem(err)}") from None
    return ray.shutdown


@contextlib.contextmanager
def _private_instance_env(private: bool) -> Iterator[None]:
    """Environment of a Ray instance started here: workers at normal priority.

    Ray starts workers at niceness 15 so that its own daemons stay responsive; on a machine shared
    with other work that starves the units (measured: each 2-3x slower than in the driver). The
    units are this job's work, so a private instance runs them at the driver's priority. A cluster
    started with ``ray start`` keeps its operator's setting (``RAY_worker_niceness``).
    """
    if not private or "RAY_worker_niceness" in os.environ:
        yield
        return
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet that ray.init starts
    try:
        yield
    finally:
        os.environ.pop("RAY_worker_niceness", None)


def _connect_problem(err: BaseException) -> str:
    """What went wrong connecting, in one line (Ray chains the real cause under a generic error)."""
    chain, cause = [], err
    while cause is not None:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    if any("AuthToken" in c or "AuthenticationError" in c for c in chain):
        # Ray sends its token only to clusters it finds itself (auto); an explicit address needs opting in.
        return ("the Ray cluster refused this driver (token authentication): set RAY_AUTH_MODE=token and give it"
                " the cluster's token (~/.ray/auth_token on the head node, or RAY_AUTH_TOKEN)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot connect to a Ray cluster ({first}); start one with `ray start --head`"


def _alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def check_fits(units: Sequence[Unit]) -> None:
    """Raise one line when no node of the cluster has what some unit asks for."""
    ray = import_ray()
    nodes = [n.get("Resources") or {} for n in _alive_nodes(ray)]
    total = ray.cluster_resources()
    for cpus, gpus in sorted({(u.resources.num_cpus, u.resources.num_gpus) for u in units}):
        if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
            field = "num_gpus_per_unit" if gpus and not any(r.get("GPU", 0) >= gpus for r in nodes) else "num_cpus_per_unit"
            raise ConfigError([
                f"executor.{field}: a unit asks for {cpus:g} CPU and {gpus:g} GPU, but no node of the Ray cluster has"
                f" that much (cluster: {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs on {len(nodes)}"
                " node(s)); ask for less or add nodes that have it"])


def check_node(folders: Sequence[str], marks: Sequence[str], inputs: Sequence[str]) -> tuple[str, str | None]:
    """Run on one node (as a Ray task): can it see and write the driver's folders and read the inputs?

    Returns:
        The node's host name and what is wrong there (None: nothing).
    """
    host = socket.gethostname()
    for folder, mark in zip(folders, marks):
        if not (Path(folder) / mark).is_file():
            return host, (f"{folder} there is not the driver's folder (its check file is absent): every node needs"
                          " the same shared output folder at the same path")
        try:
            probe = temp_path(Path(folder) / "probe")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            return host, f"its workers cannot write the output folder {folder} ({err.strerror or err})"
    for path in inputs:
        if not os.path.exists(path):
            return host, f"the input {path} does not exist there: every node needs the model and the inputs at the same path"
    return host, None


def check_nodes(folders: Sequence[str | Path], inputs: Sequence[str | Path] = ()) -> None:
    """From every alive node, check the shared folders and the inputs (:func:`check_node`); one line on failure."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folders = [str(Path(f).resolve()) for f in folders]
    marks = []
    for folder in folders:
        mark = temp_path(Path(folder) / "executor-check")  # a temp name: swept if this driver dies
        write_bytes(mark, b"")
        marks.append(mark.name)
    try:
        check = ray.remote(num_cpus=0, max_retries=1)(check_node)
        nodes = _alive_nodes(ray)
        refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(folders, marks, [str(p) for p in inputs]) for n in nodes]
        try:
            answers = ray.get(refs, timeout=FOLDER_CHECK_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise TaskmillError(f"executor: not every Ray node answered the output-folder check within"
                                f" {FOLDER_CHECK_TIMEOUT_S:g} s; is taskmill installed on every node?") from None
        for host, problem in answers:
            if problem is not None:
                raise TaskmillError(f"executor: Ray node {host}: {problem}", file=folders[0])
    finally:
        for folder, mark in zip(folders, marks):
            (Path(folder) / mark).unlink(missing_ok=True)


def _failure(ray: Any, unit: Unit, err: Exception, retries: int) -> BaseException:
    """What a unit's failure raises in the driver: a user error as itself, a dead worker as one line."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        return cause if isinstance(cause, TaskmillError) else err
    if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError)):
        return TaskmillError(f"unit {unit.id}: its worker died {retries + 1} time(s) ({type(err).__name__}); "
                             "raise executor.max_retries or see the Ray logs (/tmp/ray/session_latest/logs)")
    return err


def run_ray(units: Sequence[Unit], done: Mapping[str, Any], on_result: Callable[[Unit, Any], None],
            config: ExecutorConfig) -> dict[str, Any]:
    """Submit every unit as a Ray task and collect the results as they finish.

    Args:
        units: Units to run.
        done: Results of units finished earlier (passed to dependants as plain values).
        on_result: Called with each unit and its result, in completion order.
        config: Retries (worker deaths only: a unit's own exception is deterministic, so retrying
            it would only repeat it).

    Returns:
        Every unit's result (with ``done``'s).
    """
    ray = import_ray()
    remote = ray.remote(call_unit)
    # A GPU unit's worker process ends with it (Ray's own default for functions declared with GPUs,
    # which ``options(num_gpus=...)`` does not give): a vLLM engine or a CUDA context it leaves
    # behind would otherwise hold the GPU for the next unit that worker runs.
    remote_gpu = ray.remote(max_calls=1)(call_unit)
    refs: dict[str, Any] = {}
    for unit in order_units(units, done):
        deps = [refs[d] if d in refs else done[d] for d in unit.deps]
        refs[unit.id] = (remote_gpu if unit.resources.num_gpus else remote).options(
            name=unit.id, num_cpus=unit.resources.num_cpus, num_gpus=unit.resources.num_gpus,
            max_retries=config.max_retries, retry_exceptions=False,
        ).remote(unit.fn, unit.resources.threads, *unit.args, *deps)
    by_ref = {ref: uid for uid, ref in refs.items()}
    units_by_id = {u.id: u for u in units}
    results = dict(done)
    pending = list(refs.values())
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            unit = units_by_id[by_ref[ready[0]]]
            try:
                results[unit.id] = ray.get(ready[0])
            except ray.exceptions.RayError as err:
                raise _failure(ray, unit, err, config.max_retries) from None
            on_result(unit, results[unit.id])
    finally:
        for ref in pending:  # after a failure: nothing new starts; finished units stay on disk
            ray.cancel(ref)
    return results
