"""Automatic cluster names from the terms that distinguish a cluster's texts from the others'.

Class-based TF-IDF: a term's weight in cluster c is ``tf(t, c) * log(1 + K / sum_c' tf(t, c'))``,
where ``tf(t, c)`` is the mean, over the cluster's tasks, of the share of the task's sampled texts
that contain the term. Shares (not raw counts) keep one long-passage task from naming the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def auto_names(terms: Sequence[Sequence[str]]) -> list[str]:
    """Names ``term1-term2-term3``, made unique with ``-2``, ``-3`` suffixes in cluster order."""
    return unique_names([slug("-".join(words)) if words else f"cluster-{i}" for i, words in enumerate(terms)])


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
