"""``taskmill report``: merge eval results into one leaderboard folder.

``OUT/`` gets ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``, ``leaderboard.html``
(self-contained) and ``plots/{clusters,tasks,spread}-<format>.svg``. Everything is written to a
temporary folder first and moved into place, so a failed report leaves the old board untouched.
Nothing depends on the current time: the same results give byte-identical files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from taskmill.fileio import OutputFolder, atomic_dir, claim_output
from taskmill.eval.leaderboard.board import build_board
from taskmill.eval.leaderboard.html import page
from taskmill.eval.leaderboard.load import load_runs
from taskmill.eval.leaderboard.plots import cluster_plot, spread_plot
from taskmill.eval.leaderboard.text import columns, markdown, to_csv

OUTPUTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html")


def make_plots(board: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Format -> plot kind -> SVG text: score per cluster (or task) and spread across templates."""
    labels = [r["label"] for r in board["rows"]]
    over = board["options"]["mean_over"]
    tasks = [t for _, ts in columns(board) for t in ts]
    groups = [c["name"] for c in board["clusters"]] if over == "clusters" else tasks
    out = {}
    for fmt in board["formats"]:
        cells = board["scores"][fmt]
        out[fmt] = {over: cluster_plot(cells, labels, groups, over), "spread": spread_plot(cells, labels, tasks)}
    return out


def render(board: dict[str, Any]) -> dict[str, str]:
    """Relative file path -> text of every file of the report."""
    svgs = make_plots(board)
    files = {f"plots/{kind}-{fmt}.svg": svg for fmt, kinds in svgs.items() for kind, svg in kinds.items()}
    plot_paths = {fmt: {kind: f"plots/{kind}-{fmt}.svg" for kind in kinds} for fmt, kinds in svgs.items()}
    files["leaderboard.md"] = markdown(board, plot_paths)
    files["leaderboard.csv"] = to_csv(board)
    files["leaderboard.json"] = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
    files["leaderboard.html"] = page(board, svgs)
    return files


def _write_all(out: OutputFolder, files: dict[str, str]) -> None:
    with atomic_dir(out.path, marker=out.write_marker) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8", newline="\n")


def write_report(inputs: Sequence[str], out: str | Path, *, bootstrap: int = 1000, seed: int = 0,
                 overwrite: bool = False) -> dict[str, Any]:
    """Build the leaderboard of ``inputs`` and write it under ``out``.

    Args:
        inputs: ``results.json`` files or folders holding them (searched recursively), each
            optionally as ``LABEL=PATH`` to name the row its runs go to.
        out: The report folder.
        bootstrap: Resamples of the paired intervals of tuned-minus-base deltas (0: none).
        seed: Seed of those resamples.
        overwrite: Replace ``out`` even when it is not an earlier report folder.

    Returns:
        The board (the content of ``leaderboard.json``).

    Raises:
        DataError: An input is missing or malformed, or runs cannot be merged (names the file).
    """
    out = Path(out)
    target = claim_output(out, "report", inputs=[i.split("=", 1)[-1] for i in inputs], overwrite=overwrite)
    runs = load_runs(inputs)
    paths = {run.id: os.path.relpath(run.path.resolve(), out.resolve()) for run in runs}
    board = build_board(runs, paths, n_boot=bootstrap, seed=seed)
    _write_all(target, render(board))
    return board


def summary_text(board: dict[str, Any], out: str | Path) -> str:
    """What ``taskmill report`` prints: the ranking per format and where the files are."""
    from taskmill.eval.leaderboard.text import fmt_delta, fmt_score, ranked

    lines = [f"{len(board['runs'])} runs -> {len(board['rows'])} rows, {len(board['clusters'])} held-out clusters"]
    for fmt in board["formats"]:
        lines.append(f"{fmt}:")
        for rank, row in enumerate(ranked(board, fmt), 1):
            cells = board["scores"][fmt][row["label"]]
            delta = fmt_delta((cells["delta"] or {}).get("mean"))
            lines.append(f"  {rank:2d}. {row['label'][:40]:40s} mean {fmt_score(cells['mean']):18s} {delta}".rstrip())
    lines.append(f"wrote {Path(out) / 'leaderboard.html'} (and .md, .csv, .json, plots/)")
    return "\n".join(lines)


def cli_report(inputs: Sequence[str], out: str, *, bootstrap: int = 1000, seed: int = 0, overwrite: bool = False) -> str:
    """Run ``taskmill report`` and return the text to print."""
    return summary_text(write_report(inputs, out, bootstrap=bootstrap, seed=seed, overwrite=overwrite), out)
