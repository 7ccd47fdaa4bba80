"""Why a task landed in its cluster: what holds each cluster together, and each task's nearest tasks.

Used by ``summary.md`` and ``taskmill cluster run --explain``. A cluster's template words are the
class-based TF-IDF terms (:func:`taskmill.clusters.naming.distinctive_terms`) of its tasks' masked
templates (the template view's texts); its schema words the same terms of its tasks' field and
label names (the schema view's texts); its answer and input features are those whose share of
rows in the cluster exceeds the share over all tasks the most (at least half the cluster's rows have them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskmill.clusters.naming import distinctive_terms
from taskmill.clusters.represent import VIEWS, template_view_texts
from taskmill.clusters.schema import TaskSchema
from taskmill.clusters.views import SHAPE_FEATURES
from taskmill.templates.engine import PLACEHOLDER

if TYPE_CHECKING:
    from taskmill.clusters.run import ClusterRun

N_WORDS = 5
N_FEATURES = 3


def cluster_features(run: ClusterRun) -> list[tuple[list[str], list[str]]]:
    """Per manifest cluster: (distinctive template words, distinctive answer/input features)."""
    import numpy as np

    views = run.views
    assert views is not None
    members = [c.task_names for c in run.manifest.clusters]
    # the {value} placeholder is in every template's text: it says nothing about one cluster
    texts = {t: [x.replace(PLACEHOLDER, " ") for x in template_view_texts(views.schemas.get(t, TaskSchema()), views.sketches[t])] or [""]
             for t in views.tasks}
    words = distinctive_terms(texts, members, n_terms=N_WORDS)
    index = {t: i for i, t in enumerate(views.tasks)}
    if not views.raw:
        return [(w, []) for w in words]
    names = [*views.answer_features, *SHAPE_FEATURES]
    raw = np.hstack([views.raw["answer"], views.raw["shape"]])  # (n_tasks, n_features) shares of rows
    overall = raw.mean(axis=0)
    out = []
    for w, tasks in zip(words, members):
        share = raw[[index[t] for t in tasks]].mean(axis=0)
        lift = np.where(share >= 0.5, share - overall, -np.inf)
        order = sorted((j for j in np.flatnonzero(lift > 0.05)), key=lambda j: (-round(float(lift[j]), 9), names[j]))
        out.append((w, [f"{names[j]} ({share[j]:.0%})" for j in order[:N_FEATURES]]))
    return out


def schema_words(run: ClusterRun) -> list[list[str]]:
    """Per manifest cluster: its distinctive field and label words (empty when no task has a schema)."""
    from taskmill.clusters.schema import schema_texts

    views = run.views
    assert views is not None
    texts = {t: schema_texts(views.schemas[t], with_labels=True) if t in views.schemas else [] for t in views.tasks}
    members = [c.task_names for c in run.manifest.clusters]
    if not any(texts.values()):
        return [[] for _ in members]
    # "fields" and "labels" head every text: they say nothing about one cluster
    texts = {t: [x.split(": ", 1)[1] for x in xs] or [""] for t, xs in texts.items()}
    return distinctive_terms(texts, members, n_terms=N_WORDS)


def nearest_tasks(run: ClusterRun, n: int = 3) -> dict[str, list[tuple[str, float, list[float | None]]]]:
    """Task -> its ``n`` most similar tasks: (task, combined cosine, per-view cosines in
    :data:`VIEWS` order, None for a view of weight 0), in manifest task order."""
    import numpy as np

    views = run.views
    assert views is not None
    order = run.view_order  # manifest position -> row of the view matrices
    out = {}
    for i, task in enumerate(run.tasks):
        sims = run.similarity[i].copy()
        sims[i] = -np.inf
        near = sorted(np.flatnonzero(np.isfinite(sims)), key=lambda j: (-round(float(sims[j]), 9), run.tasks[j]))[:n]
        out[task] = [
            (run.tasks[j], float(sims[j]),
             [float(views.views[v][order[i]] @ views.views[v][order[j]]) if v in views.views else None for v in VIEWS])
            for j in near
        ]
    return out
