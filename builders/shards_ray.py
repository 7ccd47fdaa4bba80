"""Ray actors as build workers (``taskmill build --executor ray``): the functions and shard store of
:mod:`taskmill.builders.shards`, run in actors of one CPU each.

Ray is optional: it is imported here, inside functions, and a build without ``--executor ray``
never loads this module. Without ``--address`` a new local Ray instance is started (and stopped
after the build); an address is checked with a plain TCP connection first, because Ray itself
retries an unreachable one for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskmill.builders.render import TaskPlan
from taskmill.builders.shards import WorkerDied, start_worker
from taskmill.errors import ConfigError

RAY_INSTALL = "pip install 'ray>=2.9'"


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
