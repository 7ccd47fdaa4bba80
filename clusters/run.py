"""``taskmill cluster run``: corpus -> task vectors -> clusters -> manifest, similarity, plots.

Output folder (written atomically)::

    clusters.yaml      the cluster manifest (edit its ``overrides`` block; re-runs keep it)
    similarity.csv     cosine similarity between tasks (task order = manifest order)
    vectors.npy        unit task vectors, (n_tasks, dim) float64, same order
    summary.md         cluster table, quality numbers, why each cluster holds together, each task's
                       nearest tasks (per-view similarities), and the plots below
    heatmap.png, dendrogram.png, pca.png
    k.png              silhouette over k with the chosen k marked (when k was searched)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING

from taskmill.clusters import plots
from taskmill.clusters.cluster import ClusterConfig, ClusterResult, cluster_tasks, cosine_distance, cosine_similarity, silhouette_from_distances
from taskmill.clusters.compare import load_reference
from taskmill.clusters.corpus import corpus_file, rows_by_task
from taskmill.clusters.manifest import (
    MANIFEST_FILE,
    ClusterEntry,
    ClusterManifest,
    Overrides,
    TaskEntry,
    apply_overrides,
    dump_yaml,
    load_manifest,
    load_overrides,
)
from taskmill.clusters.naming import distinctive_terms, task_types, type_names
from taskmill.clusters.represent import VIEWS, RepresentConfig, TaskVectors, l2_normalise, represent_tasks
from taskmill.clusters.schema import read_schemas
from taskmill.records import Row

if TYPE_CHECKING:
    import numpy as np


@dataclass
class ClusterRun:
    """What :func:`run_clustering` produced (the manifest plus arrays in manifest task order)."""

    manifest: ClusterManifest
    tasks: list[str]
    vectors: np.ndarray
    similarity: np.ndarray
    labels: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    views: TaskVectors | None = None
    view_order: list[int] = field(default_factory=list)


class StageClock:
    """Wall and CPU seconds per stage (CPU time sums all threads: it shows the work done even
    when other processes share the cores)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._last = (time.perf_counter(), time.process_time())

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap to ``stage``."""
        now = (time.perf_counter(), time.process_time())
        self.wall[stage] = self.wall.get(stage, 0.0) + now[0] - self._last[0]
        self.cpu[stage] = self.cpu.get(stage, 0.0) + now[1] - self._last[1]
        self._last = now


def task_datasets(groups: dict[str, list[Row]]) -> dict[str, str]:
    """Task -> its source dataset (the most common one when rows disagree)."""
    return {task: Counter(r.dataset for r in rows).most_common(1)[0][0] for task, rows in groups.items()}


def _groups(tasks: list[str], labels: np.ndarray) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for task, label in zip(tasks, labels.tolist()):
        groups.setdefault(label, []).append(task)
    return [groups[k] for k in sorted(groups)]


def _task_entries(members: list[str], index: dict[str, int], X: np.ndarray, centroids: dict[str, np.ndarray], name: str, datasets: dict[str, str]) -> list[TaskEntry]:
    entries = []
    for task in members:
        v = X[index[task]]
        own = float(v @ centroids[name])
        others = sorted(((float(v @ c), n) for n, c in centroids.items() if n != name), key=lambda x: (-x[0], x[1]))
        near = others[0] if others else (None, None)
        entries.append(TaskEntry(task, datasets[task], round(own, 4), near[1], None if near[0] is None else round(near[0], 4)))
    return sorted(entries, key=lambda e: (-e.similarity, e.task))


def build_entries(groups: dict[str, list[str]], auto_of: dict[str, str], X: np.ndarray, tasks: list[str], texts: dict[str, list[str]], datasets: dict[str, str]) -> list[ClusterEntry]:
    """Manifest entries for final ``groups``: terms recomputed, similarity to centroids.

    ``auto_of`` maps each task to the automatic name of the algorithm's cluster that held it; a
    final cluster's ``auto_name`` is the one most of its tasks came from.
    """
    index = {t: i for i, t in enumerate(tasks)}
    names = sorted(groups, key=lambda n: (-len(groups[n]), n))
    centroids = {n: l2_normalise(X[[index[t] for t in groups[n]]].mean(axis=0, keepdims=True))[0] for n in names}
    terms = distinctive_terms(texts, [groups[n] for n in names])
    return [
        ClusterEntry(n, Counter(auto_of[t] for t in groups[n]).most_common(1)[0][0], terms[i], _task_entries(groups[n], index, X, centroids, n, datasets))
        for i, n in enumerate(names)
    ]


def previous_overrides(out_dir: Path, overrides_file: Path | None) -> Overrides:
    """Overrides from ``--overrides``, else from the manifest a previous run left in ``out_dir``."""
    if overrides_file is not None:
        return load_overrides(overrides_file)
    if (out_dir / MANIFEST_FILE).is_file():
        return load_manifest(out_dir).overrides
    return Overrides()


def cluster_corpus(corpus_dir: Path, represent: RepresentConfig, config: ClusterConfig, overrides: Overrides,
                   types: Mapping[str, str] | None = None) -> ClusterRun:
    """Represent, cluster and name the tasks of a corpus, then apply ``overrides`` (nothing written).

    ``types`` (task name or dataset id -> task type) names clusters ahead of the shipped taxonomies.
    """
    clock = StageClock()
    represent.validate()
    config.validate()
    groups = rows_by_task(corpus_dir)
    clock.lap("read")
    task_vectors = represent_tasks(groups, represent, read_schemas(corpus_dir, groups))
    X, texts = task_vectors.combined, task_vectors.texts
    clock.lap("embed")
    tasks = list(texts)
    result = cluster_tasks(X, config)
    clock.lap("cluster")
    algo_groups = _groups(tasks, result.labels)
    datasets = task_datasets(groups)
    names = type_names(algo_groups, task_types(datasets, types))
    final, unresolved = apply_overrides(dict(zip(names, algo_groups)), overrides)
    auto_of = {t: name for name, members in zip(names, algo_groups) for t in members}
    entries = build_entries(final, auto_of, X, tasks, texts, datasets)
    manifest = _manifest(corpus_dir, represent, config, result, overrides, unresolved, entries)
    order = [t for c in entries for t in c.task_names]
    position = {t: i for i, t in enumerate(tasks)}
    idx = [position[t] for t in order]
    Xo = X[idx]
    import numpy as np

    labels = np.array([k for k, c in enumerate(entries) for _ in c.tasks], dtype=np.int64)
    sim = cosine_similarity(Xo)
    final_sil = silhouette_from_distances(cosine_distance(sim), labels)
    manifest.quality["silhouette_final"] = None if final_sil is None else round(final_sil, 4)
    run = ClusterRun(manifest, order, Xo, sim, labels, views=task_vectors, view_order=idx)
    clock.lap("name")
    run.timings, run.cpu_timings = clock.wall, clock.cpu
    return run


def _manifest(corpus_dir: Path, represent: RepresentConfig, config: ClusterConfig, result: ClusterResult, overrides: Overrides, unresolved: list[str], entries: list[ClusterEntry]) -> ClusterManifest:
    from taskmill.fileio import sha256_file

    path = corpus_file(corpus_dir)
    quality = {
        "k": result.k,
        "silhouette": None if result.silhouette is None else round(result.silhouette, 4),
        "k_scores": {int(k): v for k, v in sorted(result.k_scores.items())},
        "hdbscan_noise": len(result.noise),
    }
    return ClusterManifest(
        clusters=entries,
        overrides=overrides,
        unresolved_overrides=unresolved,
        config={"represent": {**asdict(represent), "center": represent.centered(),
                              **{f"{v}_weight": w for v, w in represent.weights().items()}},
                "cluster": asdict(config)},
        corpus={"path": str(path.parent), "sha256": sha256_file(path), "tasks": sum(len(c.tasks) for c in entries)},
        quality=quality,
    )


def write_similarity_csv(path: Path, tasks: list[str], sim: np.ndarray) -> None:
    """``task,<task...>`` header, then one row per task, 6 decimals."""
    lines = [",".join(["task", *tasks])]
    lines += [",".join([t, *(f"{x:.6f}" for x in row)]) for t, row in zip(tasks, sim)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def summary_markdown(run: ClusterRun) -> str:
    """Short markdown: quality line, cluster table, plots."""
    m = run.manifest
    q = m.quality
    lines = [
        "# Task clusters",
        "",
        f"{len(run.tasks)} tasks, {len(m.clusters)} clusters; embedder `{m.config['represent']['embedder']}`, "
        f"algorithm `{m.config['cluster']['algorithm']}`; silhouette {q.get('silhouette')} "
        f"(after overrides {q.get('silhouette_final')}).",
        "",
        "| cluster | terms | tasks (similarity to cluster) |",
        "|---|---|---|",
    ]
    for c in m.clusters:
        tasks = ", ".join(f"{t.task} ({t.similarity:.2f})" for t in c.tasks)
        lines.append(f"| {c.name} | {', '.join(c.terms)} | {tasks} |")
    if m.unresolved_overrides:
        lines += ["", "Unresolved overrides: " + "; ".join(m.unresolved_overrides)]
    weights = {v: m.config["represent"].get(f"{v}_weight", 0.0) for v in VIEWS}
    lines += ["", "View weights: " + ", ".join(f"{v} {w:g}" for v, w in weights.items()) + ".", ""]
    lines += explain_markdown(run)
    lines += ["", "![similarity heatmap](heatmap.png)", "", "![dendrogram](dendrogram.png)", "", "![PCA map](pca.png)", ""]
    if q.get("k_scores"):
        lines[-1:-1] = ["", "![silhouette over k](k.png)"]
    return "\n".join(lines)


def explain_markdown(run: ClusterRun, n_near: int = 3) -> list[str]:
    """Why tasks landed where they did: per cluster the features that hold it together, per task its
    nearest tasks with the combined similarity and each view's share of it."""
    from taskmill.clusters.explain import cluster_features, nearest_tasks, schema_words

    if run.views is None:
        return []
    lines = ["## Why these clusters", "", "| cluster | template words | field and label words | answer and input features |", "|---|---|---|---|"]
    for c, (words, features), schema in zip(run.manifest.clusters, cluster_features(run), schema_words(run)):
        lines.append(f"| {c.name} | {', '.join(words)} | {', '.join(schema)} | {', '.join(features)} |")
    lines += ["", "## Nearest tasks", "", "Similarity is the weighted mean of the per-view cosines shown in brackets "
              f"({' / '.join(VIEWS)}).", "", "| task | cluster | nearest tasks |", "|---|---|---|"]
    cluster_of = run.manifest.cluster_of()
    for task, near in nearest_tasks(run, n_near).items():
        cells = "; ".join(f"{other} {sim:.2f} ({' / '.join('-' if v is None else f'{v:.2f}' for v in per_view)})" for other, sim, per_view in near)
        lines.append(f"| {task} | {cluster_of[task]} | {cells} |")
    return lines


def write_outputs(run: ClusterRun, out: Path, draw: bool = True) -> None:
    """Write every output file of a run into the (temporary) folder ``out``."""
    import numpy as np

    (out / MANIFEST_FILE).write_text(dump_yaml(run.manifest.to_yaml()), encoding="utf-8")
    write_similarity_csv(out / "similarity.csv", run.tasks, run.similarity)
    np.save(out / "vectors.npy", run.vectors)
    (out / "summary.md").write_text(summary_markdown(run), encoding="utf-8")
    if draw:
        names = [c.name for c in run.manifest.clusters]
        plots.heatmap(run.similarity, run.tasks, run.labels, out / "heatmap.png")
        plots.dendrogram(run.vectors, run.tasks, run.manifest.config["cluster"]["linkage"], out / "dendrogram.png")
        plots.pca_map(run.vectors, run.tasks, run.labels, names, out / "pca.png")
        if run.manifest.quality.get("k_scores"):
            plots.k_curve(run.manifest.quality["k_scores"], run.manifest.quality["k"], out / "k.png")


def run_clustering(
    corpus_dir: str | Path,
    out_dir: str | Path,
    represent: RepresentConfig | None = None,
    config: ClusterConfig | None = None,
    overrides_file: str | Path | None = None,
    draw: bool = True,
    overwrite: bool = False,
    task_types_file: str | Path | None = None,
) -> ClusterRun:
    """Cluster the tasks of a corpus and write the outputs to ``out_dir`` atomically.

    Args:
        corpus_dir: Folder holding ``corpus.jsonl``.
        out_dir: Output folder (replaced as a whole; a previous manifest's overrides are kept).
        represent: Representation settings (default: MiniLM).
        config: Clustering settings (default: agglomerative, k by silhouette).
        overrides_file: YAML with an ``overrides`` block; replaces the previous manifest's.
        draw: Write the PNG plots.
        overwrite: Replace ``out_dir`` even when it is not an earlier clustering folder.
        task_types_file: YAML mapping task name or dataset id -> task type (a top-level
            ``labels:`` key is accepted), used to name clusters before the shipped taxonomies.

    Returns:
        The run (manifest, vectors, similarity, timings).
    """
    from taskmill.fileio import atomic_dir, claim_output

    out = Path(out_dir)
    inputs = [corpus_dir] + [f for f in (overrides_file, task_types_file) if f]
    target = claim_output(out, "cluster run", inputs=inputs, overwrite=overwrite)
    overrides = previous_overrides(out, Path(overrides_file) if overrides_file else None)
    types = load_reference(task_types_file) if task_types_file else None
    run = cluster_corpus(Path(corpus_dir), represent or RepresentConfig(), config or ClusterConfig(), overrides, types)
    clock = StageClock()
    with atomic_dir(out, marker=target.write_marker) as tmp:
        write_outputs(run, tmp, draw)
    clock.lap("write")
    run.timings["write"], run.cpu_timings["write"] = clock.wall["write"], clock.cpu["write"]
    return run
