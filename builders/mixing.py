"""Exact-duplicate removal and mixing across tasks.

Mixing follows examples-proportional mixing with a cap (T5/FLAN): task ``t`` with ``n_t`` rows in a
mixed split weighs ``min(n_t, cap) ** (1 / temperature)``; the split keeps ``total`` rows (default:
the sum of the capped sizes) shared in proportion to the weights, rounded by largest remainder.
A task never gives more rows than it has (a corpus is a set of distinct rows, so there is no
upsampling by repetition; the card shows the quota each task could not fill). The rows a task
keeps are those with the smallest ids, a seeded pseudo-random choice, kept in corpus order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from taskmill.builders.collection import MixingConfig
from taskmill.builders.render import Meta

GroupKey = tuple[int, str, str, str]  # (task index, template_id, split, format)


def dedup(metas: Sequence[Meta], task_of: Sequence[int]) -> tuple[list[int], Counter[GroupKey]]:
    """Positions of first occurrences of each (split, prompt, completion), and removals per group."""
    seen: set[bytes] = set()
    kept: list[int] = []
    removed: Counter[GroupKey] = Counter()
    for pos, meta in enumerate(metas):
        if meta[4] in seen:
            removed[(task_of[pos], meta[1], meta[0], meta[2])] += 1
            continue
        seen.add(meta[4])
        kept.append(pos)
    return kept, removed


def quotas(sizes: Sequence[int], cap: int | None, temperature: float, total: int | None) -> list[int]:
    """Rows each task is asked for in one mixed split (before clipping at its size).

    Args:
        sizes: Rows available per task (0 for tasks without this split).
        cap: Size cap in the weights (None: uncapped).
        temperature: Weight exponent is ``1 / temperature``.
        total: Rows wanted (None: sum of capped sizes).
    """
    capped = [min(n, cap) if cap else n for n in sizes]
    weights = [c ** (1.0 / temperature) if c else 0.0 for c in capped]
    wanted = sum(capped) if total is None else total
    norm = sum(weights)
    if not norm:
        return [0] * len(sizes)
    exact = [wanted * w / norm for w in weights]
    base = [int(x) for x in exact]
    # Largest remainder; ties go to the earlier task so the result is deterministic.
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[: wanted - sum(base)]:
        base[i] += 1
    return base


@dataclass(frozen=True)
class MixReport:
    """Per (task index, split): rows available, quota asked by the weights, rows kept."""

    available: dict[tuple[int, str], int]
    asked: dict[tuple[int, str], int]
    kept: dict[tuple[int, str], int]


def mix(positions: Sequence[int], metas: Sequence[Meta], task_of: Sequence[int], ntasks: int,
        config: MixingConfig) -> tuple[list[int], MixReport]:
    """Apply mixing to the rows at ``positions``; rows of splits not mixed are all kept."""
    by_group: dict[tuple[int, str], list[int]] = {}
    for pos in positions:
        by_group.setdefault((task_of[pos], metas[pos][0]), []).append(pos)
    keep = {pos for pos in positions if metas[pos][0] not in config.splits}
    available, asked, kept = {}, {}, {}
    for split in config.splits:
        sizes = [len(by_group.get((t, split), [])) for t in range(ntasks)]
        wanted = quotas(sizes, config.cap, config.temperature, config.total)
        for t in range(ntasks):
            if not sizes[t]:
                continue
            group = sorted(by_group[(t, split)], key=lambda p: (metas[p][3], p))[: wanted[t]]
            keep.update(group)
            available[(t, split)], asked[(t, split)], kept[(t, split)] = sizes[t], wanted[t], len(group)
    return sorted(keep), MixReport(available, asked, kept)
