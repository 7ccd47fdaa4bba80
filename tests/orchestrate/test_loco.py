"""``taskmill loco``: folds -> per-fold adapter (real trainer, tiny Llama) -> base and tuned eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskmill.errors import ConfigError
from taskmill.orchestrate.loco import LocoConfig, run_loco


@pytest.mark.slow
def test_loco_trains_and_evaluates_every_fold_then_skips_all(tmp_path, tiny_model_dir, write_loco_folds):
    cfg = LocoConfig(
        folds=str(write_loco_folds(tmp_path)), model=str(tiny_model_dir), out=str(tmp_path / "loco"),
        train={"lora": {"r": 4, "alpha": 8}, "data": {"max_length": 64, "tokens_per_step": 256, "micro_batch_tokens": 256},
               "run": {"max_steps": 2, "device": "cpu", "progress": False}, "optim": {"lr": 1e-2, "warmup_steps": 0}},
        eval={"prompt_style": "plain", "bootstrap": 50},
    )
    ran: dict[str, dict] = {}
    summary = run_loco(cfg, on_unit=lambda uid, res: ran.setdefault(uid, res))
    assert [f["fold"] for f in summary["folds"]] == ["cluster:opinion", "cluster:news"]
    assert list(ran) == ["answers:cluster:opinion", "base:cluster:opinion", "sft:cluster:opinion",
                         "answers:cluster:news", "base:cluster:news", "sft:cluster:news"]
    for fold, task in zip(summary["folds"], ["sent", "topic"]):
        assert [t["task"] for t in fold["tasks"]] == [task]
        assert fold["adapter_hash"] and fold["tasks"][0]["tuned"] is not None
        assert ran[f"answers:{fold['fold']}"]["model_calls"] > 0 and ran[f"sft:{fold['fold']}"]["model_calls"] > 0
        assert ran[f"base:{fold['fold']}"]["model_calls"] == 0  # scored from the answers unit's cache
    out = Path(cfg.out)
    assert (out / "folds" / "cluster_opinion" / "train" / "adapter" / "adapter_config.json").is_file()
    loco_bytes = (out / "loco.json").read_bytes()
    assert json.loads(loco_bytes) == summary
    records = {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()}
    assert len(records) == 6 and all(json.loads((out / "units" / n).read_text())["state"] == "done" for n in records)
    again: list[str] = []
    run_loco(cfg, on_unit=lambda uid, res: again.append(uid))  # every unit finished: nothing dispatched
    assert again == [] and (out / "loco.json").read_bytes() == loco_bytes
    assert {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()} == records


def test_loco_config_lists_every_problem():
    with pytest.raises(ConfigError) as err:
        LocoConfig.from_mapping({"model": 3, "eval": {"bogus": 1, "cache": "c.jsonl"}, "extra": 1,
                                 "executor": {"kind": "ray", "num_gpus_per_unit": "one", "adress": "auto"}})
    text = str(err.value)
    for needle in ("folds: required", "model: required", "out: required", "extra: unknown key", "eval.bogus",
                   "eval.cache: not a LOCO setting", "executor.adress: unknown key", "executor.num_gpus_per_unit: 'one'"):
        assert needle in text
    cfg = LocoConfig.from_mapping({"folds": "f", "model": "m", "out": "o",
                                   "executor": {"kind": "ray", "address": "auto", "num_gpus_per_unit": 1}})
    assert (cfg.executor.kind, cfg.executor.address, cfg.executor.num_gpus_per_unit) == ("ray", "auto", 1)


def test_loco_file_problems_are_one_line(tmp_path):
    """A missing or malformed LOCO file is one error line naming the file, not a traceback."""
    from taskmill.errors import TaskmillError
    from taskmill.orchestrate.loco import load_loco_config

    with pytest.raises(TaskmillError, match="file not found") as err:
        load_loco_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in err.value.line()
    bad = tmp_path / "bad.yaml"
    bad.write_text("folds: [\n")
    with pytest.raises(TaskmillError, match="malformed YAML: line 2"):
        load_loco_config(bad)


def test_a_unit_frees_the_backend_it_built_itself_even_when_it_fails(tmp_path, monkeypatch):
    """On a Ray worker a unit builds its own backend factory: its vLLM engine is shut down when the
    unit ends (the worker may run another unit next), and a factory passed in is left to its owner.
    The factory and the work are stand-ins: what is checked is who releases what."""
    from taskmill.orchestrate import loco, loco_units

    released: list[str] = []

    def make_factory(name):
        def factory(adapter):
            return None
        factory.release = lambda: released.append(name)
        return factory

    def work(unit, config, factory):
        if unit.id == "answers:bad":
            raise RuntimeError("evaluation failed")
        return {"line": "ok", "model_calls": 0}

    monkeypatch.setattr(loco, "default_factory", lambda config: make_factory("own"))
    monkeypatch.setattr(loco_units, "_answers", work)
    fold = loco_units.FoldInfo("cluster:a", ("a",), ("t",), str(tmp_path / "fold"))
    ok = loco_units.LocoUnit("answers:ok", "answers", fold, str(tmp_path), "k")
    bad = loco_units.LocoUnit("answers:bad", "answers", fold, str(tmp_path), "k")
    (tmp_path / "units").mkdir()
    assert loco_units.run_unit(ok, None, None)["line"].endswith("ok  (0 model calls, 0.0 s)")
    with pytest.raises(RuntimeError, match="evaluation failed"):
        loco_units.run_unit(bad, None, None)
    loco_units.run_unit(ok, None, make_factory("passed"))
    assert released == ["own", "own"]
