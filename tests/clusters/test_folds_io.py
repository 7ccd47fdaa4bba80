"""Fold files, fold corpora and the CLI (clusters -> folds -> train/test corpora)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from taskmill.cli import app
from taskmill.clusters.fold_corpus import load_folds, write_fold_corpora
from taskmill.clusters.folds import FoldConfig, write_folds
from taskmill.clusters.manifest import dump_yaml
from taskmill.clusters.synthetic import make_row
from taskmill.errors import ConfigError, DataError


@pytest.fixture
def leaky(write_corpus, tmp_path):
    """Corpus + hand-written manifest: nli={rte}, other={rte_rev (same source), sst2 (one copied rte row)}."""
    prompts = [f"Premise number {i}: the {w} sat beside the old stone wall all afternoon. Is it true?" for i, w in enumerate(["cat", "dog", "owl", "fox", "elk"])]
    rows = [make_row("rte", "glue/rte", i, p, "yes") for i, p in enumerate(prompts)]
    rows += [make_row("rte_rev", "glue/rte", i, p[::-1], "no", template_id="rev") for i, p in enumerate(prompts)]
    rows += [make_row("sst2", "glue/sst2", i, f"review {i}: a {w} film", "positive", template_id="s") for i, w in enumerate(["fine", "dull", "long"])]
    rows.append(make_row("sst2", "glue/sst2", 3, prompts[2].upper() + "!!", "positive", template_id="s"))
    corpus = write_corpus(rows)
    manifest = tmp_path / "clusters.yaml"
    manifest.write_text(dump_yaml({"clusters": [
        {"name": "nli", "tasks": [{"task": "rte", "dataset": "glue/rte"}]},
        {"name": "other", "tasks": [{"task": "rte_rev", "dataset": "glue/rte"}, {"task": "sst2", "dataset": "glue/sst2"}]},
    ]}))
    return corpus, manifest, rows


def test_folds_file_and_fold_corpora(leaky, tmp_path):
    corpus, manifest, rows = leaky
    write_folds(manifest, corpus, tmp_path / "folds", FoldConfig())
    header, entries = load_folds(tmp_path / "folds")
    assert [e.fold.name for e in entries] == ["cluster:nli", "cluster:other", "task:rte", "task:rte_rev", "task:sst2"]
    nli = entries[0]
    assert nli.fold.train_tasks == ("sst2",) and set(nli.fold.excluded) == {"rte_rev"}
    assert nli.removed_rows == {rows[-1].id} and nli.fold.leakage["exact_duplicates_removed"] == 1
    assert header["corpus"]["sha256"] and "| cluster:nli | 1 | 1 | 0 | 1 | 1 | 0 | 3 | 5 |" in (tmp_path / "folds" / "summary.md").read_text()
    counts = write_fold_corpora(tmp_path / "folds", "nli", tmp_path / "fold-nli")
    assert counts == {"train_rows": 3, "test_rows": 5, "removed_rows": 1}
    train = [json.loads(x) for x in (tmp_path / "fold-nli" / "train" / "corpus.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (tmp_path / "fold-nli" / "test" / "corpus.jsonl").read_text().splitlines()]
    assert {r["task"] for r in train} == {"sst2"} and rows[-1].id not in {r["id"] for r in train}
    assert [r["id"] for r in test] == [r.id for r in rows[:5]] and set(test[0]) == set(rows[0].to_json())
    meta = json.loads((tmp_path / "fold-nli" / "train" / "manifest.json").read_text())
    assert meta["fold"] == "cluster:nli" and meta["removed_rows"] == 1


def test_changed_corpus_and_unknown_fold_are_refused(leaky, tmp_path):
    corpus, manifest, _ = leaky
    write_folds(manifest, corpus, tmp_path / "folds", FoldConfig(kinds=("cluster",)))
    with pytest.raises(ConfigError, match="no fold named 'nope'"):
        write_fold_corpora(tmp_path / "folds", "nope", tmp_path / "x")
    with (corpus / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps(make_row("sst2", "glue/sst2", 9, "new", "x").to_json()) + "\n")
    with pytest.raises(DataError, match="corpus changed"):
        write_fold_corpora(tmp_path / "folds", "cluster:nli", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_failed_write_leaves_previous_output_untouched(leaky, tmp_path):
    corpus, manifest, _ = leaky
    out = tmp_path / "folds"
    write_folds(manifest, corpus, out, FoldConfig(kinds=("cluster",)))
    before = (out / "folds.yaml").read_bytes()
    with pytest.raises(ConfigError):
        write_folds(manifest, corpus, out, FoldConfig(kinds=("cluster",), groups=(("nli", "ghost"),)))
    assert (out / "folds.yaml").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left behind


def test_manifest_tasks_missing_from_corpus(leaky, tmp_path, write_corpus):
    _, manifest, rows = leaky
    small = write_corpus(rows[:5], "small")
    with pytest.raises(ConfigError, match="not in the corpus: rte_rev, sst2"):
        write_folds(manifest, small, tmp_path / "f")


def test_cli_cluster_compare_folds_corpus(family_corpus, tmp_path):
    corpus, family_of = family_corpus
    runner = CliRunner()
    out = tmp_path / "clusters"
    result = runner.invoke(app, ["cluster", "run", str(corpus), "--out", str(out), "--embedder", "tfidf", "--k", "8", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "24 tasks, 8 clusters" in result.output and not (out / "heatmap.png").exists()
    ref = tmp_path / "ref.yaml"
    ref.write_text(yaml.safe_dump(family_of))
    result = runner.invoke(app, ["cluster", "compare", str(out), str(ref)])
    assert result.exit_code == 0 and "ARI 1.000, NMI 1.000 over 24 tasks" in result.output
    result = runner.invoke(app, ["folds", "make", str(out), "--corpus", str(corpus), "--out", str(tmp_path / "folds"),
                                 "--kind", "cluster", "--group", "task:nli_0000,task:qa_0000"])
    assert result.exit_code == 0, result.output
    folds = yaml.safe_load((tmp_path / "folds" / "folds.yaml").read_text())["folds"]
    assert len(folds) == 7 and sorted(folds[0]["test_tasks"])[:3] == ["nli_0000", "nli_0001", "nli_0002"]
    result = runner.invoke(app, ["folds", "corpus", str(tmp_path / "folds"), folds[1]["name"], "--out", str(tmp_path / "f1")])
    assert result.exit_code == 0 and (tmp_path / "f1" / "test" / "corpus.jsonl").is_file()


def test_cli_errors_are_one_line_exit_2(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["cluster", "run", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--embedder", "tfidf"])
    assert result.exit_code == 2 and "no corpus.jsonl found" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corpus.jsonl").write_text('{"id": "x"}\n')
    result = runner.invoke(app, ["cluster", "run", str(bad), "--out", str(tmp_path / "o"), "--embedder", "tfidf"])
    assert result.exit_code == 2 and "row line 1" in result.output and "corpus.jsonl" in result.output
    result = runner.invoke(app, ["cluster", "run", str(bad), "--out", str(tmp_path / "o"), "--embedder", "tfidf", "--k", "0", "--linkage", "x"])
    assert result.exit_code == 2 and "linkage: expected one of" in result.output and "k: expected >= 1, got 0" in result.output
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["folds", "make", str(tmp_path / "none.yaml"), "--corpus", str(bad), "--out", str(tmp_path / "f"), "--alias", "nope"])
    assert result.exit_code == 2 and "DATASET=SOURCE" in result.output


def test_cli_defaults_match_the_library_defaults():
    import inspect

    from taskmill.cli import cluster_run_cmd, folds_make_cmd
    from taskmill.clusters.cluster import ClusterConfig
    from taskmill.clusters.leakage import DedupConfig
    from taskmill.clusters.represent import RepresentConfig

    folds = inspect.signature(folds_make_cmd).parameters
    assert folds["threshold"].default == DedupConfig().threshold and folds["ngram"].default == DedupConfig().ngram
    assert folds["min_words"].default == DedupConfig().min_words
    run = inspect.signature(cluster_run_cmd).parameters
    assert run["linkage"].default == ClusterConfig().linkage and run["algorithm"].default == ClusterConfig().algorithm
    assert run["embedder"].default == RepresentConfig().embedder and run["rows_per_task"].default == RepresentConfig().rows_per_task


def test_folds_file_paths_are_relative_and_folds_corpus_works_from_any_directory(leaky, tmp_path, monkeypatch):
    _, manifest, rows = leaky
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # the user gives relative paths, as on a command line
    result = runner.invoke(app, ["folds", "make", "clusters.yaml", "--corpus", "corpus", "--out", "runs/folds", "--kind", "cluster"])
    assert result.exit_code == 0, result.output
    raw = yaml.safe_load((tmp_path / "runs" / "folds" / "folds.yaml").read_text())
    assert raw["taskmill_folds"] == 2
    assert raw["corpus"]["path"] == "../../corpus" and raw["cluster_manifest"]["path"] == "../../clusters.yaml"
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["folds", "corpus", "../../runs/folds", "nli", "--out", "fold-nli"])
    assert result.exit_code == 0, result.output
    train = [json.loads(x)["id"] for x in (elsewhere / "fold-nli" / "train" / "corpus.jsonl").read_text().splitlines()]
    assert train == [r.id for r in rows[-4:-1]]  # sst2's rows but the copied rte row
    meta = json.loads((elsewhere / "fold-nli" / "train" / "manifest.json").read_text())
    assert meta["source_corpus"]["path"] == "../../../../corpus"  # relative to that manifest (elsewhere/deeper/fold-nli/train)


def test_folds_move_with_their_inputs(leaky, tmp_path):
    corpus, manifest, _ = leaky
    write_folds(manifest, corpus, tmp_path / "folds", FoldConfig(kinds=("cluster",)))
    import shutil

    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("folds", "corpus", "clusters.yaml"):
        shutil.move(str(tmp_path / name), str(moved / name))
    header, _ = load_folds(moved / "folds")
    assert header["corpus"]["path"] == str(moved / "folds" / ".." / "corpus")
    assert write_fold_corpora(moved / "folds", "cluster:nli", tmp_path / "out")["train_rows"] == 3


def test_old_folds_files_with_absolute_paths_are_still_read(leaky, tmp_path, monkeypatch):
    corpus, manifest, _ = leaky
    write_folds(manifest, corpus, tmp_path / "folds", FoldConfig(kinds=("cluster",)))
    raw = yaml.safe_load((tmp_path / "folds" / "folds.yaml").read_text())
    raw["taskmill_folds"] = 1  # written before paths were relative: the path as given, here absolute
    raw["corpus"]["path"], raw["cluster_manifest"]["path"] = str(corpus.resolve()), str(manifest.resolve())
    del raw["sources"]
    (tmp_path / "folds" / "folds.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    result = CliRunner().invoke(app, ["folds", "corpus", str(tmp_path / "folds"), "nli", "--out", "x"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other" / "x" / "train" / "corpus.jsonl").is_file()
