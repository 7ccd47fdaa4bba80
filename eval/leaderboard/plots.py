"""The board's two plots as SVG text: score per held-out cluster, and spread across templates.

Figures are drawn with matplotlib's object API (no pyplot, no global backend switch) and saved as
SVG with a fixed hash salt and no date, so the same board gives byte-identical files.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

PALETTE = ("#3b6fb6", "#e07b39", "#4a9a5b", "#c2464b", "#7d5ba6", "#8c6d4f", "#d479b5", "#6f7378", "#b3a93a", "#3aa6b3")
SVG_RC = {"svg.hashsalt": "taskmill-leaderboard", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9}


def _figure(n_groups: int, n_rows: int) -> tuple[Any, Any]:
    """A figure wide enough for ``n_groups`` groups of ``n_rows`` bars, and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(14.0, max(6.4, 1.2 + n_groups * (0.3 * n_rows + 0.5))), 3.6), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Any) -> str:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    with matplotlib.rc_context(SVG_RC):
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": "taskmill"})
    return buf.getvalue()


def row_colors(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour per row, in board order."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _finish(fig: Any, ax: Any, groups: Sequence[str], ylabel: str, title: str) -> str:
    """Axes styled, titled and with the row legend; the figure as SVG text."""
    _style_axes(ax, groups, ylabel)
    ax.set_title(title, loc="left", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return _svg(fig)


def _style_axes(ax: Any, groups: Sequence[str], ylabel: str) -> None:
    names = [g if len(g) <= 18 else g[:17] + "…" for g in groups]
    # Slanted when the names would not fit side by side under their bars (about 12 characters each).
    slant = len(groups) > 4 or max((len(n) for n in names), default=0) > 12
    ax.set_xticks(range(len(groups)), names, rotation=20 if slant else 0, ha="right" if slant else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", color="#dde1e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def cluster_plot(cells: dict[str, dict], labels: Sequence[str], groups: Sequence[str], level: str) -> str:
    """Grouped bars: one group per cluster (or task), one bar per row, 95% intervals as error bars.

    Args:
        cells: Row label -> that row's cells for one format (``clusters``/``tasks`` -> cell).
        labels: Rows, in board order.
        groups: Clusters (or tasks when the board has no clusters), in column order.
        level: ``clusters`` or ``tasks``.
    """
    with _rc():
        fig, ax = _figure(len(groups), len(labels))
        colors, width = row_colors(labels), 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            xs, ys, err = [], [], [[], []]
            for g, name in enumerate(groups):
                cell = cells[label][level].get(name)
                if cell is None:
                    continue
                xs.append(g - 0.4 + width * (i + 0.5))
                ys.append(cell["score"])
                lo, hi = cell["ci95"] or (cell["score"], cell["score"])
                err[0].append(max(0.0, cell["score"] - lo))
                err[1].append(max(0.0, hi - cell["score"]))
            ax.bar(xs, ys, width * 0.92, yerr=err, color=colors[label], label=label, capsize=2,
                   error_kw={"elinewidth": 0.9, "ecolor": "#333333"})
        return _finish(fig, ax, groups, "score (median over templates)",
                       f"Score per held-out {level[:-1]} (95% bootstrap interval)")


def spread_plot(cells: dict[str, dict], labels: Sequence[str], tasks: Sequence[str]) -> str:
    """Per task and row, a box over the templates' scores with each template as a dot."""
    with _rc():
        fig, ax = _figure(len(tasks), len(labels))
        colors, width = row_colors(labels), 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            legend_label: str | None = label  # once per row
            for t, task in enumerate(tasks):
                tpls = cells[label]["templates"].get(task)
                if not tpls:
                    continue
                x = t - 0.4 + width * (i + 0.5)
                scores = [p["score"] for p in tpls]
                if len(scores) > 1:
                    ax.boxplot([scores], positions=[x], widths=width * 0.8, showfliers=False, patch_artist=True,
                               boxprops={"facecolor": colors[label] + "33", "edgecolor": colors[label]},
                               medianprops={"color": colors[label], "linewidth": 1.6},
                               whiskerprops={"color": colors[label]}, capprops={"color": colors[label]})
                # Evenly spaced offsets rather than random jitter: deterministic and readable.
                offsets = [width * 0.5 * (k / max(1, len(scores) - 1) - 0.5) for k in range(len(scores))]
                ax.scatter([x + o for o in offsets], scores, s=12, color=colors[label], zorder=3, label=legend_label)
                legend_label = None
        return _finish(fig, ax, tasks, "score per template", "Spread across templates, per task")


def _rc() -> Any:
    try:
        import matplotlib
    except ImportError:
        from taskmill.errors import TaskmillError

        raise TaskmillError("leaderboard plots need matplotlib, which is not installed: pip install matplotlib") from None
    return matplotlib.rc_context(SVG_RC)
