"""Paired bootstrap intervals for instruction-tuned minus base deltas.

Both runs scored the same examples, so the interval resamples example ids once and applies the same
draw to both: the difference of the two statistics on each draw gives the delta's distribution.
The statistic is the one the eval reports (see ``taskmill.eval.aggregate``): template score over its
examples (the mean, or for a corpus-level metric such as BLEU the corpus score recomputed on the
resampled examples) -> task median over templates -> cluster mean over tasks -> board mean over
clusters. Examples are resampled within each template, as the eval's own intervals do.

Each task gets its own generator, seeded from (seed, format, row, task), so a task's draws do not
depend on which other tasks or runs are on the board.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np

from taskmill.eval.aggregate import resampled
from taskmill.eval.leaderboard.load import TemplateExamples

Examples = Mapping[tuple[str, str, str], TemplateExamples]
# Per template: (primary metric, tuned values, base values); values (n,) scores or (n, k) statistics.
Pair = tuple[str, np.ndarray, np.ndarray]


def _rng(seed: int, *key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(key).encode())])


def paired_arrays(tuned: Examples, base: Examples, task: str, fmt: str, templates: Sequence[str]) -> list[Pair] | None:
    """Per template, the primary metric and the (tuned, base) values aligned by example id.

    Returns None unless both runs scored exactly the same example ids with the same primary metric
    for every template (a pair evaluated on different rows, e.g. with different ``--limit``, gets
    no paired interval).
    """
    pairs = []
    for tpl in templates:
        a, b = tuned.get((task, fmt, tpl)), base.get((task, fmt, tpl))
        if not a or not b or not a.values or a.values.keys() != b.values.keys() or a.metric != b.metric:
            return None
        ids = sorted(a.values)
        pairs.append((a.metric, a.array(ids), b.array(ids)))
    return pairs or None


def task_delta_draws(pairs: Sequence[Pair], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(B,) draws of median-over-templates(tuned) - median-over-templates(base)."""
    tuned_stats, base_stats = [], []
    for metric, a, b in pairs:
        idx = rng.integers(0, len(a), size=(n_boot, len(a)))  # (B, n): same resample for both runs
        tuned_stats.append(resampled(metric, a, idx))
        base_stats.append(resampled(metric, b, idx))
    return np.median(np.stack(tuned_stats), axis=0) - np.median(np.stack(base_stats), axis=0)  # (T, B) -> (B,)


def delta_draws(
    tuned: Examples | None, base: Examples | None, task: str, fmt: str, templates: Sequence[str],
    *, n_boot: int, seed: int, row: str,
) -> np.ndarray | None:
    """(B,) paired draws of a task's delta, or None when the examples cannot be paired."""
    if tuned is None or base is None or n_boot <= 0:
        return None
    pairs = paired_arrays(tuned, base, task, fmt, templates)
    if pairs is None:
        return None
    return task_delta_draws(pairs, n_boot, _rng(seed, fmt, row, task))


def mean_draws(parts: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """The mean of several (B,) draws, or None if any part is missing."""
    if not parts or any(p is None for p in parts):
        return None
    return np.stack(parts).mean(axis=0)  # type: ignore[arg-type]
