"""The local executor: every unit in this process, one after another, in dependency order."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskmill.executors.units import Unit, call_unit, order_units


def run_local(units: Sequence[Unit], done: Mapping[str, Any], on_result: Callable[[Unit, Any], None]) -> dict[str, Any]:
    """Run ``units`` here; returns every unit's result (with ``done``'s).

    Args:
        units: Units to run.
        done: Results of units finished earlier (dependencies read from here).
        on_result: Called with each unit and its result as it finishes.
    """
    results = dict(done)
    for unit in order_units(units, done):
        result = call_unit(unit.fn, unit.resources.threads, *unit.args, *(results[d] for d in unit.deps))
        results[unit.id] = result
        on_result(unit, result)
    return results
