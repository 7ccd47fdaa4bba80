"""The board as one self-contained HTML page: inline CSS and JS, plots as base64 SVG images.

Tables are sortable (click a header) and each held-out cluster column expands into its tasks'
columns (the ``▸ tasks`` button). Every value cell carries its sort key in ``data-v``; missing
cells have none and sort last.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from taskmill.eval.leaderboard.assets import CSS, JS
from taskmill.eval.leaderboard.plots import row_colors
from taskmill.eval.leaderboard.text import columns, metric_notes, ranked

PLOT_CAPTIONS = {
    "clusters": "Score per held-out cluster: median over templates per task, mean over the cluster's tasks; bars show 95% bootstrap intervals.",
    "tasks": "Score per task (median over templates); bars show 95% bootstrap intervals.",
    "spread": "Spread across templates: one dot per template, box = quartiles of the templates' scores.",
}


def _num(x: float) -> str:
    return f"{x:.1f}".replace("-", "\u2212")


def _ci_html(ci: list[float] | None, signed: bool = False) -> str:
    if not ci:
        return ""
    f = (lambda v: ("+" if v >= 0 else "") + _num(v)) if signed else _num
    return f' <span class="ci">[{f(ci[0])}, {f(ci[1])}]</span>'


def _delta_html(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    ci = d["ci95"]
    sig = bool(ci) and (ci[0] > 0 or ci[1] < 0)
    cls = "pos" if d["delta"] > 0 else "neg" if d["delta"] < 0 else "zero"
    title = "paired bootstrap 95% interval" + (" excludes 0" if sig else "") if ci else "no paired interval (examples differ or are missing)"
    sign = "+" if d["delta"] >= 0 else ""
    return (f'<div class="delta {cls}{" sig" if sig else ""}" title="{title}">\u0394 {sign}{_num(d["delta"])}'
            f'{_ci_html(ci, signed=True)}</div>')


def _value_td(cell: dict[str, Any] | None, delta: dict[str, Any] | None, classes: str) -> str:
    if cell is None:
        return f'<td class="{classes}"><span class="missing">\u2013</span></td>'
    body = f'<div class="score">{_num(cell["score"])}{_ci_html(cell.get("ci95"))}</div>{_delta_html(delta)}'
    return f'<td class="{classes}" data-v="{cell["score"]:.4f}">{body}</td>'


def _head(groups: list[tuple[str | None, list[str]]], over: str) -> str:
    cells = ['<th class="num" data-type="num" data-col="rank" title="Rank by mean">#</th>',
             '<th class="text" data-type="text" data-col="model">Model</th>',
             '<th class="text" data-type="text" data-col="kind">Kind</th>',
             f'<th data-type="num" data-col="mean" aria-sort="descending" title="Mean over {over}">Mean</th>',
             '<th data-type="num" data-col="delta" title="Mean delta vs the base model">\u0394 vs base</th>']
    for g, (name, tasks) in enumerate(groups):
        if over == "clusters":
            button = f'<button class="expand" type="button" data-group="g{g}" aria-expanded="false">\u25B8 tasks</button>'
            col = f"cluster:{name}" if name else "unclustered"
            cells.append(f'<th class="cluster" data-type="num" data-col="{escape(col)}">{escape(name or "unclustered")}{button}</th>')
            cells += [f'<th class="task-col g{g}" data-type="num" data-col="task:{escape(t)}" title="task of {escape(name or "no cluster")}">'
                      f'{escape(t)}</th>' for t in tasks]
        else:
            cells += [f'<th data-type="num" data-col="task:{escape(t)}">{escape(t)}</th>' for t in tasks]
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def _body_row(rank: int, row: dict, cells: dict, groups: list, over: str, color: str) -> str:
    delta = cells["delta"] or {}
    mean_delta = delta.get("mean")
    tds = [f'<td data-v="{rank}">{rank}</td>',
           f'<td class="text label" data-v="{escape(row["label"])}"><span class="swatch" style="background:{color}"></span>{escape(row["label"])}</td>',
           f'<td class="text" data-v="{row["kind"]}"><span class="pill {row["kind"]}">{row["kind"]}</span></td>',
           _value_td(cells["mean"], None, "mean")]
    tds.append(_delta_td(mean_delta))
    for g, (name, tasks) in enumerate(groups):
        if over == "clusters":
            tds.append(_value_td(cells["clusters"].get(name) if name else None, delta.get("clusters", {}).get(name), "cluster"))
            tds += [_value_td(cells["tasks"].get(t), delta.get("tasks", {}).get(t), f"task-col g{g}") for t in tasks]
        else:
            tds += [_value_td(cells["tasks"].get(t), delta.get("tasks", {}).get(t), "") for t in tasks]
    base = f' title="deltas vs {escape(row["base"])}"' if row["base"] else ""
    return f'<tr data-order="{rank}" data-row="{escape(row["label"])}"{base}>' + "".join(tds) + "</tr>"


def _delta_td(d: dict[str, Any] | None) -> str:
    if not d:
        return '<td><span class="missing">\u2013</span></td>'
    return f'<td data-v="{d["delta"]:.4f}">{_delta_html(d)}</td>'


def _board_table(board: dict, fmt: str, colors: dict[str, str]) -> str:
    over, groups = board["options"]["mean_over"], columns(board)
    cells = board["scores"][fmt]
    rows = [_body_row(i, row, cells[row["label"]], groups, over, colors[row["label"]]) for i, row in enumerate(ranked(board, fmt), 1)]
    return (f'<div class="table-wrap"><table class="board sortable" id="board-{escape(fmt)}">{_head(groups, over)}'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _templates_table(board: dict, fmt: str) -> str:
    cells, rows = board["scores"][fmt], ranked(board, fmt)
    head = '<th class="text" data-type="text">Task</th><th class="text" data-type="text">Template</th>' + "".join(
        f'<th data-type="num">{escape(r["label"])}</th>' for r in rows)
    keys = sorted({(t, p["template_id"], p["template_name"]) for r in rows for t, ps in cells[r["label"]]["templates"].items() for p in ps})
    body = []
    for order, (task, tid, tname) in enumerate(keys, 1):
        tds = [f'<td class="text" data-v="{escape(task)}">{escape(task)}</td>',
               f'<td class="text" data-v="{escape(tname)}" title="{escape(tid)}">{escape(tname)}</td>']
        for r in rows:
            hit = next((p for p in cells[r["label"]]["templates"].get(task, []) if p["template_id"] == tid), None)
            tds.append(_value_td(hit, None, ""))
        body.append(f'<tr data-order="{order}">' + "".join(tds) + "</tr>")
    return (f'<details><summary>Per-template scores ({len(keys)} templates)</summary><div class="table-wrap">'
            f'<table class="sortable templates"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div></details>')


def _figure(svg: str, kind: str, fmt: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    caption = escape(PLOT_CAPTIONS[kind])
    return (f'<figure class="plot plot-{kind}"><img alt="{escape(kind)} plot ({escape(fmt)})" '
            f'src="data:image/svg+xml;base64,{data}"><figcaption>{caption}</figcaption></figure>')


RUN_COLUMNS = (("id", "Run"), ("model", "Model"), ("model_revision", "Revision"), ("adapter_hash", "Adapter"),
               ("fold", "Fold"), ("config_hash", "Config hash"), ("seed", "Seed"), ("bootstrap", "Bootstrap"),
               ("backend", "Backend"), ("n_examples", "Examples"), ("date", "Date"), ("path", "Path"))


def _runs_table(board: dict) -> str:
    row_of = {run_id: r["label"] for r in board["rows"] for run_id in r["runs"]}
    head = '<th class="text" data-type="text">Row</th>' + "".join(
        f'<th class="text" data-type="{"num" if k in ("seed", "bootstrap", "n_examples") else "text"}">{t}</th>' for k, t in RUN_COLUMNS)
    head += '<th class="text" data-type="text">taskmill</th>'
    body = []
    for order, run in enumerate(board["runs"], 1):
        vals = [row_of[run["id"]]] + [run[k] if run[k] not in (None, "") else "\u2013" for k, _ in RUN_COLUMNS]
        vals.append(run["versions"].get("taskmill", "?"))
        tds = "".join(f'<td class="text" data-v="{escape(str(v))}"><code>{escape(str(v))}</code></td>' if i in (1, 3, 4, 6)
                      else f'<td class="text" data-v="{escape(str(v))}">{escape(str(v))}</td>' for i, v in enumerate(vals))
        body.append(f'<tr data-order="{order}">{tds}</tr>')
    return (f'<div class="table-wrap"><table class="sortable runs" id="runs"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _format_section(board: dict, fmt: str, svgs: dict[str, str], colors: dict[str, str]) -> str:
    figs = '<div class="plots">' + "".join(_figure(svg, kind, fmt) for kind, svg in svgs.items()) + "</div>"
    return (f'<section class="format" id="fmt-{escape(fmt)}"><h2>{escape(fmt)}</h2>{_board_table(board, fmt, colors)}'
            f'{figs}{_templates_table(board, fmt)}</section>')


def _intro(board: dict) -> str:
    over, opts = board["options"]["mean_over"], board["options"]
    notes = "".join(f'<p class="note metric">{n}</p>' for n in metric_notes(board, lambda sig: f"<code>{escape(sig)}</code>", escape))
    drill = " Click <b>\u25B8 tasks</b> in a cluster's header to show its tasks." if over == "clusters" else ""
    return (f'<p class="note">Scores are 0\u2013100. Task = median over its templates; cluster = mean of its tasks; '
            f'Mean = mean over the {over} a row has. Grey brackets: 95% bootstrap intervals (examples resampled '
            f'within templates). \u0394 = instruction-tuned minus the base model (same revision), with a paired '
            f'bootstrap interval ({opts["bootstrap"]} resamples, seed {opts["seed"]}); bold when it excludes 0. '
            f'Click a column header to sort.{drill}</p>{notes}')


def page(board: dict[str, Any], svgs: dict[str, dict[str, str]]) -> str:
    """The whole page; ``svgs`` maps format -> plot kind -> SVG text."""
    colors = row_colors([r["label"] for r in board["rows"]])
    made = ", ".join(f"{escape(k)} {escape(v)}" for k, v in board["produced_by"].items())
    formats = board["formats"]
    nav = ('<nav class="formats">' + "".join(f'<a href="#fmt-{escape(f)}">{escape(f)}</a>' for f in formats) + "</nav>") if len(formats) > 1 else ""
    groups = len(columns(board))
    show = "".join(f"table.show-g{g} .task-col.g{g} {{ display: table-cell; }}\n" for g in range(groups))
    sections = "".join(_format_section(board, f, svgs.get(f, {}), colors) for f in formats)
    dates = sorted(r["date"] for r in board["runs"])
    span = f"{dates[0]} \u2013 {dates[-1]}" if dates and dates[0] != dates[-1] else (dates[0] if dates else "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="taskmill report">
<title>taskmill leaderboard</title>
<style>{CSS}{show}</style>
</head>
<body>
<header><h1>taskmill leaderboard</h1>
<p class="sub">{len(board["runs"])} runs \u00b7 {len(board["rows"])} rows \u00b7 {len(board["clusters"])} held-out clusters \u00b7 formats: {escape(", ".join(formats))} \u00b7 runs finished {escape(span)}</p></header>
<main>
{_intro(board)}{nav}{sections}
<section id="runs-section"><h2>Runs</h2>{_runs_table(board)}</section>
</main>
<footer>Produced by {made} from {len(board["runs"])} results files. Dates are when each run's results were written (see the Runs table), not when this page was made.</footer>
<script>{JS}</script>
</body>
</html>
"""
