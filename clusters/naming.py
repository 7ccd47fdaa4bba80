"""Automatic cluster names from what the member tasks are, and the terms that distinguish them.

A cluster is named after the task types of its members (``nli+paraphrase``, ``sentiment``,
``topic-classification``): a
task's type comes from a user's task-type file (by task name, then dataset id), else from the
taxonomies shipped in ``clusters/reference/`` (by dataset id); a task of unknown type stands for
itself (``sentiment+my-task``). Names are made unique in cluster order (``sentiment-2``); users
rename clusters in the manifest's ``overrides`` and re-runs keep those.

Distinctive terms (shown beside the names) are class-based TF-IDF: a term's weight in cluster c is ``tf(t, c) * log(1 + K / sum_c' tf(t, c'))``,
where ``tf(t, c)`` is the mean, over the cluster's tasks, of the share of the task's sampled texts
that contain the term. Shares (not raw counts) keep one long-passage task from naming the cluster.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from taskmill.clusters.compare import load_reference

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
MAX_TYPES_IN_NAME = 3

TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # words of 3+ letters: numbers and ids make poor names


def distinctive_terms(texts: dict[str, list[str]], clusters: Sequence[Sequence[str]], n_terms: int = 3) -> list[list[str]]:
    """Top ``n_terms`` distinctive terms of each cluster (ties broken alphabetically).

    Args:
        texts: Task -> its sampled texts.
        clusters: Task names per cluster.
        n_terms: Terms per cluster.
    """
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    tasks = [t for members in clusters for t in members]
    flat = [text for t in tasks for text in texts[t]]
    try:
        counts = CountVectorizer(binary=True, token_pattern=TOKEN_PATTERN, stop_words="english").fit(flat)
    except ValueError:  # nothing but stop words and numbers
        return [[] for _ in clusters]
    vocab = counts.get_feature_names_out()
    share = {t: np.asarray(counts.transform(texts[t]).mean(axis=0)).ravel() for t in tasks}  # (V,) per task
    tf = np.vstack([np.mean([share[t] for t in members], axis=0) for members in clusters])  # (K, V)
    weight = tf * np.log1p(len(clusters) / np.maximum(tf.sum(axis=0), 1e-12))
    out = []
    for row in weight:
        order = sorted(np.flatnonzero(row > 0), key=lambda j: (-round(float(row[j]), 9), vocab[j]))
        out.append([str(vocab[j]) for j in order[:n_terms]])
    return out


def slug(text: str) -> str:
    """Lower-case, filesystem-safe name: letters, digits and single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cluster"


def shipped_task_types() -> dict[str, str]:
    """Dataset id -> task type, from every taxonomy shipped in ``clusters/reference/``."""
    types: dict[str, str] = {}
    for path in sorted(REFERENCE_DIR.glob("*.yaml")):
        types.update(load_reference(path))
    return types


def task_types(datasets: Mapping[str, str], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Task -> type for the tasks of ``datasets`` (task -> dataset id) whose type is known.

    Args:
        datasets: Each task's dataset id, as corpus rows carry it.
        given: A user's mapping (task name or dataset id -> type); wins over the shipped taxonomies.
    """
    given = dict(given or {})
    shipped = shipped_task_types()
    out = {}
    for task, dataset in datasets.items():
        label = given.get(task) or given.get(dataset) or shipped.get(dataset)
        if label:
            out[task] = label
    return out


def type_names(clusters: Sequence[Sequence[str]], type_of: Mapping[str, str]) -> list[str]:
    """One name per cluster: its members' types (a task of unknown type stands for itself), most
    common first, at most three and a count of the rest, joined by ``+``; unique in cluster order."""
    bases = []
    for i, members in enumerate(clusters):
        counts = Counter(slug(type_of.get(t, t)) for t in members)
        labels = sorted(counts, key=lambda label: (-counts[label], label))
        if len(labels) > MAX_TYPES_IN_NAME:
            labels = labels[:MAX_TYPES_IN_NAME] + [f"{len(labels) - MAX_TYPES_IN_NAME}-more"]
        bases.append("+".join(labels) or f"cluster-{i}")
    return unique_names(bases)


def unique_names(bases: Sequence[str]) -> list[str]:
    """``bases`` with repeats made unique by ``-2``, ``-3`` suffixes, in order."""
    names: list[str] = []
    seen: set[str] = set()
    for base in bases:
        name, n = base, 2
        while name in seen:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        names.append(name)
    return names
