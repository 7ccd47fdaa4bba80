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

from taskmill.errors import DataError

RESULTS_SCHEMA = "taskmill.eval.results/"
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
    if missing or not str(results.get("schema", "")).startswith(RESULTS_SCHEMA):
        what = f"missing {', '.join(missing)}" if missing else f"schema '{results.get('schema')}'"
        raise DataError(f"{what}: expected a results file of schema {RESULTS_SCHEMA}1 (from `taskmill eval`)", file=str(path))
    label = label or results.get("label") or results["config"].get("label") or None
    date, source = _run_date(path, results)
    return Run(hashlib.sha256(data).hexdigest()[:12], path, label, results, date, source)


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


def load_examples(run: Run) -> dict[tuple[str, str, str], dict[str, float]] | None:
    """Primary scores of a run's examples, ``(task, format, template_id) -> {example id: score}``.

    Read from ``examples.jsonl`` beside ``results.json``; None when that file is absent.

    Raises:
        DataError: A line is not an example record (names file and line).
    """
    path = run.path.with_name("examples.jsonl")
    if not path.is_file():
        return None
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                key = (ex["task"], ex["format"], ex["template_id"])
                out.setdefault(key, {})[ex["id"]] = float(ex["scores"][ex["primary"]])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise DataError(f"not an eval example ({type(err).__name__}: {err})", file=str(path), row=f"line {lineno}") from None
    return out
