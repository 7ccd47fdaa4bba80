"""Every command that writes a folder goes through the output-folder guard (issue: `--out` deleted data).

Each command is run through the real CLI against a folder holding files it did not write: the exit
is 2, the one error line names the folder and ``--overwrite``, and the folder is byte-identical
afterwards. The guard runs before any model is loaded, so the model names here are never opened.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from taskmill.builders.build import build_collection
from taskmill.cli import app
from taskmill.clusters import ClusterConfig, RepresentConfig, run_clustering, write_folds
from taskmill.clusters.synthetic import make_tasks
from taskmill.fileio import MARKER

ASSETS = Path(__file__).resolve().parents[1] / "builders" / "assets"


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real upstream outputs: a synthetic corpus, its TF-IDF clusters and folds, and small input files."""
    root = tmp_path_factory.mktemp("guarded")
    corpus = root / "corpus"
    corpus.mkdir()
    rows, _ = make_tasks(tasks_per_family=2, rows_per_task=6, seed=0)
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows), encoding="utf-8")
    clusters, folds = root / "clusters", root / "folds"
    run_clustering(corpus, clusters, RepresentConfig(embedder="tfidf"), ClusterConfig(k=3), draw=False)
    write_folds(clusters, corpus, folds)
    fold = yaml.safe_load((folds / "folds.yaml").read_text())["folds"][0]["name"]
    adapter = root / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (root / "seeds.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    (root / "loco.yaml").write_text(yaml.safe_dump({"folds": str(folds), "model": "some/model", "out": "VICTIM",
                                                    "train": {}, "eval": {}}))
    (root / "pipeline.yaml").write_text(yaml.safe_dump({"out": "VICTIM", "model": "some/model", "train": {}, "eval": {}}))
    (root / "train.yaml").write_text(yaml.safe_dump({
        "model": {"arch": {"model_type": "llama"}, "tokenizer": "some/tokenizer"},
        "data": {"corpus": str(corpus)}, "run": {"output_dir": "VICTIM"}}))
    return {"root": root, "corpus": corpus, "clusters": clusters, "folds": folds, "fold": Path(fold), "adapter": adapter}


def _commands(s: dict[str, Path], victim: Path) -> dict[str, list[str]]:
    v = str(victim)
    return {
        "build": ["build", str(ASSETS / "collection.yaml"), "--out", v],
        "cluster run": ["cluster", "run", str(s["corpus"]), "--out", v, "--embedder", "tfidf", "--no-plots"],
        "folds make": ["folds", "make", str(s["clusters"]), "--corpus", str(s["corpus"]), "--out", v],
        "folds corpus": ["folds", "corpus", str(s["folds"]), str(s["fold"]), "--out", v],
        "preferences": ["preferences", str(s["corpus"]), "--out", v],
        "self-instruct": ["self-instruct", str(s["root"] / "seeds.jsonl"), "--model", "some/model", "--out", v],
        "eval": ["eval", str(s["corpus"]), "--model", "some/model", "--out", v],
        "report": ["report", str(s["folds"]), "--out", v],
        "head": ["head", str(s["corpus"]), "--out", v],
        "merge": ["merge", str(s["adapter"]), v, "--base", "some/model"],
        "train": ["train", str(s["root"] / "train.yaml"), f"run.output_dir={v}"],
        "loco": ["loco", str(s["root"] / "loco.yaml")],
        "run": ["run", str(s["root"] / "pipeline.yaml"), "--out", v],
    }


COMMANDS = ["build", "cluster run", "folds make", "folds corpus", "preferences", "self-instruct", "eval", "report",
            "head", "merge", "train", "loco", "run"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_writing_command_refuses_a_folder_it_does_not_own(stage: dict[str, Path], tmp_path: Path, command: str) -> None:
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "notes.txt").write_text("my notes\n")
    (victim / "data.jsonl").write_text('{"x": 1}\n')
    if command == "loco":
        text = (stage["root"] / "loco.yaml").read_text().replace("VICTIM", str(victim))
        (tmp_path / "loco.yaml").write_text(text)
        args = ["loco", str(tmp_path / "loco.yaml")]
    else:
        args = _commands(stage, victim)[command]
    before = _tree(victim)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert str(victim) in lines[0] and "--overwrite" in lines[0] and "not taskmill" in lines[0], lines[0]
    assert _tree(victim) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mine"] + (["loco.yaml"] if command == "loco" else []))


def test_build_into_the_folder_holding_its_own_inputs_changes_nothing(tmp_path: Path) -> None:
    # The reported case: --out mydata, where mydata holds the collection's JSONL, its templates
    # and an unrelated notes file. It used to be replaced silently with exit 0.
    mydata = tmp_path / "mydata"
    shutil.copytree(ASSETS, mydata)
    (mydata / "notes.txt").write_text("unrelated\n")
    before = _tree(mydata)
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, ["build", str(mydata / "collection.yaml"), "--out", str(mydata), *extra])
        assert result.exit_code == 2, result.output
        assert "contains the input" in result.stderr and str(mydata) in result.stderr
        assert _tree(mydata) == before


def test_build_out_dot_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    shutil.copytree(ASSETS, project)
    monkeypatch.chdir(project)
    before = _tree(project)
    result = CliRunner().invoke(app, ["build", "collection.yaml", "--out", "."])
    assert result.exit_code == 2, result.output
    assert "current directory" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _tree(project) == before


def test_rebuild_replaces_own_output_and_overwrite_forces_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    build_collection(ASSETS / "collection.yaml", out, progress=False)
    first = _tree(out)
    build_collection(ASSETS / "collection.yaml", out, progress=False)
    assert _tree(out) == first and MARKER in first
    (out / "notes.txt").write_text("x")
    result = CliRunner().invoke(app, ["build", str(ASSETS / "collection.yaml"), "--out", str(out)])
    assert result.exit_code == 2 and "notes.txt" in result.stderr
    result = CliRunner().invoke(app, ["build", str(ASSETS / "collection.yaml"), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert _tree(out) == first


def test_output_folder_is_checked_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import taskmill.builders.build as build

    def no_work(*args, **kwargs):
        raise AssertionError("the build loaded data before checking its output folder")

    monkeypatch.setattr(build, "plan_task", no_work)
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["build", str(ASSETS / "collection.yaml"), "--out", str(tmp_path / "file" / "sub")])
    assert result.exit_code == 2 and "cannot write the output folder" in result.stderr, result.output
