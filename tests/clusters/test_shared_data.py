"""Clusters of the real ../shared datasets, built with `taskmill build` (TF-IDF: no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.compare import compare, load_reference
from taskmill.clusters.folds import FoldConfig, make_folds
from taskmill.clusters.corpus import rows_by_task
from taskmill.clusters.represent import RepresentConfig
from taskmill.clusters.run import run_clustering

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"
TOGETHER = [("glue__sst2", "SetFit__sst5", "rotten_tomatoes"), ("gsm8k__main", "aqua_rat__raw"), ("ai2_arc__ARC-Easy", "ai2_arc__ARC-Challenge")]


@pytest.mark.slow
def test_shared_datasets_cluster_sensibly_and_sst_duplicates_are_caught(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    from taskmill.builders.build import build_collection

    tasks = []
    for folder in sorted(p for p in SHARED.resolve().iterdir() if p.is_dir()):
        split = next(s for s in ("train", "validation", "test") if (folder / f"{s}.jsonl").is_file())
        tasks.append({"name": folder.name, "dataset": folder.name.replace("__", "/"),
                      "data_files": {split: str(folder / f"{split}.jsonl")}, "splits": [split],
                      # enough SST rows that the seeded samples share sentences (~8 expected)
                      "max_examples": 300 if folder.name in ("glue__sst2", "SetFit__sst5") else 40})
    collection = tmp_path / "collection.yaml"
    collection.write_text(yaml.safe_dump({"seed": 0, "formats": ["zero_shot"], "tasks": tasks}))
    build_collection(collection, tmp_path / "corpus", progress=False)
    run = run_clustering(tmp_path / "corpus", tmp_path / "clusters", RepresentConfig(embedder="tfidf"), ClusterConfig(), draw=False)
    cluster_of = run.manifest.cluster_of()
    assert len(cluster_of) == 29
    for group in TOGETHER:
        assert len({cluster_of[t] for t in group}) == 1, group
    score = compare(run.manifest, load_reference(REPO / "clusters" / "reference" / "shared_taxonomy.yaml"))
    assert score.n_tasks == 29 and score.ari > 0.2  # chance is ~0
    # SST-2 and SST-5 hold the same movie sentences: holding SST-2 out alone must drop SST-5 copies.
    plans = make_folds(run.manifest, rows_by_task(tmp_path / "corpus"), FoldConfig(kinds=("task",)))
    sst2 = next(p for p in plans if p.fold.name == "task:glue__sst2")
    assert sst2.fold.leakage["near_duplicates_removed"] > 0
    assert all(p.fold.leakage["near_duplicates_removed"] == 0 for p in plans if p.fold.name in ("task:gsm8k__main", "task:trec"))


SWAP = {"he": "she", "she": "he", "him": "her", "her": "him", "his": "her", "himself": "herself", "herself": "himself"}


def _swap_one_pronoun(row: dict, rng) -> dict | None:
    """The row with its first-found gendered pronoun in a random string field swapped, or None."""
    import re

    fields = [k for k, v in row.items() if isinstance(v, str) and re.search(r"\b(" + "|".join(SWAP) + r")\b", v, re.I)]
    if not fields:
        return None
    key = rng.choice(fields)
    m = rng.choice(list(re.finditer(r"\b(" + "|".join(SWAP) + r")\b", row[key], re.I)))
    word = SWAP[m.group(0).lower()]
    return {**row, key: row[key][: m.start()] + (word.capitalize() if m.group(0)[0].isupper() else word) + row[key][m.end():]}


@pytest.mark.slow
def test_shared_data_swapped_pronouns_are_caught_and_other_questions_kept(tmp_path, real):
    """Real rows of ../shared/data: pronoun-swapped siblings of social_i_qa and winogrande are removed
    when the original is held out; two halves of TREC keep each other's questions."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    import json
    import random

    rng = random.Random(0)
    library = REPO / "templates" / "library"
    read = lambda name, split, n: [json.loads(x) for x in (SHARED / name / f"{split}.jsonl").read_text(encoding="utf-8").split("\n") if x.strip()][:n]
    tasks, origin = {}, {}
    for name, split, dataset in (("social_i_qa", "validation", "social_i_qa"), ("winogrande__winogrande_xl", "validation", "winogrande/winogrande_xl")):
        rows = read(name, split, 250)
        swapped = [(i, s) for i, s in ((i, _swap_one_pronoun(r, rng)) for i, r in enumerate(rows)) if s is not None]
        short = name.split("__")[0]
        tasks[short] = (dataset, rows, (library / f"{name}.yaml").read_text())
        tasks[short + "_swap"] = (f"minimal-pairs/{short}", [s for _, s in swapped], (library / f"{name}.yaml").read_text())
        origin[short + "_swap"] = [i for i, _ in swapped]
    trec = read("trec", "train", 800)
    tasks["trec_a"] = ("trec", trec[:400], (library / "trec.yaml").read_text())
    tasks["trec_b"] = ("questions/trec-b", trec[400:], (library / "trec.yaml").read_text())
    collection = real.write_tasks(tmp_path / "project", tasks, formats=("zero_shot", "few_shot"))
    assert real.taskmill("build", collection, "--out", tmp_path / "corpus").exit_code == 0
    result = real.taskmill("cluster", "run", tmp_path / "corpus", "--out", tmp_path / "clusters", "--embedder", "tfidf", "--k", "2", "--no-plots")
    assert result.exit_code == 0, result.output
    result = real.taskmill("folds", "make", tmp_path / "clusters", "--corpus", tmp_path / "corpus", "--out", tmp_path / "folds", "--kind", "task")
    assert result.exit_code == 0, result.output
    corpus = [json.loads(x) for x in (tmp_path / "corpus" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    folds = {f["name"]: f for f in yaml.safe_load((tmp_path / "folds" / "folds.yaml").read_text())["folds"]}
    for short in ("social_i_qa", "winogrande"):
        fold = folds[f"task:{short}"]
        removed = set((tmp_path / "folds" / fold["removed_rows"]).read_text().split())
        held = {(r["row_index"], r["template_id"]) for r in corpus if r["task"] == short}
        # copy rows whose source row the held-out task shows under the same template (same fields printed)
        pairs = [r for r in corpus if r["task"] == short + "_swap" and (origin[short + "_swap"][r["row_index"]], r["template_id"]) in held]
        assert len(pairs) > 100 and f"{short}_swap" in fold["train_tasks"]
        assert sum(r["id"] in removed for r in pairs) >= 0.95 * len(pairs), short
    trec_b = [r for r in corpus if r["task"] == "trec_b"]
    # TREC asks a few questions twice; other questions sharing a frame ("what is the origin of the
    # word X") stay. (Templates that print only the class give equal prompts in both halves: exact.)
    assert folds["task:trec_a"]["leakage"]["near_duplicates_removed"] <= 0.01 * len(trec_b)
