"""Executors: run units of work here, one after another (``local``), or across a Ray cluster (``ray``).

A room of its own, low in the layering (above ``fileio``, beside ``templates``/``backends``), so that
both the LOCO driver (``orchestrate``) and sharded corpus builds (``builders``) can hand it their
units. Callers decide what a unit is and which units are already finished; executors order, place
and call them, show one progress bar over all of them and report each result as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from taskmill.executors.config import EXECUTORS, ExecutorConfig, executor_problems
from taskmill.executors.units import Resources, Unit, call_unit, order_units, pinned_threads

__all__ = ["EXECUTORS", "ExecutorConfig", "Resources", "Session", "Unit", "call_unit", "executor_problems",
           "order_units", "pinned_threads", "run_units"]


class Session:
    """An executor, connected: check what the units need, then run them.

    Used as a context manager (``with Session(config) as ex``): entering connects to Ray (one line
    on a missing package or an unreachable address), leaving disconnects. Nothing is written by
    either, so a caller can connect and check before it creates its output folder.
    """

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self._disconnect: Callable[[], None] = lambda: None

    def __enter__(self) -> Session:
        if self.config.kind == "ray":
            from taskmill.executors.ray import connect

            self._disconnect = connect(self.config)
        return self

    def __exit__(self, *exc: object) -> None:
        self._disconnect()

    def check_fits(self, units: Sequence[Unit]) -> None:
        """Raise one line when no node has the CPUs and GPUs some unit asks for (Ray would wait for ever)."""
        if self.config.kind == "ray" and units:
            from taskmill.executors.ray import check_fits

            check_fits(units)

    def check_nodes(self, shared: Sequence[str | Path] = (), inputs: Sequence[str | Path] = ()) -> None:
        """Raise one line when some node cannot write a ``shared`` folder (or it is not the same folder there)
        or lacks an ``inputs`` path. The local executor is this machine: its folder was claimed already."""
        if self.config.kind == "ray" and (shared or inputs):
            from taskmill.executors.ray import check_nodes

            check_nodes(shared, inputs)

    def run(self, units: Sequence[Unit], *, done: Mapping[str, Any] | None = None,
            describe: Callable[[Unit, Any], str | None] | None = None, progress: bool = False) -> dict[str, Any]:
        """Run ``units``; returns every unit's result (``done``'s too).

        Args:
            units: Units still to run.
            done: Results of units finished earlier (dependencies may name them).
            describe: ``(unit, result) -> line`` printed as each unit finishes (None: print nothing).
            progress: Show a progress bar over the units (stderr).

        Raises:
            TaskmillError: A unit's own error (the first one; units not started yet are cancelled),
                or a unit whose worker died more often than ``max_retries`` allows.
        """
        done = dict(done or {})
        order_units(units, done)
        with _Bar(len(units), progress) as bar:
            def on_result(unit: Unit, result: Any) -> None:
                bar.advance(describe(unit, result) if describe else None)

            if self.config.kind == "local" or not units:
                from taskmill.executors.local import run_local

                return run_local(units, done, on_result)
            from taskmill.executors.ray import run_ray

            return run_ray(units, done, on_result, self.config)


def run_units(units: Sequence[Unit], config: ExecutorConfig, *, done: Mapping[str, Any] | None = None,
              describe: Callable[[Unit, Any], str | None] | None = None, shared: Sequence[str | Path] = (),
              inputs: Sequence[str | Path] = (), progress: bool = False) -> dict[str, Any]:
    """Connect, check and run in one call (see :class:`Session`); returns every unit's result.

    Args:
        units: Units still to run.
        config: The executor.
        done: Results of units finished earlier.
        describe: ``(unit, result) -> line`` printed as each unit finishes.
        shared: Folders the units write, which every Ray node must see and write.
        inputs: Paths the units read, which must exist on every Ray node.
        progress: Show a progress bar over the units.
    """
    done = dict(done or {})
    order_units(units, done)  # bad dependencies fail before Ray is even imported
    with Session(config) as ex:
        ex.check_fits(units)
        ex.check_nodes(shared, inputs)
        return ex.run(units, done=done, describe=describe, progress=progress)


class _Bar:
    """One rich progress bar over all units; each unit's line is printed above it as it finishes."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled and total > 0
        self.bar: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("units"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True))
            self.bar.__enter__()
            self.task = self.bar.add_task("units", total=self.total)
        return self

    def advance(self, line: str | None) -> None:
        """Count one finished unit and print its line."""
        if self.bar is not None:
            if line:
                self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
            self.bar.advance(self.task)
        elif line:
            print(line, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
