"""Merging runs into one leaderboard: rows, held-out cluster and task cells, means and deltas.

A row is a model, or a model with adapters: all runs of the same model revision without an
adapter form its base row; all runs of it with an adapter (typically one adapter per LOCO fold,
each evaluated on its held-out cluster) form its tuned row. ``LABEL=PATH`` inputs (or a ``label``
in the results) name rows explicitly, to keep apart e.g. two tuning recipes of the same model.
A tuned row's deltas are against the base row of the same model revision.

The returned dict is ``leaderboard.json`` (schema ``taskmill.leaderboard/1``, see the README).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from taskmill.errors import DataError
from taskmill.eval.aggregate import percentile_ci
from taskmill.eval.leaderboard.load import Run, load_examples
from taskmill.eval.leaderboard.paired import delta_draws, mean_draws
from taskmill.eval.store import package_versions
from taskmill.records import FORMATS

SCHEMA = "taskmill.leaderboard/1"
PRODUCED_BY = ("taskmill", "numpy", "matplotlib")  # versions recorded in the board


@dataclass
class Row:
    """One leaderboard row and the runs merged into it."""

    label: str
    kind: str  # "base" or "tuned"
    model: str
    model_revision: str
    runs: list[Run] = field(default_factory=list)
    base: str | None = None


def _auto_key(run: Run) -> tuple[str, str, bool]:
    return (run.model, run.results["model_revision"], run.tuned)


def group_rows(runs: Sequence[Run]) -> list[Row]:
    """Rows of the board, sorted by model, revision, base before tuned, label.

    Raises:
        DataError: An explicitly labelled row mixes model revisions or base and tuned runs, or two
            rows end up with the same label.
    """
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[("label", run.label) if run.label else ("auto", *_auto_key(run))].append(run)
    auto_names = defaultdict(set)
    for key in groups:
        if key[0] == "auto":
            auto_names[key[1]].add(key[2])
    rows = []
    for key, members in groups.items():
        kinds = {_auto_key(r)[1:] for r in members}
        if len(kinds) > 1:
            raise DataError(f"row '{key[1]}' mixes runs of different model revisions or base and adapter runs", file=str(members[0].path))
        first = members[0]
        label = key[1] if key[0] == "label" else _auto_label(first, len(auto_names[first.model]) > 1)
        rows.append(Row(label, "tuned" if first.tuned else "base", first.model, first.results["model_revision"], list(members)))
    rows.sort(key=lambda r: (r.model, r.model_revision, r.kind != "base", r.label))
    labels = [r.label for r in rows]
    for label in labels:
        if labels.count(label) > 1:
            raise DataError(f"two different rows are both labelled '{label}': label the inputs (LABEL=PATH)")
    _link_bases(rows)
    return rows


def _auto_label(run: Run, ambiguous: bool) -> str:
    name = run.model + (f" @{run.results['model_revision'][:8]}" if ambiguous else "")
    return name + (" + adapter" if run.tuned else "")


def _link_bases(rows: list[Row]) -> None:
    bases = {}
    for row in rows:
        if row.kind == "base":
            bases.setdefault(row.model_revision, row.label)  # first by label when several
    for row in rows:
        if row.kind == "tuned":
            row.base = bases.get(row.model_revision)


def formats_of(runs: Sequence[Run]) -> list[str]:
    """Formats present in any run, in taskmill's format order."""
    found = {t["format"] for run in runs for t in run.results["per_task"]}
    return [f for f in FORMATS if f in found] + sorted(found - set(FORMATS))


def cluster_map(runs: Sequence[Run]) -> dict[str, str]:
    """Task -> cluster from the runs' per-cluster entries.

    Raises:
        DataError: Two runs put the same task in different clusters.
    """
    owner: dict[str, tuple[str, Run]] = {}
    for run in runs:
        for entry in run.results["per_cluster"]:
            for task in entry["tasks"]:
                seen = owner.setdefault(task, (entry["cluster"], run))
                if seen[0] != entry["cluster"]:
                    raise DataError(
                        f"task '{task}' is in cluster '{entry['cluster']}' here but in '{seen[0]}' in {seen[1].path}:"
                        " expected runs evaluated with the same cluster manifest", file=str(run.path))
    return {task: cluster for task, (cluster, _) in owner.items()}


def _put(cells: dict[str, dict], key: str, cell: dict, run: Run, runs: dict[str, Run], what: str) -> None:
    old = cells.get(key)
    if old is None:
        cells[key] = cell
    elif (old["score"], old["ci95"]) != (cell["score"], cell["ci95"]):
        raise DataError(
            f"{what} '{key}' is scored differently here and in {runs[old['run']].path}, both in one row:"
            " label the inputs (LABEL=PATH) to put them in different rows", file=str(run.path))


def row_cells(row: Row, fmt: str) -> dict[str, Any]:
    """A row's cluster, task and template cells for one format (each cell names its run)."""
    out: dict[str, Any] = {"clusters": {}, "tasks": {}, "templates": {}}
    by_id = {run.id: run for run in row.runs}
    for run in row.runs:
        res = run.results
        for c in (c for c in res["per_cluster"] if c["format"] == fmt):
            _put(out["clusters"], c["cluster"], {"score": c["score"], "ci95": c["ci95"], "run": run.id}, run, by_id, "cluster")
        for t in (t for t in res["per_task"] if t["format"] == fmt):
            cell = {k: t[k] for k in ("score", "ci95", "n", "n_templates", "metrics", "spread")}
            _put(out["tasks"], t["task"], {**cell, "run": run.id}, run, by_id, "task")
            if out["tasks"][t["task"]]["run"] == run.id:
                out["templates"][t["task"]] = [
                    {k: p[k] for k in ("template_id", "template_name", "metric", "score", "ci95", "n")}
                    for p in res["per_template"] if p["format"] == fmt and p["task"] == t["task"]
                ]
    for key in ("clusters", "tasks", "templates"):
        out[key] = dict(sorted(out[key].items()))
    return out


def _mean_cell(cells: dict[str, Any], over: str) -> dict[str, Any] | None:
    scores = [c["score"] for c in cells[over].values()]
    if not scores:
        return None
    return {"score": round(float(np.mean(scores)), 4), "n": len(scores), "over": over}


class DeltaMaker:
    """Tuned - base deltas with paired bootstrap intervals; caches each run's examples."""

    def __init__(self, n_boot: int, seed: int) -> None:
        self.n_boot, self.seed = n_boot, seed
        self._examples: dict[str, Any] = {}

    def examples(self, run: Run) -> Any:
        if run.id not in self._examples:
            self._examples[run.id] = load_examples(run)
        return self._examples[run.id]

    def make(self, row: Row, base: Row, fmt: str, tuned_cells: dict, base_cells: dict, over: str) -> dict[str, Any]:
        """Task, cluster and mean deltas of ``row`` against ``base`` for one format."""
        runs = {r.id: r for r in (*row.runs, *base.runs)}
        tasks, draws = {}, {}
        for task in sorted(tuned_cells["tasks"].keys() & base_cells["tasks"].keys()):
            t, b = tuned_cells["tasks"][task], base_cells["tasks"][task]
            tpls = [p["template_id"] for p in tuned_cells["templates"][task]]
            same = set(tpls) == {p["template_id"] for p in base_cells["templates"][task]}
            draws[task] = delta_draws(self.examples(runs[t["run"]]), self.examples(runs[b["run"]]), task, fmt, tpls,
                                      n_boot=self.n_boot, seed=self.seed, row=row.label) if same else None
            tasks[task] = _delta_cell(t["score"] - b["score"], draws[task])
        clusters, cluster_draws = {}, {}
        for name in sorted(tuned_cells["clusters"].keys() & base_cells["clusters"].keys()):
            members = _cluster_tasks(tuned_cells, name, fmt, runs)
            same = members == _cluster_tasks(base_cells, name, fmt, runs)
            cluster_draws[name] = mean_draws([draws.get(m) for m in members]) if same else None
            diff = tuned_cells["clusters"][name]["score"] - base_cells["clusters"][name]["score"]
            clusters[name] = _delta_cell(diff, cluster_draws[name])
        parts = clusters if over == "clusters" else tasks
        part_draws = cluster_draws if over == "clusters" else draws
        mean = None
        if parts:
            mean = _delta_cell(float(np.mean([p["delta"] for p in parts.values()])), mean_draws([part_draws[k] for k in parts]))
            mean["n"] = len(parts)
        return {"base": base.label, "mean": mean, "clusters": clusters, "tasks": tasks}


def _cluster_tasks(cells: dict, cluster: str, fmt: str, runs: dict[str, Run]) -> list[str]:
    run = runs[cells["clusters"][cluster]["run"]]
    entry = next(c for c in run.results["per_cluster"] if c["cluster"] == cluster and c["format"] == fmt)
    return sorted(entry["tasks"])


def _delta_cell(diff: float, draws: np.ndarray | None) -> dict[str, Any]:
    return {"delta": round(diff, 4), "ci95": percentile_ci(draws) if draws is not None else None, "paired": draws is not None}


def run_record(run: Run, path: str) -> dict[str, Any]:
    """What the board records about one run (its provenance)."""
    res, cfg = run.results, run.results["config"]
    return {
        "id": run.id, "path": path, "label": run.label, "schema": res["schema"], "model": run.model,
        "model_revision": res["model_revision"], "adapter": cfg.get("adapter"), "adapter_hash": res["adapter_hash"],
        "fold": run.fold, "backend": res.get("backend"), "prompt_style": res.get("prompt_style"),
        "config_hash": res["config_hash"], "seed": res.get("seed"), "bootstrap": cfg.get("bootstrap"),
        "n_examples": res.get("n_examples"), "versions": res.get("versions", {}), "date": run.date,
        "date_source": run.date_source, "examples": run.path.with_name("examples.jsonl").is_file(),
        "metric_info": res.get("metric_info", {}),
    }


def board_metrics(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Every metric on the board: its level, source and (corpus-level) the sacreBLEU signatures of
    the runs that used it, sorted; more than one signature means those scores are not comparable."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, info in run.results.get("metric_info", {}).items():
            entry = out.setdefault(name, {"level": info.get("level"), "source": info.get("source"), "signatures": []})
            sig = info.get("signature")
            if sig and sig not in entry["signatures"]:
                entry["signatures"] = sorted([*entry["signatures"], sig])
    return dict(sorted(out.items()))


def build_board(runs: Sequence[Run], paths: dict[str, str], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The leaderboard of ``runs`` (see the module docstring).

    Args:
        runs: The runs, from :func:`taskmill.eval.leaderboard.load.load_runs`.
        paths: Run id -> the path recorded for it (relative to the board's folder).
        n_boot: Resamples of the paired delta intervals (0: none).
        seed: Seed of those resamples.
    """
    rows = group_rows(runs)
    task_cluster = cluster_map(runs)
    all_tasks = sorted({t["task"] for run in runs for t in run.results["per_task"]})
    clusters = defaultdict(list)
    for task in all_tasks:
        if task in task_cluster:
            clusters[task_cluster[task]].append(task)
    over = "clusters" if clusters else "tasks"
    deltas = DeltaMaker(n_boot, seed)
    by_label = {row.label: row for row in rows}
    scores: dict[str, dict[str, Any]] = {}
    for fmt in formats_of(runs):
        cells = {row.label: row_cells(row, fmt) for row in rows}
        for row in rows:
            cells[row.label]["mean"] = _mean_cell(cells[row.label], over)
            base = by_label.get(row.base) if row.base else None
            cells[row.label]["delta"] = deltas.make(row, base, fmt, cells[row.label], cells[base.label], over) if base else None
        scores[fmt] = cells
    return {
        "schema": SCHEMA, "produced_by": package_versions(PRODUCED_BY), "options": {"bootstrap": n_boot, "seed": seed, "mean_over": over},
        "runs": [run_record(run, paths[run.id]) for run in sorted(runs, key=lambda r: (paths[r.id], r.id))],
        "metrics": board_metrics(runs),
        "formats": list(scores), "clusters": [{"name": c, "tasks": clusters[c]} for c in sorted(clusters)],
        "unclustered_tasks": [t for t in all_tasks if t not in task_cluster],
        "rows": [{"label": r.label, "kind": r.kind, "model": r.model, "model_revision": r.model_revision, "base": r.base,
                  "runs": sorted(run.id for run in r.runs)} for r in rows],
        "scores": scores,
    }
