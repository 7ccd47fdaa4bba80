"""The resumable per-example cache and the results store.

Cache (``cache.jsonl``): one line per evaluated row, ``{"key": ..., "raw": ...}``, appended and
flushed to disk after every chunk of rows. The key hashes (model revision, adapter hash, template
id, instance id, format, request hash); the request hash covers the prompt text, the choices and the
scoring options, so a changed prompt is never answered from a stale entry. A run killed mid-write
leaves at most one truncated last line, which is ignored on load: that row is simply asked again.

Results (``OUT/``):

- ``examples.jsonl`` and ``examples.parquet``: one record per row (schema in the README, "Eval
  results"): ids, task/template/format, prediction(s), target, scores, corpus-metric statistics
  (``stats``) and the raw log-probs;
- ``results.json``: versions, resolved config, config hash, seed, model revision, adapter hash,
  each metric's level, source and sacreBLEU signature (``metric_info``) and the per-template /
  per-task / per-cluster summaries.

Every file is written through :mod:`taskmill.fileio` (a temporary name, then a rename), so a reader
never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from taskmill.fileio import write_atomic


def cache_key(model_revision: str, adapter_hash: str, template_id: str, instance_id: str, fmt: str, req_hash: str) -> str:
    """The cache key of one row's evaluation (40 hex digits)."""
    parts = [model_revision, adapter_hash, template_id, instance_id, fmt, req_hash]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


class ResultCache:
    """Append-only JSONL map from cache key to raw backend answers.

    Args:
        path: The cache file; created (with its folder) on first write.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.dropped_lines = 0
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        with self.path.open("r", encoding="utf-8") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                    self.entries[obj["key"]] = obj["raw"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    # A run killed mid-append leaves one partial line; its row is recomputed.
                    self.dropped_lines += 1

    def get(self, key: str) -> dict[str, Any] | None:
        """The raw record for ``key``, or None."""
        return self.entries.get(key)

    def put_many(self, items: Mapping[str, dict[str, Any]]) -> None:
        """Append ``key -> raw`` records and force them to disk."""
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.is_file() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        with self.path.open("a", encoding="utf-8") as fh:
            if needs_newline:
                fh.write("\n")  # isolate a truncated line left by a killed run
            for key, raw in items.items():
                fh.write(json.dumps({"key": key, "raw": raw}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries.update(items)

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"


def write_parquet(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Write records as Parquet (scores flattened to ``score_<metric>`` columns; ``prediction``,
    ``target``, ``raw`` and ``stats`` JSON-encoded), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = []
    for rec in records:
        row = {k: v for k, v in rec.items() if k not in ("scores", "predictions", "raw", "stats")}
        # Choice rows hold indices, generation rows text: one JSON-encoded column for both.
        row["prediction"] = json.dumps(rec["prediction"], ensure_ascii=False)
        row["target"] = json.dumps(rec["target"], ensure_ascii=False)
        row["raw"] = json.dumps(rec["raw"], ensure_ascii=False)
        row["stats"] = json.dumps(rec.get("stats") or {}, sort_keys=True)
        for name, value in rec["scores"].items():
            row[f"score_{name}"] = value
        flat.append(row)
    columns = sorted({k for row in flat for k in row}, key=lambda k: (k.startswith("score_"), k))
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in flat])
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed version of each package, in the given order (missing ones left out)."""
    import importlib.metadata as md

    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out
