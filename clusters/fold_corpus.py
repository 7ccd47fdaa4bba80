"""Write a fold's training corpus and held-out corpus from a folds folder (for builders and eval).

``write_fold_corpora(folds_dir, "cluster:sentiment", out)`` writes::

    out/train/corpus.jsonl   rows of the fold's train tasks, minus the rows its guards removed
    out/test/corpus.jsonl    rows of the fold's test tasks (all splits present in the corpus)
    out/{train,test}/manifest.json   fold, part, tasks, row counts, the source corpus, and the source
                                     manifest's ``templates`` entries of the part's tasks (their
                                     recorded fields and masked template texts, for clustering)

Both files use the corpus schema, in the source corpus's row order, so the trainer and eval read
them like any corpus. The source corpus must be byte-identical to the one the folds were made
from (its sha256 is checked). ``folds.yaml`` names it relative to its own folder (files written
before ``taskmill_folds: 2`` hold the path as it was given, absolute or relative to the directory
``folds make`` ran in), so this works from any working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskmill.clusters.corpus import corpus_file, iter_rows, write_rows
from taskmill.clusters.folds import FOLDS_FILE, relative_to
from taskmill.clusters.manifest import load_yaml
from taskmill.clusters.schema import template_entries
from taskmill.errors import ConfigError, DataError
from taskmill.records import Fold


@dataclass(frozen=True)
class FoldEntry:
    """A fold as read back from ``folds.yaml``: the record, its kind, the removed row ids."""

    fold: Fold
    kind: str
    removed_rows: frozenset[str]


def _fold_from_yaml(raw: dict[str, Any], folds_dir: Path) -> FoldEntry:
    fold = Fold(
        name=raw["name"],
        held_out=tuple(raw.get("held_out") or ()),
        train_tasks=tuple(raw["train_tasks"]),
        test_tasks=tuple(raw["test_tasks"]),
        excluded=dict(raw.get("excluded") or {}),
        leakage={k: int(v) for k, v in (raw.get("leakage") or {}).items()},
    )
    removed_file = folds_dir / raw.get("removed_rows", "")
    removed = frozenset(removed_file.read_text(encoding="utf-8").split()) if removed_file.is_file() else frozenset()
    return FoldEntry(fold, str(raw.get("kind", "cluster")), removed)


def _resolve(entry: Any, folder: Path, version: Any) -> Any:
    # A {path, sha256} entry with its path made usable from the current directory.
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return entry
    path = Path(entry["path"])
    if not path.is_absolute() and isinstance(version, int) and version >= 2:
        path = folder / path
    return {**entry, "path": str(path)}


def load_folds(folds_dir: str | Path) -> tuple[dict[str, Any], list[FoldEntry]]:
    """Read ``folds.yaml`` (and the removed-row lists) from a folds folder.

    Returns:
        The file's header (corpus, config, manifest; the corpus and manifest paths resolved
        against the folds folder) and the folds in file order.
    """
    folds_dir = Path(folds_dir)
    path = folds_dir / FOLDS_FILE if folds_dir.is_dir() else folds_dir
    raw = load_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("folds"), list):
        raise ConfigError(["expected a folds file written by `taskmill folds make` (a 'folds' list)"], file=str(path))
    try:
        entries = [_fold_from_yaml(f, path.parent) for f in raw["folds"]]
    except (KeyError, TypeError) as err:
        raise ConfigError([f"malformed fold entry: missing {err}"], file=str(path)) from None
    header = {k: v for k, v in raw.items() if k != "folds"}
    for key in ("corpus", "cluster_manifest"):
        if key in header:
            header[key] = _resolve(header[key], path.parent, raw.get("taskmill_folds"))
    corpus = header.get("corpus")
    if not isinstance(corpus, dict) or not isinstance(corpus.get("path"), str) or not isinstance(corpus.get("sha256"), str):
        raise ConfigError(["expected a 'corpus' entry with 'path' and 'sha256'"], file=str(path))
    return header, entries


def find_fold(entries: list[FoldEntry], name: str) -> FoldEntry:
    """The fold called ``name`` (``cluster:<name>`` / ``task:<name>``; a bare name is tried with both)."""
    for candidate in (name, f"cluster:{name}", f"task:{name}"):
        for entry in entries:
            if entry.fold.name == candidate:
                return entry
    raise ConfigError([f"no fold named {name!r}; folds: {', '.join(e.fold.name for e in entries)}"])


def write_fold_corpora(folds_dir: str | Path, fold_name: str, out_dir: str | Path, corpus_dir: str | Path | None = None,
                       *, overwrite: bool = False,
                       loaded: tuple[dict[str, Any], list[FoldEntry]] | None = None) -> dict[str, int]:
    """Write the train and held-out corpora of one fold to ``out_dir`` atomically.

    Args:
        folds_dir: Folder written by :func:`taskmill.clusters.folds.write_folds`.
        fold_name: Fold name (see :func:`find_fold`).
        out_dir: Output folder; gets ``train/`` and ``test/`` corpus folders.
        corpus_dir: Source corpus; defaults to the one recorded in ``folds.yaml``.
        overwrite: Replace ``out_dir`` even when it is not an earlier fold-corpus folder.
        loaded: ``load_folds(folds_dir)``, when the caller already read it (a driver writing every
            fold reads ``folds.yaml`` once, not once per fold).

    Returns:
        Row counts: ``train_rows``, ``test_rows``, ``removed_rows`` (dropped by the near-duplicate guard).

    Raises:
        DataError: The corpus differs from the one the folds were made from.
    """
    from taskmill.fileio import atomic_dir, claim_output, sha256_file, write_json

    header, entries = loaded if loaded is not None else load_folds(folds_dir)
    entry = find_fold(entries, fold_name)
    source = corpus_file(corpus_dir or header["corpus"]["path"])
    target = claim_output(out_dir, "folds corpus", inputs=[folds_dir, source], overwrite=overwrite)
    if sha256_file(source) != header["corpus"]["sha256"]:
        raise DataError("corpus changed since the folds were made (sha256 differs); re-run `taskmill folds make`", file=str(source))
    train_tasks, test_tasks = set(entry.fold.train_tasks), set(entry.fold.test_tasks)
    train, test, removed = [], [], 0
    for row in iter_rows(source):
        if row.task in test_tasks:
            test.append(row)
        elif row.task in train_tasks:
            if row.id in entry.removed_rows:
                removed += 1
            else:
                train.append(row)
    counts = {"train_rows": len(train), "test_rows": len(test), "removed_rows": removed}
    templates = template_entries(source.parent)  # copied per part: a fold corpus clusters with the same views
    with atomic_dir(out_dir, marker=target.write_marker) as tmp:
        for part, rows, tasks in (("train", train, entry.fold.train_tasks), ("test", test, entry.fold.test_tasks)):
            (tmp / part).mkdir()
            write_rows(tmp / part / "corpus.jsonl", rows)
            # the source corpus relative to this manifest's folder, like every path a taskmill file stores
            where = {"path": relative_to(source.parent, Path(out_dir) / part), "sha256": header["corpus"]["sha256"]}
            meta = {"fold": entry.fold.name, "kind": entry.kind, "part": part, "tasks": list(tasks), "rows": len(rows),
                    "source_corpus": where, "removed_rows": removed if part == "train" else 0}
            names = set(tasks)
            kept = [t for t in templates if t.get("task") in names]
            if kept:
                meta["templates"] = kept
            write_json(tmp / part / "manifest.json", meta)
    return counts
