"""Typed config: YAML + dotted overrides, every problem listed at once, resolved config saved."""

from __future__ import annotations

import pytest

from taskmill.errors import ConfigError
from taskmill.trainer.config import config_from_dict, load_config, save_config


def test_yaml_with_dotted_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("model: {path: m}\ndata: {corpus: c.jsonl}\noptim: {lr: 1.0e-4}\n")
    cfg = load_config(tmp_path / "c.yaml", ["optim.lr=3e-4", "lora.r=8", "lora.target_modules=[q_proj, v_proj]",
                                            "run.max_steps=5"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.lora.r == 8 and cfg.run.max_steps == 5
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.model.path == "m"


def test_all_problems_listed_at_once(tmp_path):
    bad = {"model": {"path": "m", "arch": {"hidden_size": 8}}, "optim": {"lr": "fast"},
           "lora": {"r": 4096}, "data": {"tokens_per_step": 0}, "nope": 1}
    with pytest.raises(ConfigError) as err:
        config_from_dict(bad, ["run.seed=abc"])
    text = err.value.line()
    for needle in ("nope: unknown key", "optim.lr: expected float", "run.seed: expected int"):
        assert needle in text, text
    # range checks run once the types are right, again all at once
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": {"path": "m", "arch": {"model_type": "llama"}}, "lora": {"r": 4096},
                          "data": {"tokens_per_step": 0}})
    problems = err.value.problems
    assert any("lora.r" in p for p in problems) and any("tokens_per_step" in p for p in problems)
    assert any("exactly one of model.path" in p for p in problems)


def test_resolved_config_round_trips(tmp_path):
    cfg = config_from_dict({"model": {"path": "m"}}, ["optim.betas=[0.9, 0.95]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        config_from_dict({"model": {"path": "m"}}, ["optim.lr"])
