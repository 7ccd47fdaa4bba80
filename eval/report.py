"""What ``taskmill eval`` prints, and the bridge from CLI options to :class:`EvalConfig`."""

from __future__ import annotations

import codecs
from typing import Any

from taskmill.eval.metrics import DEFAULT_SQUAD
from taskmill.eval.runner import EVAL_FORMATS, EvalConfig, evaluate


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text leaderboard: one line per task (median over templates) and per cluster."""
    lines = [
        f"model {summary['model_revision']}" + (f" + adapter {summary['adapter_hash']}" if summary["adapter_hash"] else "")
        + f"  ({summary['backend']}, {summary['prompt_style']['kind']} prompts, {summary['n_examples']} examples,"
        f" {summary.get('rows_evaluated', 0)} evaluated now, {summary.get('model_calls', 0)} backend calls)",
        f"{'task':30s} {'format':18s} {'metric':10s} {'median':>7s} {'95% CI':>15s} {'min':>6s} {'max':>6s} {'tpl':>4s}",
    ]
    for t in summary["per_task"]:
        ci = f"[{t['ci95'][0]:.1f}, {t['ci95'][1]:.1f}]" if t["ci95"] else "-"
        lines.append(
            f"{t['task'][:30]:30s} {t['format']:18s} {'/'.join(t['metrics'])[:10]:10s} {t['score']:7.2f} {ci:>15s}"
            f" {t['spread']['min']:6.1f} {t['spread']['max']:6.1f} {t['n_templates']:4d}"
        )
    for c in summary["per_cluster"]:
        ci = f"[{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}]" if c["ci95"] else "-"
        lines.append(f"cluster {c['cluster'][:22]:22s} {c['format']:18s} {'mean':10s} {c['score']:7.2f} {ci:>15s}")
    for name, info in summary.get("metric_info", {}).items():
        if info["level"] == "corpus":
            lines.append(f"{name}: corpus-level per template, sacreBLEU {info['signature']}")
    return "\n".join(lines)


def cli_eval(
    corpus: str, *, model: str, out: str, backend: str = "hf", adapter: str | None = None,
    formats: list[str] | None = None, tasks: list[str] | None = None, fold: str | None = None,
    clusters: str | None = None, limit: int | None = None, prompt_style: str = "auto", separator: str = "\\n",
    calibrate: bool = False, max_new_tokens: int = 64, seed: int = 0, bootstrap: int = 1000, squad: str = DEFAULT_SQUAD,
    cache: str | None = None, options: dict[str, Any] | None = None, overwrite: bool = False,
) -> str:
    """Run ``taskmill eval`` and return the text to print.

    ``separator`` takes backslash escapes (``"\\n"`` is a newline), as typed on a command line.
    """
    config = EvalConfig(
        corpus=corpus, out=out, model=model, adapter=adapter, backend=backend,
        backend_options={k: v for k, v in (options or {}).items() if v is not None},
        formats=tuple(formats or EVAL_FORMATS), tasks=tuple(tasks or ()), fold=fold, clusters=clusters, limit=limit,
        prompt_style=prompt_style, separator=codecs.decode(separator, "unicode_escape"), calibrate=calibrate,
        max_new_tokens=max_new_tokens, seed=seed, bootstrap=bootstrap, cache=cache, squad=squad,
    )
    summary = evaluate(config, overwrite=overwrite)
    return format_summary(summary) + f"\nwrote {out}/results.json, examples.jsonl, examples.parquet"
