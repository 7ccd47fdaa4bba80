"""Choosing the weights between task views against a reference taxonomy, and what that choice is worth.

The procedure (``bench/cluster_weights.py`` runs it on the 29 shared datasets):

1. Every view is computed once for every task (unsupervised: no label is read).
2. A weight grid (:func:`weight_grid`) is scored by the ARI of the default clustering (ward, k by
   silhouette) against the reference labels; the best weights win, ties going to the earlier grid
   point (smaller weights on the rows view first, see :func:`weight_grid`).
3. The held-out estimate is leave-one-dataset-out: for each task, the weights are chosen on the
   *other* tasks' labels only (step 2 with the task left out), every task is clustered with them,
   and only the pairs (held-out task, other task) are judged: same cluster or not, against the
   reference. Each pair is judged twice (once per end held out); the pair counts of all held-out
   tasks give one adjusted Rand index (:func:`pair_ari`). No held-out task's label ever chose the
   weights its pairs were judged under.

The reference is also what the bench measures against, so the in-sample ARI of the chosen weights
is optimistic; the leave-one-dataset-out ARI is the number to quote for an unseen collection.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskmill.clusters.cluster import ClusterConfig, cluster_tasks
from taskmill.clusters.represent import VIEWS, combine

if TYPE_CHECKING:
    import numpy as np

GRID_VALUES = (0.0, 0.5, 1.0, 2.0)


def weight_grid(values: Sequence[float] = GRID_VALUES) -> list[dict[str, float]]:
    """Every weight vector over :data:`VIEWS` with values from ``values``, not all 0, scaled to sum 1
    and deduplicated (``(1,1,1,1)`` and ``(2,2,2,2)`` are one point), in a fixed order: the rows
    view's weight ascending first, so ties prefer the representation that sees the topic least."""
    seen: set[tuple[float, ...]] = set()
    grid = []
    for combo in sorted(itertools.product(values, repeat=len(VIEWS)), key=lambda c: (c[-1], c)):
        total = sum(combo)
        if total == 0:
            continue
        key = tuple(round(v / total, 6) for v in combo)
        if key in seen:
            continue
        seen.add(key)
        grid.append(dict(zip(VIEWS, key)))
    return grid


def cluster_labels(views: dict[str, np.ndarray], weights: dict[str, float], config: ClusterConfig, rows: Sequence[int] | None = None) -> np.ndarray:
    """Cluster labels of the tasks ``rows`` (all when None) under ``weights``."""
    X = combine(views, weights)
    if rows is not None:
        X = X[list(rows)]
    return cluster_tasks(X, config).labels


def pair_ari(tp: int, fp: int, fn: int, tn: int) -> float:
    """Adjusted Rand index from pair counts (same/different cluster x same/different label)."""
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    return 1.0 if denominator == 0 else 2.0 * (tp * tn - fn * fp) / denominator


@dataclass
class Choice:
    """The best grid point on some tasks: its weights and ARI there."""

    weights: dict[str, float]
    ari: float


def choose_weights(views: dict[str, np.ndarray], truth: Sequence[str], config: ClusterConfig,
                   grid: list[dict[str, float]], rows: Sequence[int] | None = None) -> Choice:
    """The grid point whose clustering of ``rows`` (all tasks when None) agrees best with ``truth``.

    Args:
        views: View -> ``(n_tasks, dim)`` unit rows (every view in the grid).
        truth: Reference label per task (all tasks; only ``rows`` are read).
        config: Clustering settings (the default: ward, k by silhouette).
        grid: Candidate weights, in tie-break order.
        rows: Task indices the choice may see.
    """
    from sklearn.metrics import adjusted_rand_score

    idx = list(range(len(truth))) if rows is None else list(rows)
    best: Choice | None = None
    for weights in grid:
        score = float(adjusted_rand_score([truth[i] for i in idx], cluster_labels(views, weights, config, idx)))
        if best is None or score > best.ari + 1e-12:
            best = Choice(weights, score)
    assert best is not None
    return best


@dataclass
class HeldOut:
    """Leave-one-dataset-out: per held-out task the weights chosen without it, and the pair ARI."""

    chosen: list[dict[str, float]]
    ari: float
    pairs: tuple[int, int, int, int]


def leave_one_out(views: dict[str, np.ndarray], truth: Sequence[str], config: ClusterConfig, grid: list[dict[str, float]]) -> HeldOut:
    """The held-out estimate of module step 3 over every task of ``truth``."""
    n = len(truth)
    tp = fp = fn = tn = 0
    chosen = []
    for held in range(n):
        choice = choose_weights(views, truth, config, grid, [i for i in range(n) if i != held])
        chosen.append(choice.weights)
        labels = cluster_labels(views, choice.weights, config)
        for other in range(n):
            if other == held:
                continue
            same_cluster, same_label = labels[held] == labels[other], truth[held] == truth[other]
            tp += same_cluster and same_label
            fp += same_cluster and not same_label
            fn += same_label and not same_cluster
            tn += not same_label and not same_cluster
    return HeldOut(chosen, pair_ari(tp, fp, fn, tn), (tp, fp, fn, tn))
