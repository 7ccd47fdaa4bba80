"""Aggregation of scored examples: per template, per task (median and spread across templates, as
T0 reports), per cluster (mean of its tasks' medians), with seeded bootstrap 95% intervals.

A template's score is the mean of its examples' scores for per-example metrics, and the corpus
score computed once over its examples for corpus-level metrics (BLEU, chrF: from the sum of the
examples' sacreBLEU statistics, see :mod:`taskmill.eval.metrics`).

The bootstrap resamples examples within each template (the unit that was sampled), B times, and
recomputes the template's statistic on each resample (a mean, or a corpus score of the resampled
examples); the same draws feed the template scores, the task medians and the cluster means, so
every interval is for the statistic actually reported.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from taskmill.eval.metrics import corpus_draws, corpus_score, metric_level, signature


def percentile_ci(draws: np.ndarray) -> list[float]:
    """Percentile 95% interval of bootstrap draws (B,), rounded to 4 decimals."""
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def template_values(rows: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    """What the statistic of ``metric`` is computed from: the examples' scores (n,) for a
    per-example metric, their sacreBLEU segment statistics (n, k) for a corpus-level one.

    Raises:
        ValueError: An example of a corpus-level metric carries no statistics for it.
    """
    if metric_level(metric) == "example":
        return np.array([r["scores"][metric] for r in rows if metric in r["scores"]], dtype=float)
    missing = sum(metric not in (r.get("stats") or {}) for r in rows)
    if missing:
        raise ValueError(f"{missing} example(s) scored with corpus-level '{metric}' carry no 'stats' for it")
    return np.array([r["stats"][metric] for r in rows], dtype=np.int64).reshape(len(rows), -1)


def statistic(metric: str, values: np.ndarray) -> float:
    """A template's score: mean of per-example scores, or the corpus score of the statistics."""
    if metric_level(metric) == "corpus":
        return corpus_score(metric, values)
    return float(values.mean()) if len(values) else 0.0


def resampled(metric: str, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B,) the template statistic on each bootstrap resample ``idx`` (B, n) of its examples."""
    if metric_level(metric) == "corpus":
        return corpus_draws(metric, values, idx)
    return values[idx].mean(axis=1)


def _template_draws(metric: str, values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B,) bootstrap draws of one template's statistic."""
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return resampled(metric, values, idx)


def aggregate(
    examples: Sequence[Mapping[str, Any]],
    *,
    clusters: Mapping[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Summaries of scored examples.

    Args:
        examples: Dicts with ``task``, ``template_id``, ``template_name``, ``format``, ``primary``
            (metric name), ``scores`` (metric -> value) and, for corpus-level metrics, ``stats``
            (metric -> sacreBLEU segment statistics).
        clusters: Task -> cluster name; tasks without one are left out of ``per_cluster``.
        n_boot: Bootstrap resamples (0 disables intervals).
        seed: Seed of the bootstrap generator.

    Returns:
        ``{"per_template": [...], "per_task": [...], "per_cluster": [...]}``, each list sorted by
        its keys; every entry gives ``metric`` (the primary one), ``score`` and ``ci95``; template
        entries also give ``level`` (the primary metric's), ``metrics`` (every metric's score) and
        ``signatures`` (sacreBLEU signature of each corpus-level metric).
    """
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for ex in examples:
        groups[(ex["task"], ex["format"], ex["template_id"])].append(ex)
    per_template, draws = [], {}
    for key in sorted(groups):
        entry, boot = _summarise_template(groups[key], n_boot, rng)
        per_template.append(entry)
        draws[key] = boot
    per_task, task_draws = _per_task(per_template, draws, n_boot)
    per_cluster = _per_cluster(per_task, task_draws, clusters or {}, n_boot)
    return {"per_template": per_template, "per_task": per_task, "per_cluster": per_cluster}


def _summarise_template(rows: list[Mapping[str, Any]], n_boot: int, rng: np.random.Generator) -> tuple[dict, Any]:
    first = rows[0]
    primary = first["primary"]
    names = sorted({m for r in rows for m in r["scores"]})
    metrics = {name: round(statistic(name, template_values(rows, name)), 4) for name in names}
    values = template_values(rows, primary)
    boot = _template_draws(primary, values, n_boot, rng) if n_boot else None
    entry = {
        "task": first["task"], "format": first["format"], "template_id": first["template_id"],
        "template_name": first["template_name"], "n": len(rows), "metric": primary, "level": metric_level(primary),
        "score": round(statistic(primary, values), 4), "ci95": percentile_ci(boot) if boot is not None else None,
        "metrics": metrics, "signatures": {name: signature(name) for name in names if metric_level(name) == "corpus"},
    }
    return entry, boot


def _per_task(per_template: list[dict], draws: dict, n_boot: int) -> tuple[list[dict], dict]:
    by_task: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for entry in per_template:
        by_task[(entry["task"], entry["format"])].append(entry)
    out, task_draws = [], {}
    for (task, fmt), entries in sorted(by_task.items()):
        scores = np.array([e["score"] for e in entries])
        boot = None
        if n_boot:
            stacked = np.stack([draws[(task, fmt, e["template_id"])] for e in entries])  # (T, B)
            boot = np.median(stacked, axis=0)
            task_draws[(task, fmt)] = boot
        out.append({
            "task": task, "format": fmt, "n_templates": len(entries), "n": int(sum(e["n"] for e in entries)),
            "metrics": sorted({e["metric"] for e in entries}),
            "score": round(float(np.median(scores)), 4), "ci95": percentile_ci(boot) if boot is not None else None,
            "spread": {
                "min": round(float(scores.min()), 4), "q1": round(float(np.percentile(scores, 25)), 4),
                "q3": round(float(np.percentile(scores, 75)), 4), "max": round(float(scores.max()), 4),
                "std": round(float(scores.std()), 4),
            },
        })
    return out, task_draws


def _per_cluster(per_task: list[dict], task_draws: dict, clusters: Mapping[str, str], n_boot: int) -> list[dict]:
    by_cluster: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for entry in per_task:
        if entry["task"] in clusters:
            by_cluster[(clusters[entry["task"]], entry["format"])].append(entry)
    out = []
    for (cluster, fmt), entries in sorted(by_cluster.items()):
        boot = None
        if n_boot:
            boot = np.stack([task_draws[(e["task"], fmt)] for e in entries]).mean(axis=0)
        out.append({
            "cluster": cluster, "format": fmt, "tasks": [e["task"] for e in entries],
            "score": round(float(np.mean([e["score"] for e in entries])), 4),
            "ci95": percentile_ci(boot) if boot is not None else None,
        })
    return out
