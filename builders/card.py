"""The dataset card (``card.md``): per task and template, counts, lengths, labels and skips.

Everything in it is derived from the corpus and the build's counters (no timestamps, no
timings), so the card is byte-identical across runs like the corpus itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskmill.builders.mixing import GroupKey, MixReport
from taskmill.builders.render import Meta, TaskPlan
from taskmill.errors import TaskmillError

TOP_LABELS = 6


@dataclass(frozen=True)
class BuildStats:
    """Counters of a build, for the card.

    Attributes:
        skips: (task, template_id, split, format, reason) -> [count, example row indices].
        duplicates: Rows removed as exact duplicates, per group.
        mix: The mixing report, or None when the collection does not mix.
        rendered: Rows rendered before dedup and mixing.
    """

    skips: dict[tuple[int, str, str, str, str], list[Any]]
    duplicates: Counter[GroupKey]
    mix: MixReport | None
    rendered: int


class GroupStats:
    """Card counters of the rows of one (template, split, format): mergeable across chunks.

    Lengths keep exact integer sums, so the mean printed from merged counters is the mean of the rows.
    """

    __slots__ = ("rows", "prompt", "completion", "labels")

    def __init__(self) -> None:
        self.rows = 0
        self.prompt = [0, 0, 0]  # min, sum, max
        self.completion = [0, 0, 0]
        self.labels: Counter[str] = Counter()  # target_index (or "not a choice") of rows with answer_choices

    def add(self, meta: Meta) -> None:
        """Count one corpus row."""
        for lengths, size in ((self.prompt, meta[5]), (self.completion, meta[6])):
            lengths[0] = size if not self.rows else min(lengths[0], size)
            lengths[1] += size
            lengths[2] = max(lengths[2], size)
        self.rows += 1
        if meta[8]:
            self.labels["not a choice" if meta[7] is None else str(meta[7])] += 1

    def merge(self, other: GroupStats) -> None:
        """Add another chunk's counters of the same group."""
        if not other.rows:
            return
        for mine, theirs in ((self.prompt, other.prompt), (self.completion, other.completion)):
            mine[0] = theirs[0] if not self.rows else min(mine[0], theirs[0])
            mine[1] += theirs[1]
            mine[2] = max(mine[2], theirs[2])
        self.rows += other.rows
        self.labels.update(other.labels)

    def __getstate__(self) -> tuple[Any, ...]:
        return self.rows, self.prompt, self.completion, self.labels

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.rows, self.prompt, self.completion, self.labels = state


# template_id -> (split, format) -> counters, each in order of first row (corpus order).
TaskStats = dict[str, dict[tuple[str, str], GroupStats]]


def chunk_stats(metas: Sequence[Meta], kept: Sequence[int] | None = None) -> TaskStats:
    """The card counters of one chunk's rows (all of them, or those at ``kept``, ascending)."""
    stats: TaskStats = {}
    for meta in metas if kept is None else (metas[i] for i in kept):
        groups = stats.get(meta[1])
        if groups is None:
            groups = stats[meta[1]] = {}
        group = groups.get((meta[0], meta[2]))
        if group is None:
            group = groups[(meta[0], meta[2])] = GroupStats()
        group.add(meta)
    return stats


def merge_stats(into: TaskStats, chunk: TaskStats) -> None:
    """Merge a later chunk's counters into ``into`` (first-row order is kept)."""
    for tid, groups in chunk.items():
        mine = into.setdefault(tid, {})
        for key, group in groups.items():
            mine.setdefault(key, GroupStats()).merge(group)


def _lengths(values: list[int], rows: int) -> str:
    return f"{values[0]} / {values[1] / rows:.1f} / {values[2]}"


def _labels(group: GroupStats) -> str:
    with_choices = sum(group.labels.values())
    if not with_choices:
        return "-"
    ranked = sorted(group.labels.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{k}: {v} ({100 * v / with_choices:.1f}%)" for k, v in ranked[:TOP_LABELS]]
    if len(ranked) > TOP_LABELS:
        shown.append(f"{len(ranked) - TOP_LABELS} more")
    return ", ".join(shown)


def _template_section(name: str, tid: str, groups: dict[tuple[str, str], GroupStats],
                      skips: list[tuple[str, str, str, list[Any]]], duplicates: list[tuple[str, str, int]]) -> list[str]:
    lines = [f"### Template `{name}`", "", f"id `{tid}`", ""]
    if groups:
        lines += ["| split | format | rows | prompt chars min / mean / max | completion chars min / mean / max "
                  "| labels (target_index) |", "|---|---|---:|---|---|---|"]
        for (split, fmt), group in groups.items():
            lines.append(f"| {split} | {fmt} | {group.rows} | {_lengths(group.prompt, group.rows)} | "
                         f"{_lengths(group.completion, group.rows)} | {_labels(group)} |")
        lines.append("")
    else:
        lines += ["No rows.", ""]
    for split, fmt, reason, (count, examples) in skips:
        rows = ", ".join(str(i) for i in examples)
        lines.append(f"- skipped {count} rows of {split} / {fmt}: {reason} (e.g. rows {rows})")
    for split, fmt, count in duplicates:
        lines.append(f"- removed {count} exact duplicates from {split} / {fmt}")
    return lines + ([""] if skips or duplicates else [])


def _task_section(plan: TaskPlan, task_stats: TaskStats, stats: BuildStats) -> list[str]:
    cfg = plan.config
    lines = [f"## Task `{cfg.name}`", "", f"Dataset `{cfg.dataset}` from {plan.data.origin}"
             + (f", templates `{plan.template_label}`" if plan.templates else "") + ".", ""]
    for split in cfg.splits:
        total, used = len(plan.data.splits[split]), len(plan.selected[split])
        lines.append(f"- {split}: {total} source rows, {used} used")
    lines += [f"- {note}" for note in format_notes(plan)]
    lines.append("")
    names = {t.id: t.name for t in plan.templates}
    others = set(task_stats) | {k[1] for k in stats.skips if k[0] == plan.index}
    order = [t.id for t in plan.templates] + sorted(others - set(names))
    for tid in order:
        skips = [(s, f, r, v) for (t, i, s, f, r), v in stats.skips.items() if t == plan.index and i == tid]
        dups = [(s, f, n) for (t, i, s, f), n in stats.duplicates.items() if t == plan.index and i == tid]
        lines += _template_section(names.get(tid, tid), tid, task_stats.get(tid, {}), skips, dups)
    return lines


def format_notes(plan: TaskPlan) -> list[str]:
    """Formats a task asks for that none of its templates can give (said once per task, not
    only per template): ``cot`` without any ``cot_target``."""
    if "cot" in plan.config.formats and plan.templates and all(t.cot_target is None for t in plan.templates):
        return [f"cot: none of the {len(plan.templates)} templates has a cot_target, so this task has no cot rows"]
    return []


def empty_format_notes(plans: Sequence[TaskPlan], produced: set[tuple[int, str, str]],
                       skips: dict[tuple[int, str, str, str, str], list[Any]]) -> list[str]:
    """One line per task that has templates giving no rows in some of its formats: which formats,
    how many of its templates, and why (each template's most frequent skip reason).

    Args:
        plans: The planned tasks.
        produced: (task, template_id, format) of every row rendered.
        skips: The build's skip counters, (task, template_id, split, format, reason) -> [count, rows].
    """
    lines = []
    for plan in plans:
        parts = []
        for fmt in plan.config.formats:
            empty = [t for t in plan.templates if (plan.index, t.id, fmt) not in produced]
            if not empty:
                continue
            reasons: Counter[str] = Counter()
            for t in empty:
                mine = Counter({r: c for (ti, i, _, f, r), (c, _) in skips.items()
                                if ti == plan.index and i == t.id and f == fmt})
                reasons[mine.most_common(1)[0][0] if mine else "no rows selected"] += 1
            why = "; ".join(f"{n} template{'s' if n > 1 else ''}: {reason}" if len(reasons) > 1 else reason
                            for reason, n in reasons.most_common())
            what = "no rows" if len(empty) == len(plan.templates) else f"no rows from {len(empty)} of {len(plan.templates)} templates"
            parts.append(f"{fmt}: {what} ({why})")
        if parts:
            lines.append(f"task '{plan.config.name}': " + "; ".join(parts))
    return lines


def no_rows_error(collection_file: str, plans: Sequence[TaskPlan],
                  skips: dict[tuple[int, str, str, str, str], list[Any]]) -> TaskmillError:
    """The error for a build that rendered no row at all: per task, why (its format notes, else
    its most frequent skip reason)."""
    reasons = []
    for plan in plans:
        notes = format_notes(plan)
        if not notes:
            counts: Counter[str] = Counter()
            for (t, _, _, fmt, reason), (count, _) in skips.items():
                if t == plan.index:
                    counts[f"{fmt}: {reason}"] += count
            notes = [f"{counts.most_common(1)[0][0]} ({counts.most_common(1)[0][1]} rows)"] if counts else ["no rows selected"]
        reasons.append(f"task '{plan.config.name}' ({plan.template_label}): {notes[0]}")
    return TaskmillError(f"no rows to write; {'; '.join(reasons)}; expected at least one row", file=collection_file)


def _mix_section(plans: Sequence[TaskPlan], mix: MixReport) -> list[str]:
    lines = ["## Mixing", "", "| task | split | available | asked | kept |", "|---|---|---:|---:|---:|"]
    for (t, split), available in mix.available.items():
        lines.append(f"| {plans[t].config.name} | {split} | {available} | {mix.asked[(t, split)]} "
                     f"| {mix.kept[(t, split)]} |")
    return lines + [""]


def render_card(title: str, seed: int, plans: Sequence[TaskPlan], per_task: dict[int, TaskStats],
                stats: BuildStats) -> str:
    """The card's Markdown text.

    Args:
        title: The collection file's name.
        seed: The collection seed.
        plans: The planned tasks.
        per_task: Task index -> the card counters of its corpus rows (merged in corpus order).
        stats: The build's counters (skips, duplicates, mixing).
    """
    rows = {p.index: sum(g.rows for groups in per_task.get(p.index, {}).values() for g in groups.values()) for p in plans}
    total = sum(rows.values())
    lines = [f"# Corpus card: {title}", "", f"{total} rows (seed {seed}; {stats.rendered} rendered, "
             f"{sum(stats.duplicates.values())} exact duplicates removed"
             + (f", {stats.rendered - sum(stats.duplicates.values()) - total} left out by mixing" if stats.mix else "")
             + ").", "", "| task | dataset | rows |", "|---|---|---:|"]
    lines += [f"| {p.config.name} | {p.config.dataset} | {rows[p.index]} |" for p in plans]
    lines.append("")
    if stats.mix is not None:
        lines += _mix_section(plans, stats.mix)
    for plan in plans:
        lines += _task_section(plan, per_task.get(plan.index, {}), stats)
    return "\n".join(lines).rstrip("\n") + "\n"
