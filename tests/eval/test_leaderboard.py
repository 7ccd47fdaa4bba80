"""``taskmill report``: merging runs, deltas with paired intervals, the four outputs, determinism, errors.

Result folders come from the real eval runner (``evaluate``) with a stand-in model, see
``leaderboard_runs.py``; the slow test at the end uses a real tiny Llama and a real LoRA adapter.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taskmill.cli import app
from taskmill.errors import DataError
from taskmill.eval.leaderboard.report import OUTPUTS, write_report
from taskmill.fileio import MARKER

_spec = importlib.util.spec_from_file_location("leaderboard_runs", Path(__file__).with_name("leaderboard_runs.py"))
lr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lr)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> Path:
    """Base + one tuned run per held-out cluster, for models alpha and beta (8 runs)."""
    return lr.loco_runs(tmp_path_factory.mktemp("loco"), models=("alpha", "beta"))


def _results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def test_runs_merge_into_rows_with_held_out_cells_and_deltas(two_models, tmp_path):
    board = write_report([str(two_models)], tmp_path / "board")
    assert [(r["label"], r["kind"], len(r["runs"])) for r in board["rows"]] == [
        ("alpha", "base", 1), ("alpha + adapter", "tuned", 3), ("beta", "base", 1), ("beta + adapter", "tuned", 3)]
    assert [c["name"] for c in board["clusters"]] == ["nli", "qa", "sentiment"]
    assert board["clusters"][2]["tasks"] == ["imdb", "yelp"] and len(board["runs"]) == 8
    cells = board["scores"]["zero_shot"]
    base = _results(two_models / "alpha" / "base")
    for cluster in ("nli", "qa", "sentiment"):
        # Each tuned cell comes from the run whose fold held that cluster out.
        fold_run = _results(two_models / "alpha" / "tuned" / cluster)
        [entry] = fold_run["per_cluster"]
        tuned_cell = cells["alpha + adapter"]["clusters"][cluster]
        assert (tuned_cell["score"], tuned_cell["ci95"]) == (entry["score"], entry["ci95"])
        base_entry = next(c for c in base["per_cluster"] if c["cluster"] == cluster)
        delta = cells["alpha + adapter"]["delta"]["clusters"][cluster]
        assert delta["delta"] == pytest.approx(entry["score"] - base_entry["score"], abs=1e-4)
        assert delta["paired"] and delta["ci95"][0] <= delta["delta"] <= delta["ci95"][1]
    mean = cells["alpha"]["mean"]
    assert mean["n"] == 3 and mean["score"] == pytest.approx(np.mean([c["score"] for c in base["per_cluster"]]), abs=1e-4)
    assert cells["alpha"]["delta"] is None and cells["alpha + adapter"]["delta"]["base"] == "alpha"
    # The stand-in's tuned runs know a superset of the base's rows: every delta is >= 0.
    assert all(d["delta"] >= 0 for d in cells["beta + adapter"]["delta"]["tasks"].values())
    # Templates feed the spread plot: one entry per template of the task.
    assert [t["template_id"] for t in cells["alpha"]["templates"]["yelp"]] == ["y1", "y2", "y3"]


def test_paired_interval_matches_a_direct_bootstrap_of_differences(tmp_path):
    """One task with one template: the delta is a mean of per-example differences, so the paired
    interval must match a plain bootstrap of those differences (computed here independently)."""
    corpus = lr.write_corpus(tmp_path / "c", n=60)
    skill = {"rte": 40}
    base = lr.eval_run(corpus, tmp_path / "base", lr.SkillBackend(corpus, "m", skill), clusters=False)
    tuned = lr.eval_run(corpus, tmp_path / "tuned", lr.SkillBackend(corpus, "m", {"rte": 55}, adapter_hash="a"),
                        adapter=tmp_path / "ad", clusters=False)
    board = write_report([str(base), str(tuned)], tmp_path / "board", bootstrap=4000)
    delta = board["scores"]["zero_shot"]["m + adapter"]["delta"]["tasks"]["rte"]

    def scores(folder: Path) -> dict:
        rows = [json.loads(l) for l in (folder / "examples.jsonl").read_text().splitlines()]
        return {r["id"]: r["scores"]["acc"] for r in rows if r["task"] == "rte"}

    a, b = scores(tuned), scores(base)
    by_tpl = {tpl: np.array([a[i] - b[i] for i in sorted(a) if f":{tpl}:" in i]) for tpl in ("r1", "r2")}
    rng = np.random.default_rng(12345)
    # Median of two template means = their average; resample each template's differences.
    draws = np.mean([d[rng.integers(0, len(d), (20000, len(d)))].mean(axis=1) for d in by_tpl.values()], axis=0)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert delta["delta"] == pytest.approx(np.mean([d.mean() for d in by_tpl.values()]), abs=1e-3)
    assert delta["ci95"][0] == pytest.approx(lo, abs=2.0) and delta["ci95"][1] == pytest.approx(hi, abs=2.0)
    assert 0 < delta["ci95"][0]  # the stand-in's tuned run only gains rows: the interval excludes 0


def test_same_inputs_give_byte_identical_outputs(two_models, tmp_path):
    a = tmp_path / "a" / "board"
    b = tmp_path / "b" / "board"
    write_report([str(two_models)], a)
    write_report([str(two_models)], b)
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted([*OUTPUTS, MARKER, "plots/clusters-zero_shot.svg", "plots/spread-zero_shot.svg"])
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    write_report([str(two_models)], a)  # again into the same folder: unchanged, no temp folder left
    assert sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()) == names
    assert (a / "leaderboard.html").read_bytes() == (b / "leaderboard.html").read_bytes()


def test_provenance_records_versions_hashes_seeds_and_dates_from_the_files(two_models, tmp_path):
    stamp = 1_700_000_000  # 2023-11-14T22:13:20Z
    for f in two_models.rglob("results.json"):
        os.utime(f, (stamp, stamp))
    board = write_report([str(two_models)], tmp_path / "board")
    run = next(r for r in board["runs"] if r["path"].endswith("alpha/tuned/qa/results.json"))
    res = _results(two_models / "alpha" / "tuned" / "qa")
    assert run["config_hash"] == res["config_hash"] and run["seed"] == 0 and run["bootstrap"] == 200
    assert run["versions"]["taskmill"] and run["adapter_hash"] == "alpha-qa-adapter" and run["fold"] == "fold-qa"
    assert {r["date"] for r in board["runs"]} == {"2023-11-14T22:13:20Z"} and run["date_source"] == "mtime"
    assert board["produced_by"]["taskmill"] and board["options"] == {"bootstrap": 1000, "seed": 0, "mean_over": "clusters"}
    assert run["path"] == os.path.relpath(two_models / "alpha" / "tuned" / "qa" / "results.json", tmp_path / "board")
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "2023-11-14T22:13:20Z" in md and res["config_hash"] in md


def test_markdown_csv_and_json_agree(two_models, tmp_path):
    board = write_report([str(two_models)], tmp_path / "board")
    out = tmp_path / "board"
    assert json.loads((out / "leaderboard.json").read_text()) == board and board["schema"] == "taskmill.leaderboard/1"
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    levels = {r["level"] for r in rows}
    assert levels == {"mean", "cluster", "task", "template"}
    # 4 rows x (1 mean + 3 clusters + 4 tasks + 9 templates)
    assert len(rows) == 4 * (1 + 3 + 4 + 9)
    cell = next(r for r in rows if r["row"] == "beta + adapter" and r["level"] == "cluster" and r["cluster"] == "qa")
    expected = board["scores"]["zero_shot"]["beta + adapter"]
    assert float(cell["score"]) == expected["clusters"]["qa"]["score"]
    assert float(cell["delta"]) == expected["delta"]["clusters"]["qa"]["delta"] and cell["base_row"] == "beta"
    md = (out / "leaderboard.md").read_text()
    table = md.split("## zero_shot")[1].split("###")[0]
    ranked = re.findall(r"^\| (\d) \| ([^|]+) \|", table, flags=re.M)
    means = [board["scores"]["zero_shot"][label.strip()]["mean"]["score"] for _, label in ranked]
    assert [int(n) for n, _ in ranked] == [1, 2, 3, 4] and means == sorted(means, reverse=True)
    assert "![clusters (zero_shot)](plots/clusters-zero_shot.svg)" in md and "**sentiment**" in md


def test_html_is_self_contained(two_models, tmp_path):
    write_report([str(two_models)], tmp_path / "board")
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page) and "url(" not in page
    images = re.findall(r'<img [^>]*src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 2
    for data in images:
        root = ET.fromstring(base64.b64decode(data))
        assert root.tag.endswith("svg") and float(root.get("width").rstrip("pt")) > 0
    assert page.count("<tr data-order=") >= 4 and 'class="board sortable"' in page


def test_explicit_labels_keep_recipes_apart(tmp_path):
    corpus = lr.write_corpus(tmp_path / "c", n=10)
    base = lr.eval_run(corpus, tmp_path / "runs/base", lr.SkillBackend(corpus, "m", {"rte": 40, "imdb": 50}))
    lora = lr.eval_run(corpus, tmp_path / "runs/lora", lr.SkillBackend(corpus, "m", {"rte": 60}, adapter_hash="l"),
                       fold="nli", adapter=tmp_path / "l")
    full = lr.eval_run(corpus, tmp_path / "runs/full", lr.SkillBackend(corpus, "m", {"rte": 70}, adapter_hash="f"),
                       fold="nli", adapter=tmp_path / "f")
    with pytest.raises(DataError, match=r"cluster 'nli' is scored differently .*LABEL=PATH"):
        write_report([str(tmp_path / "runs")], tmp_path / "board")
    assert not (tmp_path / "board" / "leaderboard.html").exists()  # nothing half-written
    board = write_report([str(base), f"lora={lora}", f"full ft={full}"], tmp_path / "board")
    assert [r["label"] for r in board["rows"]] == ["m", "full ft", "lora"]
    cells = board["scores"]["zero_shot"]
    assert cells["lora"]["delta"]["base"] == "m" and cells["full ft"]["delta"]["base"] == "m"
    assert cells["full ft"]["clusters"]["nli"]["score"] > cells["lora"]["clusters"]["nli"]["score"]
    assert set(cells["lora"]["clusters"]) == {"nli"} and cells["lora"]["mean"]["n"] == 1


def test_board_without_clusters_uses_task_columns(tmp_path):
    corpus = lr.write_corpus(tmp_path / "c", n=10, formats=("zero_shot", "few_shot"))
    run = lr.eval_run(corpus, tmp_path / "r", lr.SkillBackend(corpus, "m", {"rte": 50, "imdb": 50}), clusters=False,
                      formats=("zero_shot", "few_shot"), bootstrap=0)
    board = write_report([str(run)], tmp_path / "board", bootstrap=0)
    assert board["scores"]["zero_shot"]["m"]["tasks"]["rte"]["ci95"] is None  # eval without intervals renders too
    line = next(l for l in (tmp_path / "board" / "leaderboard.md").read_text().splitlines() if l.startswith("| 1 | m |"))
    assert "[" not in line and "rte" not in line and line.count("|") == 4 + 4 + 1  # #, Model, Kind, Mean + 4 tasks
    assert board["clusters"] == [] and board["unclustered_tasks"] == ["imdb", "rte", "squad", "yelp"]
    assert board["formats"] == ["zero_shot", "few_shot"] and board["options"]["mean_over"] == "tasks"
    assert board["scores"]["few_shot"]["m"]["mean"]["n"] == 4
    assert (tmp_path / "board" / "plots" / "tasks-few_shot.svg").is_file()


def test_missing_examples_give_deltas_without_intervals(tmp_path):
    corpus = lr.write_corpus(tmp_path / "c", n=10)
    base = lr.eval_run(corpus, tmp_path / "b", lr.SkillBackend(corpus, "m", {"rte": 40}))
    tuned = lr.eval_run(corpus, tmp_path / "t", lr.SkillBackend(corpus, "m", {"rte": 80}, adapter_hash="x"),
                        fold="nli", adapter=tmp_path / "x")
    (base / "examples.jsonl").unlink()
    board = write_report([str(base), str(tuned)], tmp_path / "board")
    delta = board["scores"]["zero_shot"]["m + adapter"]["delta"]["clusters"]["nli"]
    assert delta["ci95"] is None and delta["paired"] is False and delta["delta"] > 0


def test_cli_report_and_its_errors(two_models, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(two_models / "alpha"), str(two_models / "beta" / "base" / "results.json"),
                              "--out", str(tmp_path / "board"), "--bootstrap", "100"])
    assert res.exit_code == 0, res.output
    assert "1. alpha + adapter" in res.output and "leaderboard.html" in res.output
    assert "Δ +" in res.output.split("alpha + adapter")[1].splitlines()[0]
    bad = runner.invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "nope: no such file or folder" in bad.output
    (tmp_path / "empty").mkdir()
    bad = runner.invoke(app, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no results.json below this folder" in bad.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "results.json").write_text('{"schema": "other/1"}')
    bad = runner.invoke(app, ["report", str(tmp_path / "junk"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "results.json: missing config" in bad.output and len(bad.output.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_inconsistent_cluster_manifests_are_refused(tmp_path):
    corpus = lr.write_corpus(tmp_path / "c", n=5)
    a = lr.eval_run(corpus, tmp_path / "a", lr.SkillBackend(corpus, "m", {}))
    (corpus / "clusters.json").write_text(json.dumps({**lr.CLUSTERS, "rte": "sentiment"}))
    b = lr.eval_run(corpus, tmp_path / "b", lr.SkillBackend(corpus, "n", {}))
    with pytest.raises(DataError, match=r"task 'rte' is in cluster .* same cluster manifest"):
        write_report([str(a), str(b)], tmp_path / "board")


@pytest.mark.slow
def test_real_model_and_adapter_through_both_commands(tmp_path, tiny_model_dir):
    """`taskmill eval` with a real tiny Llama, with and without a real (random) LoRA adapter, then
    `taskmill report` over the two folders."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    corpus = lr.write_corpus(tmp_path / "corpus", n=6)
    runner = CliRunner()
    common = ["--model", str(tiny_model_dir), "--prompt-style", "plain", "--max-new-tokens", "3", "--bootstrap", "100",
              "--clusters", str(corpus / "clusters.json"), "--task", "rte", "--task", "squad"]
    for name, extra in (("base", []), ("tuned", ["--adapter", str(tmp_path / "adapter")])):
        res = runner.invoke(app, ["eval", str(corpus), "--out", str(tmp_path / "runs" / name), *common, *extra])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "board")])
    assert res.exit_code == 0, res.output
    board = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    label = Path(tiny_model_dir).name
    assert [r["label"] for r in board["rows"]] == [label, f"{label} + adapter"]
    cells = board["scores"]["zero_shot"][f"{label} + adapter"]
    assert set(cells["clusters"]) == {"nli", "qa"} and cells["delta"]["clusters"]["nli"]["paired"]
    assert 0 <= cells["clusters"]["nli"]["score"] <= 100
