"""Clustering algorithms, the silhouette k search, similarity and representations."""

from __future__ import annotations

import numpy as np
import pytest

from taskmill.clusters.cluster import ClusterConfig, cluster_tasks, cosine_similarity, renumber
from taskmill.clusters.represent import RepresentConfig, TfidfEmbedder, clip_text, embed_tasks, sample_rows
from taskmill.clusters.synthetic import make_row
from taskmill.errors import ConfigError, TaskmillError


def blobs(k: int = 4, per: int = 6, dim: int = 16, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``k`` orthogonal directions; returns (X, true labels)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k]
    X = np.vstack([c + noise * rng.standard_normal((per, dim)) for c in centres])
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.repeat(np.arange(k), per)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((renumber(a) == renumber(b)).all())


@pytest.mark.parametrize("algorithm", ["agglomerative", "kmeans", "hdbscan"])
def test_each_algorithm_recovers_separated_groups(algorithm):
    X, truth = blobs()
    result = cluster_tasks(X, ClusterConfig(algorithm=algorithm))
    assert same_partition(result.labels, truth)
    assert result.k == 4 and result.silhouette > 0.8


def test_silhouette_search_picks_k_and_reports_scores():
    X, _ = blobs(k=5, per=4)
    result = cluster_tasks(X, ClusterConfig(k_max=9))
    assert result.k == 5
    assert sorted(result.k_scores) == list(range(2, 10))
    assert max(result.k_scores, key=result.k_scores.get) == 5


def test_given_k_and_distance_threshold():
    X, truth = blobs(k=3)
    assert cluster_tasks(X, ClusterConfig(k=2)).k == 2
    cut = cluster_tasks(X, ClusterConfig(distance_threshold=0.5))
    assert same_partition(cut.labels, truth) and cut.k_scores == {}


def test_kmeans_is_deterministic_for_a_seed():
    X, _ = blobs(k=3, noise=0.6, seed=3)
    a = cluster_tasks(X, ClusterConfig(algorithm="kmeans", k=4, seed=7)).labels
    b = cluster_tasks(X, ClusterConfig(algorithm="kmeans", k=4, seed=7)).labels
    assert (a == b).all()


def test_hdbscan_noise_tasks_become_singletons():
    X, _ = blobs(k=2, per=5)
    outlier = np.zeros((1, X.shape[1]))
    outlier[0, -1] = 1.0
    result = cluster_tasks(np.vstack([X, outlier]), ClusterConfig(algorithm="hdbscan", min_cluster_size=4))
    assert result.noise == [10]
    assert (result.labels == result.labels[10]).sum() == 1


def test_bad_config_lists_every_problem_and_k_above_n_is_refused():
    with pytest.raises(ConfigError) as err:
        ClusterConfig(algorithm="spectral", linkage="median", k=0, k_min=1, min_cluster_size=1).validate()
    assert len(err.value.problems) == 5
    with pytest.raises(TaskmillError, match="larger than the number of tasks"):
        cluster_tasks(blobs(k=2, per=2)[0], ClusterConfig(k=9))


def test_cosine_similarity_is_symmetric_with_unit_diagonal():
    X, _ = blobs()
    sim = cosine_similarity(X)
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0) and sim.max() <= 1.0


def test_sample_rows_spreads_over_templates_and_prefers_zero_shot():
    rows = [make_row("t", "d", i, f"p{i}", "c", template_id=f"tpl{i % 3}") for i in range(30)]
    few = [r.__class__(**{**r.__dict__, "format": "few_shot", "id": r.id + "f"}) for r in rows[:5]]
    picked = sample_rows(few + rows, 6, seed=0)
    assert all(r.format == "zero_shot" for r in picked)
    assert sorted(r.template_id for r in picked) == ["tpl0", "tpl0", "tpl1", "tpl1", "tpl2", "tpl2"]
    assert [r.id for r in sample_rows(list(reversed(rows)), 6, seed=0)] == [r.id for r in picked]  # file order does not matter
    assert [r.id for r in sample_rows(few, 3, seed=0)] and len(sample_rows(few, 3, seed=0)) == 3


def test_clip_text_keeps_head_and_tail():
    text = "Instruction first. " + "passage " * 200 + "Question at the end?"
    clipped = clip_text(text, 100)
    assert len(clipped) <= 100 and clipped.startswith("Instruction first.") and clipped.endswith("Question at the end?")


def test_tfidf_task_vectors_are_unit_and_separate_topics():
    texts = {"a": ["the movie was great", "loved the film"], "b": ["the film was awful"], "c": ["add two and three", "sum of numbers"]}
    X = embed_tasks(texts, TfidfEmbedder())
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0)
    sim = cosine_similarity(X)
    assert sim[0, 1] > sim[0, 2]


def test_represent_config_lists_every_problem():
    with pytest.raises(ConfigError) as err:
        RepresentConfig(embedder="", rows_per_task=0, max_chars=5, batch_size=0).validate()
    assert len(err.value.problems) == 4


def test_silhouette_matches_scikit_learn():
    from sklearn.metrics import silhouette_score

    from taskmill.clusters.cluster import silhouette

    X, _ = blobs(k=3, per=7, noise=0.7, seed=5)
    labels = np.array([0] * 8 + [1] * 6 + [2] * 6 + [3])  # includes a singleton cluster
    assert silhouette(X, labels) == pytest.approx(silhouette_score(X, labels, metric="cosine"), abs=1e-9)
    assert silhouette(X, np.zeros(len(X), dtype=int)) is None
