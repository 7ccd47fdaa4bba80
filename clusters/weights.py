"""Choosing the representation settings against a reference taxonomy, and what that choice is worth.

A setting (:class:`Setting`) is the view weights, whether the text views are centred on the corpus
mean (``RepresentConfig.center``) and the agglomerative linkage; k is always chosen by silhouette,
never from the labels. The procedure (``bench/cluster_weights.py`` runs it on the 29 shared datasets):

1. Every view is computed once for every task, plain and centred (unsupervised: no label is read).
2. Every setting of the grid (:func:`settings_grid`) is scored by the ARI of its clustering (k by
   silhouette) against the reference labels; the best wins, ties going to the earlier setting
   (uncentred, ward and smaller weights on the rows view first, see :func:`weight_grid`).
3. The held-out estimate is leave-one-dataset-out: for each task, the setting is chosen on the
   *other* tasks' labels only (step 2 with the task left out), every task is clustered with it,
   and only the pairs (held-out task, other task) are judged: same cluster or not, against the
   reference. Each pair is judged twice (once per end held out); the pair counts of all held-out
   tasks give one adjusted Rand index (:func:`pair_ari`). No held-out task's label ever chose the
   setting its pairs were judged under.

The reference is also what the bench measures against, so the in-sample ARI of the chosen weights
is optimistic; the leave-one-dataset-out ARI is the number to quote for an unseen collection.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class Setting:
    """One point of the search: view weights, centred text views or not, agglomerative linkage."""

    weights: tuple[tuple[str, float], ...]
    center: bool = False
    linkage: str = "ward"

    def weight_map(self) -> dict[str, float]:
        """View -> weight."""
        return dict(self.weights)

    def describe(self) -> str:
        """``template 0.33, answer 0.00, ...; centred; ward``."""
        w = ", ".join(f"{v} {x:.2f}" for v, x in self.weights)
        return f"{w}; {'centred' if self.center else 'plain'}; {self.linkage}"


def settings_grid(values: Sequence[float] = GRID_VALUES, centers: Sequence[bool] = (False,),
                  linkages: Sequence[str] = ("ward",)) -> list[Setting]:
    """Every weight vector of :func:`weight_grid` x centring x linkage, in tie-break order
    (centring and linkage in the order given, then the weight grid's order)."""
    return [Setting(tuple(w.items()), c, link) for c in centers for link in linkages for w in weight_grid(values)]


@dataclass
class Choice:
    """The best setting on some tasks and its ARI there."""

    setting: Setting
    ari: float


class SettingLabels:
    """Cluster labels of every setting, on all tasks and on every leave-one-out subset, computed once.

    Args:
        views: Centred or not -> view -> ``(n_tasks, dim)`` unit rows.
        settings: The settings searched.
        base: Clustering settings besides the linkage (the default: agglomerative, k by silhouette).
    """

    def __init__(self, views: dict[bool, dict[str, np.ndarray]], settings: list[Setting], base: ClusterConfig) -> None:
        self.settings = settings
        self._views, self._base = views, base
        self._cache: dict[tuple[int, int | None], np.ndarray] = {}

    def labels(self, index: int, left_out: int | None = None) -> np.ndarray:
        """Labels of setting ``index`` on all tasks, or on all but ``left_out`` (in task order)."""
        key = (index, left_out)
        if key not in self._cache:
            setting = self.settings[index]
            X = combine(self._views[setting.center], setting.weight_map())
            if left_out is not None:
                import numpy as np

                X = np.delete(X, left_out, axis=0)
            self._cache[key] = cluster_tasks(X, replace(self._base, linkage=setting.linkage)).labels
        return self._cache[key]


def choose_setting(table: SettingLabels, truth: Sequence[str], left_out: int | None = None) -> Choice:
    """The setting whose clustering agrees best with ``truth`` on every task but ``left_out``."""
    from sklearn.metrics import adjusted_rand_score

    kept = [t for i, t in enumerate(truth) if i != left_out]
    best: Choice | None = None
    for index, setting in enumerate(table.settings):
        score = float(adjusted_rand_score(kept, table.labels(index, left_out)))
        if best is None or score > best.ari + 1e-12:
            best = Choice(setting, score)
    assert best is not None
    return best


@dataclass
class HeldOut:
    """Leave-one-dataset-out: per held-out task the setting chosen without it, and the pair ARI."""

    chosen: list[Setting]
    ari: float
    pairs: tuple[int, int, int, int]


def leave_one_out(table: SettingLabels, truth: Sequence[str]) -> HeldOut:
    """The held-out estimate of module step 3 over every task of ``truth``."""
    n = len(truth)
    tp = fp = fn = tn = 0
    chosen = []
    for held in range(n):
        choice = choose_setting(table, truth, held)
        chosen.append(choice.setting)
        labels = table.labels(table.settings.index(choice.setting))
        for other in range(n):
            if other == held:
                continue
            same_cluster, same_label = labels[held] == labels[other], truth[held] == truth[other]
            tp += same_cluster and same_label
            fp += same_cluster and not same_label
            fn += same_label and not same_cluster
            tn += not same_label and not same_cluster
    return HeldOut(chosen, pair_ari(tp, fp, fn, tn), (tp, fp, fn, tn))
