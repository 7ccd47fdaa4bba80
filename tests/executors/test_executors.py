"""Executors without Ray: unit ordering, the local executor, the executor config, Ray as an optional import."""

from __future__ import annotations

import sys

import pytest

from taskmill.errors import ConfigError, TaskmillError
from taskmill.executors import ExecutorConfig, Resources, Unit, order_units, run_units


def _const(value):
    return value


def _plus(a, b):
    return a + b


def _threads():
    import torch

    return torch.get_num_threads()


def test_order_puts_dependencies_first_and_keeps_input_order_otherwise():
    units = [Unit("c", _plus, (1,), ("b",)), Unit("a", _const, (1,)), Unit("b", _plus, (1,), ("a",)), Unit("d", _const, (0,))]
    assert [u.id for u in order_units(units)] == ["a", "b", "c", "d"]
    assert [u.id for u in order_units([Unit("b", _plus, (1,), ("a",))], done={"a": 1})] == ["b"]


def test_bad_unit_graphs_are_one_line_each():
    with pytest.raises(ConfigError, match="unit x: depends on nope, which is not a unit"):
        order_units([Unit("x", _const, (1,), ("nope",))])
    with pytest.raises(ConfigError, match="cycle"):
        order_units([Unit("x", _plus, (1,), ("y",)), Unit("y", _plus, (1,), ("x",))])
    with pytest.raises(ConfigError, match="listed twice"):
        order_units([Unit("x", _const, (1,)), Unit("x", _const, (2,))])


def test_local_executor_passes_results_on_and_reports_each_unit():
    seen: list[tuple[str, int]] = []
    units = [Unit("sum", _plus, (10,), ("one",)), Unit("one", _const, (1,))]
    results = run_units(units, ExecutorConfig(), done={"zero": 0},
                        describe=lambda u, r: seen.append((u.id, r)) or None)
    assert results == {"zero": 0, "one": 1, "sum": 11}
    assert seen == [("one", 1), ("sum", 11)]


def test_local_executor_pins_each_units_torch_threads_then_restores_them():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    results = run_units([Unit("t", _threads, resources=Resources(threads=2)), Unit("u", _threads)], ExecutorConfig())
    assert results == {"t": 2, "u": before} and torch.get_num_threads() == before


def test_executor_config_lists_every_problem_and_names_cli_flags():
    with pytest.raises(ConfigError) as err:
        ExecutorConfig.from_mapping({"kind": "slurm", "address": "nowhere", "num_gpus_per_unit": -1,
                                     "num_cpus_per_unit": 0, "max_retries": 1.5, "connect_timeout_s": 0, "bogus": 1})
    text = err.value.line()
    for needle in ("executor.bogus: unknown key", "executor.kind: 'slurm'", "executor.address: 'nowhere'",
                   "num_gpus_per_unit: -1", "num_cpus_per_unit: 0", "max_retries: 1.5", "connect_timeout_s: 0"):
        assert needle in text
    with pytest.raises(ConfigError, match="executor.address: only used by the ray executor"):
        ExecutorConfig.from_mapping({"address": "auto"})
    assert ExecutorConfig.from_mapping({"kind": "ray", "address": "ray://127.0.0.1:10001"}).address.startswith("ray://")
    with pytest.raises(ConfigError, match=r"^--executor: 'dask'"):
        ExecutorConfig().overridden("dask")
    with pytest.raises(ConfigError, match=r"^--address: only used by the ray executor"):
        ExecutorConfig().overridden("local", address="127.0.0.1:6379")
    assert ExecutorConfig().overridden(address="127.0.0.1:6379").kind == "ray"  # --address alone means ray
    assert ExecutorConfig().overridden("ray", "auto") == ExecutorConfig(kind="ray", address="auto")


def test_without_ray_help_and_the_local_executor_work_and_ray_asks_for_the_install(monkeypatch):
    from typer.testing import CliRunner

    from taskmill.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    for args in (["--help"], ["loco", "--help"], ["run", "--help"]):
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0 and "Usage" in done.output
    assert "--executor" in CliRunner().invoke(app, ["loco", "--help"]).output
    assert run_units([Unit("one", _const, (1,))], ExecutorConfig()) == {"one": 1}
    with pytest.raises(TaskmillError, match=r"needs Ray, which is not installed: pip install 'taskmill\[ray\]'"):
        run_units([Unit("one", _const, (1,))], ExecutorConfig(kind="ray"))
