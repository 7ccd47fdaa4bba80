"""The dataset card (``card.md``): per task and template, counts, lengths, labels and skips.

Everything in it is derived from the corpus and the build's counters (no timestamps, no
timings), so the card is byte-identical across runs like the corpus itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict
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


def _lengths(values: Sequence[int]) -> str:
    return f"{min(values)} / {sum(values) / len(values):.1f} / {max(values)}"


def _labels(metas: Sequence[Meta]) -> str:
    with_choices = [m for m in metas if m[8]]
    if not with_choices:
        return "-"
    counts = Counter("not a choice" if m[7] is None else str(m[7]) for m in with_choices)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{k}: {v} ({100 * v / len(with_choices):.1f}%)" for k, v in ranked[:TOP_LABELS]]
    if len(ranked) > TOP_LABELS:
        shown.append(f"{len(ranked) - TOP_LABELS} more")
    return ", ".join(shown)


def _template_section(name: str, tid: str, metas: list[Meta], skips: list[tuple[str, str, str, list[Any]]],
                      duplicates: list[tuple[str, str, int]]) -> list[str]:
    lines = [f"### Template `{name}`", "", f"id `{tid}`", ""]
    if metas:
        lines += ["| split | format | rows | prompt chars min / mean / max | completion chars min / mean / max "
                  "| labels (target_index) |", "|---|---|---:|---|---|---|"]
        groups: dict[tuple[str, str], list[Meta]] = defaultdict(list)
        for m in metas:
            groups[(m[0], m[2])].append(m)
        for (split, fmt), group in groups.items():
            lines.append(f"| {split} | {fmt} | {len(group)} | {_lengths([m[5] for m in group])} | "
                         f"{_lengths([m[6] for m in group])} | {_labels(group)} |")
        lines.append("")
    else:
        lines += ["No rows.", ""]
    for split, fmt, reason, (count, examples) in skips:
        rows = ", ".join(str(i) for i in examples)
        lines.append(f"- skipped {count} rows of {split} / {fmt}: {reason} (e.g. rows {rows})")
    for split, fmt, count in duplicates:
        lines.append(f"- removed {count} exact duplicates from {split} / {fmt}")
    return lines + ([""] if skips or duplicates else [])


def _task_section(plan: TaskPlan, metas: list[Meta], stats: BuildStats) -> list[str]:
    cfg = plan.config
    lines = [f"## Task `{cfg.name}`", "", f"Dataset `{cfg.dataset}` from {plan.data.origin}"
             + (f", templates `{plan.template_label}`" if plan.templates else "") + ".", ""]
    for split in cfg.splits:
        total, used = len(plan.data.splits[split]), len(plan.selected[split])
        lines.append(f"- {split}: {total} source rows, {used} used")
    lines += [f"- {note}" for note in format_notes(plan)]
    lines.append("")
    names = {t.id: t.name for t in plan.templates}
    others = {m[1] for m in metas} | {k[1] for k in stats.skips if k[0] == plan.index}
    order = [t.id for t in plan.templates] + sorted(others - set(names))
    by_template: dict[str, list[Meta]] = defaultdict(list)
    for m in metas:
        by_template[m[1]].append(m)
    for tid in order:
        skips = [(s, f, r, v) for (t, i, s, f, r), v in stats.skips.items() if t == plan.index and i == tid]
        dups = [(s, f, n) for (t, i, s, f), n in stats.duplicates.items() if t == plan.index and i == tid]
        lines += _template_section(names.get(tid, tid), tid, by_template.get(tid, []), skips, dups)
    return lines


def format_notes(plan: TaskPlan) -> list[str]:
    """Formats a task asks for that none of its templates can give (said once per task, not
    only per template): ``cot`` without any ``cot_target``."""
    if "cot" in plan.config.formats and plan.templates and all(t.cot_target is None for t in plan.templates):
        return [f"cot: none of the {len(plan.templates)} templates has a cot_target, so this task has no cot rows"]
    return []


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


def render_card(title: str, seed: int, plans: Sequence[TaskPlan], metas: Sequence[Meta], task_of: Sequence[int],
                stats: BuildStats) -> str:
    """The card's Markdown text."""
    per_task: dict[int, list[Meta]] = defaultdict(list)
    for m, t in zip(metas, task_of):
        per_task[t].append(m)
    lines = [f"# Corpus card: {title}", "", f"{len(metas)} rows (seed {seed}; {stats.rendered} rendered, "
             f"{sum(stats.duplicates.values())} exact duplicates removed"
             + (f", {stats.rendered - sum(stats.duplicates.values()) - len(metas)} left out by mixing" if stats.mix else "")
             + ").", "", "| task | dataset | rows |", "|---|---|---:|"]
    lines += [f"| {p.config.name} | {p.config.dataset} | {len(per_task[p.index])} |" for p in plans]
    lines.append("")
    if stats.mix is not None:
        lines += _mix_section(plans, stats.mix)
    for plan in plans:
        lines += _task_section(plan, per_task[plan.index], stats)
    return "\n".join(lines).rstrip("\n") + "\n"
