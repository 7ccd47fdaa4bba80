"""bench/trainer_vs_trl.py end to end on the CPU with its tiny shape: both trainers run, numbers land.

The GPU numbers come from the same script on CUDA; this keeps the script runnable between device
sessions (a broken bench would only show on the GPU, where time is scarce).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "trainer_vs_trl.py"


@pytest.mark.slow
def test_bench_tiny_runs_both_trainers(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("trainer_vs_trl", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--extra", "compile", "--out", str(out)])
    results = json.loads(out.read_text())
    for key in ("check_varlen_vs_sdpa", "taskmill_full", "trl_full", "taskmill_lora", "trl_lora",
                "taskmill_full_compile", "taskmill_lora_compile"):
        assert "error" not in results[key], (key, results[key])
    for key in ("taskmill_full", "taskmill_lora"):
        r = results[key]
        assert r["tokens_per_s"] > 0 and r["timed_steps"] == 4
        # event/perf_counter step times never exceed the host's wall clock around the run
        assert 0 < r["sum_step_s"] <= r["run_wall_s"]
        assert r["last_loss"] == r["last_loss"]  # not NaN
    # the same data and tokens per step on both sides
    assert results["trl_full"]["tokens_per_step"] == pytest.approx(results["taskmill_full"]["tokens_per_step"], rel=0.25)
    assert "x TRL tok/s" in capsys.readouterr().out
