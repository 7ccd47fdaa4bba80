"""Fixtures of the orchestration tests: the starter collection's corpus, clusters and folds."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def starter_folds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded starter collection built (zero-shot), clustered with TF-IDF into 3 clusters, and its
    leave-one-cluster-out and leave-one-task-out folds: ``{"corpus", "clusters", "folds"}``."""
    from taskmill.builders.build import build_collection
    from taskmill.clusters import ClusterConfig, FoldConfig, RepresentConfig, run_clustering, write_folds

    root = tmp_path_factory.mktemp("starter")
    corpus, clusters, folds = root / "corpus", root / "clusters", root / "folds"
    build_collection(None, corpus, formats=["zero_shot"], progress=False)
    run_clustering(corpus, clusters, RepresentConfig(embedder="tfidf"), ClusterConfig(k=3), draw=False)
    write_folds(clusters, corpus, folds, FoldConfig(kinds=("cluster", "task")))
    return {"corpus": corpus, "clusters": clusters, "folds": folds}
