"""``taskmill run examples/starter-sft-dpo-rlhf.yaml``: SFT, SFT+DPO and SFT+RLHF in one leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taskmill.orchestrate.pipeline import load_pipeline, run_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "starter-sft-dpo-rlhf.yaml"


def _shrunk(tmp_path: Path, model_dir: Path) -> Path:
    """The shipped comparison YAML with the tiny model, 2 clusters and a step or two per stage."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(out=str(tmp_path / "run"), model=str(model_dir))
    raw["cluster"]["cluster"]["k"] = 2
    raw["train"]["run"]["max_steps"] = 2
    raw["train"]["data"] = {"max_length": 128, "tokens_per_step": 512, "micro_batch_tokens": 512}
    raw["eval"].update(limit=2, max_new_tokens=4, bootstrap=20)
    raw["dpo"]["run"]["max_steps"] = 1
    raw["rlhf"]["run"]["max_steps"] = 1
    raw["rlhf"]["rlhf"].update(samples_per_prompt=2, prompts_per_step=2, max_new_tokens=4)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_comparison_yaml_validates():
    config = load_pipeline(EXAMPLE)
    assert config.recipes == ("sft", "sft+dpo", "sft+rlhf") and config.rlhf["rlhf"]["reward"] == "rouge_l"


@pytest.mark.slow
def test_comparison_yaml_runs_to_a_leaderboard_with_sft_dpo_and_rlhf_rows(tmp_path, tiny_model_dir):
    html = run_pipeline(load_pipeline(_shrunk(tmp_path, tiny_model_dir)), say=lambda _: None)
    out = tmp_path / "run"
    assert html == out / "board" / "leaderboard.html" and html.is_file()
    board = json.loads((out / "board" / "leaderboard.json").read_text())
    name = tiny_model_dir.name
    rows = {r["label"]: r for r in board["rows"]}
    assert set(rows) == {name, f"{name} + sft", f"{name} + sft+dpo", f"{name} + sft+rlhf"}, sorted(rows)
    assert rows[name]["kind"] == "base"
    for recipe in ("sft", "sft+dpo", "sft+rlhf"):
        row = rows[f"{name} + {recipe}"]
        assert row["kind"] == "tuned" and row["base"] == name
        cells = board["scores"]["zero_shot"][row["label"]]
        assert cells["mean"] is not None and cells["delta"] is not None  # scored on every held-out cluster
    loco = json.loads((out / "loco" / "loco.json").read_text())
    assert len(loco["folds"]) == 2 and loco["recipes"] == ["sft", "sft+dpo", "sft+rlhf"]
    for fold in loco["folds"]:  # every recipe's own adapter was evaluated on the held-out cluster
        assert len({fold["adapter_hash"], *fold["recipe_adapter_hash"].values()}) == 3


def test_report_inputs_label_each_recipe_and_leave_base_runs_unlabelled(tmp_path):
    from taskmill.orchestrate.recipes import report_inputs

    for fold in ("f1", "f2"):
        for sub in ("base", "tuned", "tuned_sft_dpo", "tuned_sft_rlhf", "data"):
            (tmp_path / fold / sub).mkdir(parents=True)
    assert report_inputs(tmp_path, ["sft"], "/m/tiny") == [str(tmp_path)]  # one tuned row, as before
    got = report_inputs(tmp_path, ["sft", "sft+dpo", "sft+rlhf"], "/m/tiny")
    assert got == [x for f in ("f1", "f2") for x in (
        str(tmp_path / f / "base"), f"tiny + sft={tmp_path / f / 'tuned'}",
        f"tiny + sft+dpo={tmp_path / f / 'tuned_sft_dpo'}", f"tiny + sft+rlhf={tmp_path / f / 'tuned_sft_rlhf'}")]
