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
