"""``taskmill run``: the whole job on the embedded starter collection with a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taskmill.errors import ConfigError
from taskmill.orchestrate.pipeline import PipelineConfig, load_pipeline, run_pipeline, starter_pipeline


def _pipeline(tmp_path: Path, model_dir: Path) -> Path:
    """The embedded starter pipeline with the tiny model and fewer steps (same stages)."""
    raw = yaml.safe_load(starter_pipeline().read_text())
    raw.update(out=str(tmp_path / "run"), model=str(model_dir))
    raw["cluster"]["cluster"]["k"] = 3
    raw["train"]["run"]["max_steps"] = 2
    raw["train"]["data"] = {"max_length": 128, "tokens_per_step": 512, "micro_batch_tokens": 512}
    raw["eval"].update(limit=2, max_new_tokens=4, bootstrap=20)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_run_builds_clusters_trains_evaluates_and_reports_then_skips(tmp_path, tiny_model_dir):
    said: list[str] = []
    config = load_pipeline(_pipeline(tmp_path, tiny_model_dir))
    html = run_pipeline(config, say=said.append)
    out = tmp_path / "run"
    assert html == out / "board" / "leaderboard.html" and html.is_file()
    loco = json.loads((out / "loco" / "loco.json").read_text())
    assert len(loco["folds"]) == 3  # one fold per cluster
    held_out = [t["task"] for f in loco["folds"] for t in f["tasks"]]
    assert sorted(held_out) == sorted(set(held_out)) and len(held_out) == 11  # every task held out once
    board = json.loads((out / "board" / "leaderboard.json").read_text())
    assert {r["kind"] for r in board["rows"]} == {"base", "tuned"}
    stages = json.loads((out / "pipeline.json").read_text())
    assert list(stages) == ["build", "cluster", "folds", "loco", "report"]
    said.clear()
    records = {p.name: p.stat().st_mtime_ns for p in (out / "loco" / "units").iterdir()}
    run_pipeline(config, say=said.append)  # nothing changed: the file stages are skipped
    assert sum("up to date" in line for line in said) == 3
    again = json.loads((out / "loco" / "loco.json").read_text())
    assert again == loco  # every LOCO unit was finished: none ran again
    assert {p.name: p.stat().st_mtime_ns for p in (out / "loco" / "units").iterdir()} == records


def test_pipeline_config_lists_every_problem(tmp_path):
    with pytest.raises(ConfigError) as err:
        PipelineConfig.from_mapping({"train": [], "bogus": 1, "formats": "x", "executor": {"kind": "slurm"}},
                                    tmp_path, file="p.yaml")
    text = err.value.line()
    for needle in ("p.yaml", "bogus: unknown key", "out: required", "model: required", "train: expected a mapping",
                   "formats: expected a list", "executor.kind: 'slurm'"):
        assert needle in text


def test_embedded_pipeline_is_valid_and_resolves_paths():
    config = load_pipeline(None, out="somewhere")
    assert config.model == "smollm2" and config.collection is None
    assert Path(config.out).is_absolute() and Path(config.out).name == "somewhere"


@pytest.mark.parametrize("path", [starter_pipeline(), Path(__file__).resolve().parents[2] / "examples" / "gpu-vllm.yaml"],
                         ids=["starter-cpu", "gpu-vllm"])
def test_every_shipped_pipeline_validates_all_its_sections(path):
    from taskmill.eval.runner import EvalConfig
    from taskmill.trainer import config_from_dict

    config = load_pipeline(path)
    train = {k: dict(v) if isinstance(v, dict) else v for k, v in config.train.items()}
    train.setdefault("model", {})["path"] = "model"
    train.setdefault("data", {})["corpus"] = "corpus"
    assert config_from_dict(train).lora.enabled  # raises ConfigError listing problems if invalid
    EvalConfig(corpus="c", out="o", model="m", **config.eval)


def test_pipeline_build_max_size_reaches_the_build_and_bad_keys_are_listed(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from taskmill.cli import app

    assets = Path(__file__).resolve().parents[1] / "builders" / "assets"
    shutil.copytree(assets, tmp_path / "project")
    spec = {"out": "run", "collection": "project/collection.yaml", "model": "some/model", "train": {}, "eval": {},
            "build": {"max_size": "10B"}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2, result.output
    assert "max-size" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run" / "corpus").exists()
    spec["build"] = {"max_size": "1GB", "num_proc": 2}
    spec["cluster"] = {"embeder": "tfidf"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert "build.num_proc: unknown key" in result.stderr and "cluster.embeder: unknown key" in result.stderr
