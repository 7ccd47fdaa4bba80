"""Finding and reading ``results.json`` files (written by ``taskmill eval``) as :class:`Run` records.

An input on the command line is a ``results.json`` file, a folder searched recursively for them,
or either prefixed with a row label (``LABEL=PATH``) that names the leaderboard row its runs go to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from taskmill.errors import DataError
from taskmill.eval.metrics import metric_level

RESULTS_SCHEMA = "taskmill.eval.results/"
# Schemas read. /1 files averaged sentence BLEU/chrF; they are read only when they hold neither.
READ_SCHEMAS = ("taskmill.eval.results/1", "taskmill.eval.results/2")
REQUIRED_KEYS = ("schema", "config", "config_hash", "model_revision", "adapter_hash", "per_template", "per_task", "per_cluster")
# Keys a results file may carry with the time it was produced; the file's mtime is the fallback.
DATE_KEYS = ("finished_at", "created_at", "date")


@dataclass(frozen=True)
class Run:
    """One evaluation run: one ``results.json``.

    Attributes:
        id: First 12 hex digits of the file's SHA-256 (two copies of a file are one run).
        path: The ``results.json`` file.
        label: Explicit row label (``LABEL=PATH`` or a ``label`` key in the file), or None.
        results: The parsed file.
        date: When the run finished (UTC, ISO 8601), from the file itself or its mtime.
        date_source: ``results.json:<key>`` or ``mtime``.
    """

    id: str
    path: Path
    label: str | None
    results: dict[str, Any]
    date: str
    date_source: str

    @property
    def model(self) -> str:
        """A short model name: the model folder's or file's name, or the hub id's last part."""
        name = Path(str(self.results["config"].get("model") or self.results["model_revision"])).name
        return name[: -len(".gguf")] if name.endswith(".gguf") else name

    @property
    def tuned(self) -> bool:
        """True when an adapter was evaluated on top of the base model."""
        return bool(self.results["adapter_hash"])

    @property
    def fold(self) -> str | None:
        """The fold file's name (without ``.json``) the run was restricted to, if any."""
        fold = self.results["config"].get("fold")
        return Path(fold).stem if fold else None


def split_label(arg: str) -> tuple[str | None, Path]:
    """``LABEL=PATH`` -> (LABEL, PATH); a bare path (even one holding ``=``) -> (None, PATH)."""
    if "=" in arg and not Path(arg).exists():
        label, _, path = arg.partition("=")
        if label.strip():
            return label.strip(), Path(path)
    return None, Path(arg)


def find_results(path: Path) -> list[Path]:
    """The results files an input names: the file itself, or every ``results.json`` below a folder.

    Raises:
        DataError: The path does not exist, or a folder holds no ``results.json``.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError("no such file or folder: expected a results.json or a folder holding some", file=str(path))
    found = sorted(p for p in path.rglob("results.json") if p.is_file())
    if not found:
        raise DataError("no results.json below this folder: expected the output folder of `taskmill eval`", file=str(path))
    return found


def _run_date(path: Path, results: dict[str, Any]) -> tuple[str, str]:
    for key in DATE_KEYS:
        if isinstance(results.get(key), str) and results[key]:
            return results[key], f"results.json:{key}"
    stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), "mtime"


def load_run(path: Path, label: str | None = None) -> Run:
    """Read and check one results file.

    Raises:
        DataError: Not JSON, or not a ``taskmill eval`` results file (names what is missing).
    """
    data = path.read_bytes()
    try:
        results = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not JSON ({err}): expected a results.json written by `taskmill eval`", file=str(path)) from None
    if not isinstance(results, dict):
        raise DataError("not a JSON object: expected a results.json written by `taskmill eval`", file=str(path))
    missing = [k for k in REQUIRED_KEYS if k not in results]
    if missing or results.get("schema") not in READ_SCHEMAS:
        what = f"missing {', '.join(missing)}" if missing else f"schema '{results.get('schema')}'"
        raise DataError(f"{what}: expected a results file of schema {READ_SCHEMAS[-1]} (from `taskmill eval`)", file=str(path))
    _check_old_corpus_metrics(path, results)
    label = label or results.get("label") or results["config"].get("label") or None
    date, source = _run_date(path, results)
    return Run(hashlib.sha256(data).hexdigest()[:12], path, label, results, date, source)


def _check_old_corpus_metrics(path: Path, results: dict[str, Any]) -> None:
    """Refuse a /1 file that scored BLEU or chrF: its numbers are means of sentence scores."""
    if results["schema"] != READ_SCHEMAS[0]:
        return
    old = sorted({m for t in results["per_template"] for m in t.get("metrics", {}) if metric_level(m) == "corpus"})
    if old:
        raise DataError(f"schema {READ_SCHEMAS[0]} averaged sentence-level {', '.join(old)}: re-run `taskmill eval` with the"
                        " same --out (answers are cached, no model call) to get corpus-level scores", file=str(path))


def load_runs(inputs: Sequence[str]) -> list[Run]:
    """Every run the inputs name, in input order then path order; duplicates (same bytes) once.

    Raises:
        DataError: An input is missing or holds no valid results; the same run given two labels.
    """
    if not inputs:
        raise DataError("no results given: expected results.json files or folders holding them")
    runs: dict[str, Run] = {}
    for arg in inputs:
        label, path = split_label(arg)
        for file in find_results(path):
            run = load_run(file, label)
            seen = runs.get(run.id)
            if seen is not None and seen.label != run.label:
                raise DataError(f"this run is also given as {seen.path} with label '{seen.label}'", file=str(file))
            runs.setdefault(run.id, run)
    return list(runs.values())


@dataclass(frozen=True)
class TemplateExamples:
    """One template's examples, as the statistic of its primary metric needs them.

    Attributes:
        metric: The primary metric.
        values: Example id -> its score (per-example metric) or its sacreBLEU segment statistics
            (corpus-level metric).
    """

    metric: str
    values: dict[str, Any]

    def array(self, ids: Sequence[str]) -> np.ndarray:
        """The values of ``ids`` in that order: (n,) scores, or (n, k) statistics."""
        if metric_level(self.metric) == "corpus":
            return np.array([self.values[i] for i in ids], dtype=np.int64).reshape(len(ids), -1)
        return np.array([self.values[i] for i in ids], dtype=float)


def _example_value(ex: dict[str, Any]) -> Any:
    metric = ex["primary"]
    if metric_level(metric) == "corpus":
        return [int(x) for x in ex["stats"][metric]]  # KeyError when an example lacks them
    return float(ex["scores"][metric])


def load_examples(run: Run) -> dict[tuple[str, str, str], TemplateExamples] | None:
    """A run's examples by ``(task, format, template_id)``, with what its primary metric's statistic needs.

    Read from ``examples.jsonl`` beside ``results.json``; None when that file is absent.

    Raises:
        DataError: A line is not an example record, or its template mixes primary metrics (names
            file and line).
    """
    path = run.path.with_name("examples.jsonl")
    if not path.is_file():
        return None
    out: dict[tuple[str, str, str], TemplateExamples] = {}
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                key = (ex["task"], ex["format"], ex["template_id"])
                group = out.setdefault(key, TemplateExamples(ex["primary"], {}))
                if group.metric != ex["primary"]:
                    raise ValueError(f"primary metric '{ex['primary']}' but '{group.metric}' earlier in this template")
                group.values[ex["id"]] = _example_value(ex)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise DataError(f"not an eval example ({type(err).__name__}: {err})", file=str(path), row=f"line {lineno}") from None
    return out
