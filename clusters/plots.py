"""PNG plots of a clustering (matplotlib, Agg backend): heatmap, dendrogram, 2-D PCA map.

Task labels are drawn only up to :data:`MAX_LABELS` tasks; beyond that the plots show structure
only (a dendrogram of 2,000 leaves is truncated to its last 40 merges).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MAX_LABELS = 80
# Fixed metadata: no software version in the file, so the same inputs give the same bytes.
PNG_METADATA = {"Software": None}


def _pyplot():  # noqa: ANN202 - matplotlib is an optional dependency
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _font(n: int) -> float:
    return max(4.0, min(9.0, 400.0 / max(n, 1)))


def heatmap(sim: np.ndarray, tasks: Sequence[str], labels: np.ndarray, path: Path) -> None:
    """Similarity heatmap with tasks ordered by cluster and cluster boundaries drawn.

    Args:
        sim: ``(n, n)`` cosine similarities.
        tasks: Task names (row order of ``sim``).
        labels: ``(n,)`` cluster index per task; rows are ordered by it (stable within a cluster).
        path: PNG to write.
    """
    import numpy as np

    plt = _pyplot()
    order = np.argsort(labels, kind="stable")
    n = len(tasks)
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(sim[np.ix_(order, order)], cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    bounds = np.flatnonzero(np.diff(labels[order])) + 0.5
    for b in bounds:
        ax.axhline(b, color="white", linewidth=0.8)
        ax.axvline(b, color="white", linewidth=0.8)
    if n <= MAX_LABELS:
        names = [tasks[i] for i in order]
        ax.set_xticks(range(n), names, rotation=90, fontsize=_font(n))
        ax.set_yticks(range(n), names, fontsize=_font(n))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"Task similarity ordered by cluster ({n} tasks, {len(bounds) + 1} clusters)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)


def dendrogram(X: np.ndarray, tasks: Sequence[str], linkage: str, path: Path) -> None:
    """Dendrogram of the agglomerative tree over unit task vectors ``X`` (``(n, dim)``)."""
    from scipy.cluster import hierarchy

    from taskmill.clusters.cluster import linkage_tree

    plt = _pyplot()
    n = len(tasks)
    fig, ax = plt.subplots(figsize=(10, max(4.0, min(14.0, 0.22 * n))) if n <= MAX_LABELS else (10, 6))
    if n < 2:
        ax.text(0.5, 0.5, "one task: no tree", ha="center")
    elif n <= MAX_LABELS:
        hierarchy.dendrogram(linkage_tree(X, linkage), labels=list(tasks), orientation="right", leaf_font_size=_font(n) + 1, ax=ax)
    else:
        hierarchy.dendrogram(linkage_tree(X, linkage), truncate_mode="lastp", p=40, orientation="right", ax=ax)
    ax.set_xlabel("euclidean distance" if linkage == "ward" else "cosine distance")
    ax.set_title(f"Task dendrogram ({linkage} linkage)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)


def pca_map(X: np.ndarray, tasks: Sequence[str], labels: np.ndarray, names: Sequence[str], path: Path) -> None:
    """2-D PCA map of the task vectors, coloured by cluster (legend = cluster names)."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    n = len(tasks)
    coords = PCA(n_components=2, random_state=0).fit_transform(X) if n >= 2 and X.shape[1] >= 2 else X[:, :2] * 0
    fig, ax = plt.subplots(figsize=(9, 7))
    cmap = plt.get_cmap("tab20")
    for k, name in enumerate(names):
        mask = labels == k
        ax.scatter(coords[mask, 0], coords[mask, 1], s=28 if n <= MAX_LABELS else 6, color=cmap(k % 20), label=name if len(names) <= 20 else None)
    if n <= MAX_LABELS:
        for (x, y), task in zip(coords, tasks):
            ax.annotate(task, (x, y), fontsize=_font(n), xytext=(3, 2), textcoords="offset points")
    if len(names) <= 20:
        # loc="best" tests every point against the legend box: fine for 30 tasks, seconds for 2,000.
        ax.legend(fontsize=7, loc="best" if n <= MAX_LABELS else "upper right")
    ax.set_title("Tasks in the first two principal components")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)


def k_curve(k_scores: dict[int, float], chosen: int, path: Path) -> None:
    """Silhouette over the k tried by the search, the chosen k marked (a k a user can defend)."""
    plt = _pyplot()
    ks = sorted(int(k) for k in k_scores)
    scores = [k_scores[k] for k in ks]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ks, scores, marker="o", color="tab:blue", label="silhouette (cosine)")
    if chosen in k_scores:
        ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
        ax.scatter([chosen], [k_scores[chosen]], s=90, color="tab:red", zorder=3, label=f"chosen k = {chosen}")
    ax.set_xlabel("k (number of clusters)")
    ax.set_ylabel("mean silhouette")
    ax.set_title("Choice of k: silhouette over k")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)
