"""The board as Markdown (for READMEs and PRs) and as long-form CSV (for pandas / spreadsheets)."""

from __future__ import annotations

import csv
import io
from typing import Any, Callable

CSV_COLUMNS = (
    "format", "row", "kind", "model", "model_revision", "level", "cluster", "task", "template_id", "template_name",
    "metric", "score", "ci_low", "ci_high", "n", "base_row", "delta", "delta_ci_low", "delta_ci_high", "run",
)


def ranked(board: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """The board's rows for one format, best mean first (rows without a mean last, then by label)."""
    cells = board["scores"][fmt]

    def key(row: dict[str, Any]) -> tuple:
        mean = cells[row["label"]]["mean"]
        return (mean is None, -(mean["score"] if mean else 0.0), row["label"])

    return sorted(board["rows"], key=key)


def columns(board: dict[str, Any]) -> list[tuple[str | None, list[str]]]:
    """Column groups: (cluster, its tasks) per cluster, then (None, unclustered tasks) if any."""
    groups: list[tuple[str | None, list[str]]] = [(c["name"], list(c["tasks"])) for c in board["clusters"]]
    if board["unclustered_tasks"]:
        groups.append((None, list(board["unclustered_tasks"])))
    return groups


def fmt_score(cell: dict[str, Any] | None) -> str:
    """``56.2 [31.2, 75.0]``; ``-`` for a missing cell."""
    if cell is None:
        return "-"
    ci = cell.get("ci95")
    return f"{cell['score']:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def fmt_delta(cell: dict[str, Any] | None) -> str:
    """``Δ +12.5 [-12.5, 37.5]``; empty for a missing delta."""
    if cell is None:
        return ""
    ci = cell.get("ci95")
    return f"Δ {cell['delta']:+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_cell(cells: dict, delta: dict | None, level: str, name: str) -> str:
    cell = cells[level].get(name) if level != "mean" else cells["mean"]
    d = (delta or {}).get(level, {}).get(name) if level != "mean" else (delta or {}).get("mean")
    return fmt_score(cell) + (f" · {fmt_delta(d)}" if d else "")


def _md_table(board: dict, fmt: str, level: str, names: list[str], with_mean: bool) -> list[str]:
    cells = board["scores"][fmt]
    head = ["#", "Model", "Kind"] + (["Mean"] if with_mean else []) + [_md(n) for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
    for rank, row in enumerate(ranked(board, fmt), 1):
        c, d = cells[row["label"]], cells[row["label"]]["delta"]
        vals = [str(rank), _md(row["label"]), row["kind"]] + ([_md_cell(c, d, "mean", "")] if with_mean else [])
        lines.append("| " + " | ".join(vals + [_md_cell(c, d, level, n) for n in names]) + " |")
    return lines


def markdown(board: dict[str, Any], plots: dict[str, dict[str, str]]) -> str:
    """The whole board as Markdown; ``plots`` maps format -> plot kind -> relative file path."""
    over = board["options"]["mean_over"]
    lines = ["# taskmill leaderboard", "", *_preamble(board, over)]
    groups = columns(board)
    level_names = [g for g, _ in groups if g is not None] if over == "clusters" else [t for _, ts in groups for t in ts]
    for fmt in board["formats"]:
        lines += ["", f"## {fmt}", "", *_md_table(board, fmt, over, level_names, True)]
        if over == "clusters":
            lines += ["", f"### {fmt}: tasks of each held-out cluster"]
            for name, tasks in groups:
                lines += ["", f"**{_md(name) if name else 'unclustered tasks'}**", "", *_md_table(board, fmt, "tasks", tasks, False)]
        for kind, path in plots.get(fmt, {}).items():
            lines += ["", f"![{kind} ({fmt})]({path})"]
    lines += ["", "## Runs", "", *_md_runs(board)]
    return "\n".join(lines) + "\n"


def _preamble(board: dict[str, Any], over: str) -> list[str]:
    models = sorted({r["model_revision"] for r in board["rows"]})
    made = ", ".join(f"{k} {v}" for k, v in board["produced_by"].items())
    return [
        f"{len(board['runs'])} runs, {len(board['rows'])} rows, {len(models)} model revision(s); produced by {made}.",
        "",
        "Scores are 0-100. Task = median over its templates; cluster = mean of its tasks; Mean = mean over the "
        f"{over} a row has. Brackets: 95% bootstrap intervals (examples resampled within templates). "
        "Δ = instruction-tuned minus base of the same model, with a paired bootstrap interval "
        f"({board['options']['bootstrap']} resamples, seed {board['options']['seed']}).",
        *[line for note in metric_notes(board, lambda sig: f"`{sig}`") for line in ("", note)],
    ]


def metric_notes(board: dict[str, Any], code: Callable[[str], str] = str, esc: Callable[[str], str] = str) -> list[str]:
    """How the board's metrics are computed: one sentence naming the per-example ones, then one per
    corpus-level metric with its source and sacreBLEU signature(s) (each signature through
    ``code``, any other text from the results through ``esc``: for Markdown or HTML)."""
    metrics = board.get("metrics", {})
    notes = []
    example = [esc(k) for k, v in metrics.items() if v["level"] != "corpus"]
    if example:
        notes.append(f"Per-example metrics, averaged over a template's examples: {', '.join(example)}.")
    for name, info in metrics.items():
        if info["level"] != "corpus":
            continue
        sigs = info["signatures"]
        warn = " (signatures differ: these scores are not comparable)" if len(sigs) > 1 else ""
        notes.append(f"{esc(name)} is corpus-level, computed once over a template's examples and recomputed on each"
                     f" bootstrap resample (source: {esc(str(info['source']))}); sacreBLEU signature"
                     f" {' ; '.join(map(code, sigs)) or '?'}{warn}.")
    return notes


def _md_runs(board: dict[str, Any]) -> list[str]:
    head = ["Run", "Model", "Revision", "Adapter", "Fold", "Config hash", "Seed", "Bootstrap", "Backend", "Date", "taskmill", "Path"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board["runs"]:
        vals = [r["id"], r["model"], r["model_revision"], r["adapter_hash"] or "-", r["fold"] or "-", r["config_hash"],
                r["seed"], r["bootstrap"], r["backend"], r["date"], r["versions"].get("taskmill", "?"), r["path"]]
        lines.append("| " + " | ".join(_md(str(v)) for v in vals) + " |")
    return lines


def _csv_base(fmt: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"format": fmt, "row": row["label"], "kind": row["kind"], "model": row["model"],
            "model_revision": row["model_revision"], "base_row": row["base"] or ""}


def _csv_rows(board: dict[str, Any], fmt: str, row: dict[str, Any], cluster_of: dict[str, str]) -> list[dict[str, Any]]:
    cells, base = board["scores"][fmt][row["label"]], _csv_base(fmt, row)
    delta = cells["delta"] or {}
    out = []
    if cells["mean"]:
        out.append({**base, "level": "mean", "n": cells["mean"]["n"], **_score(cells["mean"]), **_dci(delta.get("mean"))})
    for name, cell in cells["clusters"].items():
        out.append({**base, "level": "cluster", "cluster": name, **_score(cell), "run": cell["run"], **_dci(delta.get("clusters", {}).get(name))})
    for task, cell in cells["tasks"].items():
        out.append({**base, "level": "task", "cluster": cluster_of.get(task, ""), "task": task, "metric": "/".join(cell["metrics"]),
                    "n": cell["n"], **_score(cell), "run": cell["run"], **_dci(delta.get("tasks", {}).get(task))})
        for tpl in cells["templates"].get(task, []):
            out.append({**base, "level": "template", "cluster": cluster_of.get(task, ""), "task": task,
                        "template_id": tpl["template_id"], "template_name": tpl["template_name"], "metric": tpl["metric"],
                        "n": tpl["n"], **_score(tpl), "run": cell["run"]})
    return out


def _score(cell: dict[str, Any]) -> dict[str, Any]:
    ci = cell.get("ci95") or (None, None)
    return {"score": cell["score"], "ci_low": ci[0], "ci_high": ci[1]}


def _dci(cell: dict[str, Any] | None) -> dict[str, Any]:
    if not cell:
        return {}
    ci = cell.get("ci95") or (None, None)
    return {"delta": cell["delta"], "delta_ci_low": ci[0], "delta_ci_high": ci[1]}


def to_csv(board: dict[str, Any]) -> str:
    """One line per (format, row, level, cluster/task/template): see :data:`CSV_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    cluster_of = {t: c["name"] for c in board["clusters"] for t in c["tasks"]}
    for fmt in board["formats"]:
        for row in board["rows"]:
            writer.writerows(_csv_rows(board, fmt, row, cluster_of))
    return buf.getvalue()
