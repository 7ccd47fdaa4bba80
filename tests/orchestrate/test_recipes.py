"""``taskmill loco`` with ``recipes: [sft, sft+dpo]``: both adapters on the same fold, one report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from taskmill.errors import ConfigError
from taskmill.orchestrate.loco import LocoConfig, run_loco


def _row(task, i, prompt, choices, target):
    return {"id": f"{task}-{i}", "task": task, "dataset": task, "split": "train", "row_index": i,
            "template_id": "t", "template_name": "t", "format": "zero_shot", "prompt": prompt,
            "completion": choices[target], "messages": [{"role": "user", "content": prompt},
                                                        {"role": "assistant", "content": choices[target]}],
            "answer_choices": choices, "target_index": target, "shots": [], "metrics": ["Accuracy"], "original_task": True}


def _folds(tmp: Path) -> Path:
    corpus = tmp / "corpus"
    corpus.mkdir()
    rows = [_row("sent", i, f"Review {i}: fine. Good?", ["yes", "no"], i % 2) for i in range(6)]
    rows += [_row("topic", i, f"Headline {i}: goal scored. Topic?", ["sports", "politics", "food"], i % 3) for i in range(6)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (corpus / "corpus.jsonl").write_text(text)
    folds = tmp / "folds"
    folds.mkdir()
    entries = [{"name": "cluster:opinion", "kind": "cluster", "held_out": ["opinion"], "train_tasks": ["topic"], "test_tasks": ["sent"]}]
    header = {"corpus": {"path": str(corpus), "sha256": hashlib.sha256(text.encode()).hexdigest()}}
    (folds / "folds.yaml").write_text(yaml.safe_dump({**header, "folds": entries}))
    return folds


def test_loco_compares_sft_with_dpo_after_sft_on_the_same_fold(tmp_path, tiny_model_dir):
    cfg = LocoConfig.from_mapping({
        "folds": str(_folds(tmp_path)), "model": str(tiny_model_dir), "out": str(tmp_path / "loco"),
        "recipes": ["sft", "sft+dpo"],
        "train": {"lora": {"r": 4, "alpha": 8}, "data": {"max_length": 64, "tokens_per_step": 256, "micro_batch_tokens": 256},
                  "run": {"max_steps": 2, "device": "cpu", "progress": False}, "optim": {"lr": 1e-2, "warmup_steps": 0}},
        "dpo": {"dpo": {"beta": 0.5}, "lora": {"r": 2, "alpha": 4}, "run": {"max_steps": 2}},
        "eval": {"prompt_style": "plain", "bootstrap": 20},
    })
    summary = run_loco(cfg)
    assert summary["recipes"] == ["sft", "sft+dpo"]
    (fold,) = summary["folds"]
    (task,) = fold["tasks"]
    assert set(task["recipes"]) == {"sft", "sft+dpo"} and task["recipes"]["sft"] == task["tuned"]
    assert task["recipes"]["sft+dpo"] is not None
    assert fold["recipe_adapter_hash"]["sft+dpo"] != fold["adapter_hash"]
    fold_dir = Path(cfg.out) / "folds" / "cluster_opinion"
    prefs = [json.loads(l) for l in (fold_dir / "preferences_sft_dpo" / "preferences.jsonl").read_text().splitlines()]
    assert len(prefs) == 6 and {p["task"] for p in prefs} == {"topic"}  # pairs come from the fold's training tasks only
    adapter = json.loads((fold_dir / "train_sft_dpo" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 + 2  # SFT and DPO adapters saved as one, applied to the base model
    dpo_log = [json.loads(l) for l in (fold_dir / "train_sft_dpo" / "log.jsonl").read_text().splitlines()]
    assert dpo_log[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # reference = the SFT model
    again = run_loco(cfg)  # everything cached: no training, no model call
    assert again["folds"][0]["tasks"] == summary["folds"][0]["tasks"]


def test_loco_recipes_are_validated():
    with pytest.raises(ConfigError) as err:
        LocoConfig.from_mapping({"folds": "f", "model": "m", "out": "o", "recipes": ["sft+dpo"], "preference": {"bogus": 1}})
    text = str(err.value)
    assert "recipes: must start with sft" in text and "preference.bogus" in text
    with pytest.raises(ConfigError, match="recipes"):
        LocoConfig.from_mapping({"folds": "f", "model": "m", "out": "o", "recipes": ["ppo"]})


def test_vllm_serving_rank_is_checked_before_training():
    """sft+dpo concatenates two adapters: rank 16 + 16 needs max_lora_rank 32, found at config time."""
    raw = {"folds": "f", "model": "m", "out": "o", "recipes": ["sft", "sft+dpo"], "train": {"lora": {"r": 16}},
           "eval": {"backend": "vllm", "backend_options": {"max_lora_rank": 16}}}
    with pytest.raises(ConfigError, match=r"below the sft\+dpo adapters' rank 32 .*use max_lora_rank: 32"):
        LocoConfig.from_mapping(raw)
    raw["eval"]["backend_options"]["max_lora_rank"] = 32
    assert LocoConfig.from_mapping(raw).recipes == ("sft", "sft+dpo")
    raw["dpo"] = {"lora": {"r": 32}}  # the DPO adapter's own rank counts too
    with pytest.raises(ConfigError, match="rank 48 .*use max_lora_rank: 64"):
        LocoConfig.from_mapping(raw)
    raw["eval"]["backend_options"]["max_lora_rank"] = 48
    with pytest.raises(ConfigError, match="vLLM accepts 1, 8, 16"):
        LocoConfig.from_mapping(raw)
    raw["train"]["lora"]["r"], raw["dpo"] = 384, {}  # each rank allowed alone, their sum served by no value
    raw["eval"]["backend_options"]["max_lora_rank"] = 512
    with pytest.raises(ConfigError, match="no vLLM max_lora_rank serves rank 768 .*lower lora.r"):
        LocoConfig.from_mapping(raw)
    raw["train"]["lora"]["r"] = "sixteen"
    with pytest.raises(ConfigError, match="expected an integer, got 'sixteen'"):
        LocoConfig.from_mapping(raw)
    raw["eval"] = {"backend": "hf"}  # other backends load any rank
    assert LocoConfig.from_mapping(raw).eval == {"backend": "hf"}


def test_loco_compares_sft_dpo_and_rlhf_after_sft_on_the_same_fold(tmp_path, tiny_model_dir):
    """sft+rlhf: RLOO on the fold's training prompts (ROUGE-L against their targets), on top of SFT."""
    cfg = LocoConfig.from_mapping({
        "folds": str(_folds(tmp_path)), "model": str(tiny_model_dir), "out": str(tmp_path / "loco"),
        "recipes": ["sft", "sft+dpo", "sft+rlhf"],
        "train": {"lora": {"r": 4, "alpha": 8}, "data": {"max_length": 64, "tokens_per_step": 256, "micro_batch_tokens": 256},
                  "run": {"max_steps": 2, "device": "cpu", "progress": False}, "optim": {"lr": 1e-2, "warmup_steps": 0}},
        "dpo": {"dpo": {"beta": 0.5}, "lora": {"r": 2, "alpha": 4}, "run": {"max_steps": 2}},
        "rlhf": {"rlhf": {"max_new_tokens": 4, "prompts_per_step": 2, "samples_per_prompt": 2},
                 "lora": {"r": 2, "alpha": 4}, "run": {"max_steps": 2}},
        "eval": {"prompt_style": "plain", "bootstrap": 20},
    })
    summary = run_loco(cfg)
    assert summary["recipes"] == ["sft", "sft+dpo", "sft+rlhf"]
    (fold,) = summary["folds"]
    (task,) = fold["tasks"]
    assert set(task["recipes"]) == {"sft", "sft+dpo", "sft+rlhf"} and task["recipes"]["sft+rlhf"] is not None
    assert fold["recipe_adapter_hash"]["sft+rlhf"] not in (fold["adapter_hash"], fold["recipe_adapter_hash"]["sft+dpo"])
    fold_dir = Path(cfg.out) / "folds" / "cluster_opinion"
    run = fold_dir / "train_sft_rlhf"
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 4 + 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["objective"] == "rlhf" and saved["rlhf"]["reward"] == "rouge_l"
    assert saved["data"]["corpus"].endswith(str(Path("cluster_opinion") / "data" / "train"))  # training fold only
    log = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # reference = the SFT model
