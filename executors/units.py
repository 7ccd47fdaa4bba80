"""Units of work and their dependencies: what an executor runs.

A :class:`Unit` is a module-level function with plain-data arguments (so that a Ray worker on
another machine can import and call it), the ids of the units whose results it takes as its last
arguments, and the resources it asks for. Executors only order, place and call units; what a unit
does, and when it counts as finished, is its caller's business.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskmill.errors import ConfigError


@dataclass(frozen=True)
class Resources:
    """What one unit asks for.

    Attributes:
        num_cpus: CPUs reserved for it (Ray).
        num_gpus: GPUs reserved for it (Ray); fractions share a GPU.
        threads: torch intra-op threads it computes with (None: leave torch alone). Pinned by every
            executor, because CPU float results depend on the thread count.
    """

    num_cpus: float = 1
    num_gpus: float = 0
    threads: int | None = None


@dataclass(frozen=True)
class Unit:
    """One unit of work.

    Attributes:
        id: Unique name (shown in progress lines and errors).
        fn: A module-level function; called as ``fn(*args, *results_of_deps)``.
        args: Its leading arguments (picklable plain data).
        deps: Ids of the units whose results it needs, in argument order. Under Ray they are passed
            as object references, so Ray starts the unit once they exist; no scheduler of ours.
        resources: What it asks for.
    """

    id: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    deps: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)


def order_units(units: Sequence[Unit], done: Mapping[str, Any] = {}) -> list[Unit]:  # noqa: B006 - read only
    """The units in an order where every dependency comes first (stable: input order otherwise).

    Args:
        units: Units to run.
        done: Results of units finished earlier, which may be dependencies too.

    Raises:
        ConfigError: Duplicate ids, a dependency that is neither a unit nor done, or a cycle.
    """
    by_id: dict[str, Unit] = {}
    for unit in units:
        if unit.id in by_id or unit.id in done:
            raise ConfigError([f"unit {unit.id}: listed twice"])
        by_id[unit.id] = unit
    missing = [f"unit {u.id}: depends on {d}, which is not a unit" for u in units for d in u.deps
               if d not in by_id and d not in done]
    if missing:
        raise ConfigError(missing)
    ordered: list[Unit] = []
    state: dict[str, str] = {}

    def visit(unit: Unit) -> None:
        if state.get(unit.id) == "done":
            return
        if state.get(unit.id) == "visiting":
            raise ConfigError([f"unit {unit.id}: its dependencies form a cycle"])
        state[unit.id] = "visiting"
        for dep in unit.deps:
            if dep in by_id:
                visit(by_id[dep])
        state[unit.id] = "done"
        ordered.append(unit)

    for unit in units:
        visit(unit)
    return ordered


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch on ``threads`` intra-op threads, then restore the count."""
    if threads is None or importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def call_unit(fn: Callable[..., Any], threads: int | None, *args: Any) -> Any:
    """Call one unit's function with its thread count pinned (what every executor runs)."""
    with pinned_threads(threads):
        return fn(*args)
