"""Leave-one-cluster-out and leave-one-task-out folds with leakage guards.

``make_folds`` turns a cluster manifest and the corpus it was made from into folds:

* ``cluster`` folds: test tasks = one cluster (or one group of clusters held out together, as
  FLAN held out NLI with paraphrase); train tasks = all other tasks.
* ``task`` folds: test task = one task; train = all others. Their manifest entry counts the
  training tasks from the held-out task's own cluster (``train_tasks_same_cluster``) - the
  leakage that cluster-level hold-out exists to remove.

Every fold then applies the guards of :mod:`taskmill.clusters.leakage` and records counts in
``Fold.leakage``; dropped tasks (with the reason) go to ``Fold.excluded``, and the ids of the
removed training rows to ``removed/<fold>.txt`` beside ``folds.yaml``. Tasks share a source when
their datasets do (:mod:`taskmill.clusters.sources`: every config of one hub dataset is one source,
except the configs of benchmark collections such as GLUE).

``folds.yaml`` names the cluster manifest and the corpus by paths relative to its own folder, so a
folds folder can be moved with its inputs and used from any working directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from taskmill.clusters.corpus import corpus_file, rows_by_task
from taskmill.clusters.leakage import DedupConfig, DuplicateReport, RowPrints, find_duplicates, fingerprint
from taskmill.clusters.manifest import MANIFEST_FILE, ClusterManifest, dump_yaml, load_manifest
from taskmill.clusters.naming import slug, unique_names
from taskmill.clusters.sources import INDEPENDENT_CONFIGS, Resolved, corpus_datasets, task_sources
from taskmill.errors import ConfigError
from taskmill.records import Fold, Row

FOLDS_FILE = "folds.yaml"
FORMAT_VERSION = 2  # 2: paths relative to folds.yaml's folder (1: as given to `folds make`)
KINDS = ("cluster", "task")
EXAMPLES = 5  # removed and kept pairs reported per fold


@dataclass(frozen=True)
class FoldConfig:
    """Which folds to make and which guards to apply.

    Attributes:
        kinds: ``cluster`` (leave-one-cluster-out) and/or ``task`` (leave-one-task-out).
        groups: Cluster references held out together, one fold per group (a name from the
            manifest or ``task:<name>`` for the cluster holding that task).
        source_aliases: Dataset id (or hub id) -> source name, for datasets that share instances
            under different ids (``super_glue/rte`` and ``glue/rte`` -> ``rte``), or to give one
            config a source of its own (``ai2_arc/ARC-Easy`` -> ``arc_easy``).
        same_source: Apply the same-source-dataset exclusion.
        independent_configs: Hub datasets whose configs are independent datasets, each its own
            source (benchmark collections); every other dataset's configs share one source.
        dedup: Near-duplicate guard settings.
    """

    kinds: tuple[str, ...] = KINDS
    groups: tuple[tuple[str, ...], ...] = ()
    source_aliases: dict[str, str] = field(default_factory=dict)
    same_source: bool = True
    independent_configs: tuple[str, ...] = INDEPENDENT_CONFIGS
    dedup: DedupConfig = field(default_factory=DedupConfig)

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field."""
        problems = [f"kinds: unknown kind {k!r}; expected {' or '.join(KINDS)}" for k in self.kinds if k not in KINDS]
        if not self.kinds:
            problems.append("kinds: expected at least one of cluster, task")
        problems += [f"groups[{i}]: expected 2+ cluster references, got {list(g)}" for i, g in enumerate(self.groups) if len(g) < 2]
        if isinstance(self.independent_configs, str):
            problems.append(f"independent_configs: expected a list of dataset names, got the string {self.independent_configs!r}")
        else:
            problems += [f"independent_configs: expected dataset names, got {d!r}" for d in self.independent_configs if not isinstance(d, str) or not d]
        try:
            self.dedup.validate()
        except ConfigError as err:
            problems += err.problems
        if problems:
            raise ConfigError(problems)


@dataclass
class FoldPlan:
    """A fold, its kind and the training rows its guards removed.

    ``examples`` are the removed (train id, held-out id, similarity) pairs nearest the threshold,
    ``kept`` the closest pairs the guard let through (best first), ``words`` the instance words
    the detector compared for the rows they name.
    """

    fold: Fold
    kind: str
    removed_rows: list[str] = field(default_factory=list)
    examples: list[tuple[str, str, float]] = field(default_factory=list)
    slug: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    kept: list[tuple[str, str, float]] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)


def _resolve_groups(manifest: ClusterManifest, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    cluster_of = manifest.cluster_of()
    names = {c.name for c in manifest.clusters}
    problems, out, used = [], [], {}
    for i, group in enumerate(groups):
        resolved = []
        for ref in group:
            name = cluster_of.get(ref[5:]) if ref.startswith("task:") else ref if ref in names else None
            if name is None:
                problems.append(f"groups[{i}]: {ref!r} is not a cluster name or task:<task> of the manifest")
            elif name in used and used[name] != i:
                problems.append(f"groups[{i}]: cluster {name!r} is already held out by groups[{used[name]}]")
            elif name not in resolved:
                resolved.append(name)
                used[name] = i
        out.append(resolved)
    if problems:
        raise ConfigError(problems)
    return out


def held_out_sets(manifest: ClusterManifest, config: FoldConfig) -> list[tuple[str, str, list[str], list[str]]]:
    """``(name, kind, held-out clusters, test tasks)`` for every fold, in a stable order."""
    members = {c.name: c.task_names for c in manifest.clusters}
    out = []
    if "cluster" in config.kinds:
        groups = _resolve_groups(manifest, config.groups)
        grouped = {name for g in groups for name in g}
        for g in groups:
            out.append(("cluster:" + "+".join(g), "cluster", g, sorted(t for name in g for t in members[name])))
        for c in manifest.clusters:
            if c.name not in grouped:
                out.append((f"cluster:{c.name}", "cluster", [c.name], sorted(c.task_names)))
    if "task" in config.kinds:
        for task in sorted(manifest.cluster_of()):
            out.append((f"task:{task}", "task", [], [task]))
    return out


def plan_fold(name: str, kind: str, held_out: list[str], test: list[str], cluster_of: dict[str, str], source: dict[str, str], rows: dict[str, list[Row]], prints: RowPrints | None, config: FoldConfig,
              datasets: dict[str, str] | None = None) -> FoldPlan:
    """Apply the guards to one held-out set and count what they removed.

    ``cluster_of`` maps every manifest task to its cluster, ``source`` to its source dataset
    (aliases applied), ``datasets`` to its dataset id (to tell sibling configs from one dataset
    used twice).
    """
    datasets = datasets or {}
    test_sources = {source[t]: t for t in sorted(test, reverse=True)}  # first test task per source wins
    excluded: dict[str, str] = {}
    train: list[str] = []
    siblings = 0
    for task in sorted(set(cluster_of) - set(test)):
        held = test_sources.get(source[task]) if config.same_source else None
        if held is None:
            train.append(task)
            continue
        excluded[task] = f"shares source dataset {source[task]} with held-out task {held}"
        mine, theirs = datasets.get(task), datasets.get(held)
        if mine and theirs and mine != theirs:
            siblings += 1
            excluded[task] += f" ({mine} and {theirs} are configs of one dataset)"
    report, counts = _dedup(prints, rows, train, test, config)
    own = {cluster_of[t] for t in test}
    leakage = {
        "train_tasks": len(train),
        "test_tasks": len(test),
        "train_rows": sum(len(rows[t]) for t in train) - len(report.exact) - len(report.near),
        "test_rows": sum(len(rows[t]) for t in test),
        "same_source_tasks_excluded": len(excluded),
        "same_source_rows_excluded": sum(len(rows[t]) for t in excluded),
        "sibling_config_tasks_excluded": siblings,
        **counts,
        "train_tasks_same_cluster": sum(1 for t in train if cluster_of[t] in own),
    }
    fold = Fold(name=name, held_out=tuple(held_out), train_tasks=tuple(train), test_tasks=tuple(test), excluded=excluded, leakage=leakage)
    # the removed pairs nearest the threshold show what it let through least surely
    examples = sorted(report.pairs, key=lambda p: p[2])[:EXAMPLES]
    shown = {i for p in examples + report.kept for i in p[:2]}
    return FoldPlan(fold, kind, sorted(report.exact + report.near), examples, kept=report.kept,
                    words={i: w for i, w in report.words.items() if i in shown})


def _dedup(prints: RowPrints | None, rows: dict[str, list[Row]], train: list[str], test: list[str], config: FoldConfig) -> tuple[DuplicateReport, dict[str, int]]:
    if prints is None:
        return DuplicateReport(), {"exact_duplicates_removed": 0, "near_duplicates_removed": 0}
    index = prints.index
    train_idx = [index[r.id] for t in train for r in rows[t]]
    test_idx = [index[r.id] for t in test for r in rows[t]]
    report = find_duplicates(prints, train_idx, test_idx, config.dedup.threshold, keep=EXAMPLES)
    counts = {"exact_duplicates_removed": len(report.exact), "near_duplicates_removed": len(report.near)}
    return report, counts


def make_folds(manifest: ClusterManifest, rows: dict[str, list[Row]], config: FoldConfig, resolved: Resolved | None = None) -> list[FoldPlan]:
    """Plan every fold of ``manifest`` over the corpus ``rows`` (task -> rows).

    ``resolved`` (task -> rows' dataset id, hub id, config; :func:`corpus_datasets`) says how the
    build read each dataset id, where the id alone is ambiguous (``wino_bias/type1_pro``).

    Raises:
        ConfigError: The manifest and the corpus disagree on the task set, or the config is invalid.
    """
    config.validate()
    cluster_of = manifest.cluster_of()
    missing = sorted(set(cluster_of) - set(rows))
    if missing:
        raise ConfigError([f"manifest tasks not in the corpus: {', '.join(missing)}"])
    tasks = sorted(cluster_of)
    all_rows = [r for t in tasks for r in rows[t]]
    ids = [r.id for r in all_rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(["corpus row ids are not unique; the fold files name removed rows by id"])
    prints = fingerprint(all_rows, config.dedup) if config.dedup.enabled else None
    datasets = manifest.dataset_of()
    source = task_sources(datasets, resolved or {}, config.independent_configs, config.source_aliases)
    plans = [plan_fold(name, kind, held, test, cluster_of, source, rows, prints, config, datasets) for name, kind, held, test in held_out_sets(manifest, config)]
    # file names: slugs, made unique in fold order
    for plan, name in zip(plans, unique_names([slug(p.fold.name.replace(":", "-")) for p in plans])):
        plan.slug = name
        plan.sources = source
    return plans


def relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (POSIX separators), as the files that name other files store it."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def folds_yaml(plans: list[FoldPlan], manifest_path: Path, corpus_path: Path, config: FoldConfig, out_dir: Path | None = None) -> dict:
    """The ``folds.yaml`` mapping; paths are relative to ``out_dir`` (the folder it is written to).

    ``out_dir`` None keeps the paths as given (the old format, ``taskmill_folds: 1``).
    """
    from taskmill.fileio import sha256_file

    cfg = asdict(config)
    cfg["kinds"], cfg["groups"] = list(config.kinds), [list(g) for g in config.groups]
    cfg["independent_configs"] = list(config.independent_configs)
    where = (lambda p: relative_to(p, out_dir)) if out_dir is not None else str
    return {
        "taskmill_folds": FORMAT_VERSION if out_dir is not None else 1,
        "cluster_manifest": {"path": where(manifest_path), "sha256": sha256_file(manifest_path)},
        "corpus": {"path": where(corpus_path.parent), "sha256": sha256_file(corpus_path)},
        "config": cfg,
        "sources": dict(plans[0].sources) if plans else {},
        "folds": [
            {**_fold_yaml(p.fold), "kind": p.kind, "removed_rows": f"removed/{p.slug}.txt",
             "removed_examples": [list(e) for e in p.examples], "kept_examples": [list(e) for e in p.kept]}
            for p in plans
        ],
    }


def _fold_yaml(fold: Fold) -> dict:
    out = asdict(fold)
    for key in ("held_out", "train_tasks", "test_tasks"):
        out[key] = list(out[key])
    return out


def summary_markdown(plans: list[FoldPlan]) -> str:
    """One table row per fold with its guard counts, then the tasks each fold dropped for sharing a
    source with its held-out tasks."""
    lines = [
        "# Folds", "",
        "| fold | test tasks | train tasks | same-cluster train tasks | same-source excluded | exact dups removed | near dups removed | train rows | test rows |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in plans:
        k = p.fold.leakage
        lines.append(f"| {p.fold.name} | {k['test_tasks']} | {k['train_tasks']} | {k['train_tasks_same_cluster']} | {k['same_source_tasks_excluded']} | "
                     f"{k['exact_duplicates_removed']} | {k['near_duplicates_removed']} | {k['train_rows']} | {k['test_rows']} |")
    lines += _exclusions_markdown(plans)
    lines += _duplicates_markdown(plans)
    return "\n".join(lines) + "\n"


def _snippet(words: str, width: int = 90) -> str:
    return words if len(words) <= width else words[: width - 3].rstrip() + "..."


def _duplicates_markdown(plans: list[FoldPlan]) -> list[str]:
    shown = [p for p in plans if p.examples or p.kept]
    if not shown:
        return []
    lines = ["", "## Near duplicates", "",
             "Per fold, the removed pair nearest the threshold and the closest pair kept: similarity, then the "
             "instance words compared (training row ~ held-out row; folds.yaml lists five of each by row id):", ""]
    for p in shown:
        k = p.fold.leakage
        lines.append(f"- {p.fold.name}: {k['exact_duplicates_removed']} exact and {k['near_duplicates_removed']} near duplicates removed")
        for label, pair in (("nearest removed", p.examples[0] if p.examples else None), ("closest kept", p.kept[0] if p.kept else None)):
            if pair is not None:
                train, test, score = pair
                if train in p.words:
                    lines.append(f"  - {label} {score:.3f}: \"{_snippet(p.words[train])}\" ~ \"{_snippet(p.words.get(test, ''))}\"")
                else:
                    lines.append(f"  - {label}: exact duplicates only (equal prompts after normalisation)")
    return lines


def _exclusions_markdown(plans: list[FoldPlan]) -> list[str]:
    dropped = [p for p in plans if p.fold.excluded]
    if not dropped:
        return []
    lines = ["", "## Same-source exclusions", "",
             "Training tasks dropped because they share a source dataset with a held-out task (all configs of one "
             "dataset are one source, except those of independent collections such as glue and super_glue):", ""]
    for p in dropped:
        k = p.fold.leakage
        siblings = f", {k['sibling_config_tasks_excluded']} of them sibling configs" if k.get("sibling_config_tasks_excluded") else ""
        lines.append(f"- {p.fold.name}: {k['same_source_tasks_excluded']} tasks, {k['same_source_rows_excluded']} rows{siblings}")
        lines += [f"  - {task}: {why}" for task, why in p.fold.excluded.items()]
    return lines


def write_folds(manifest_path: str | Path, corpus_dir: str | Path, out_dir: str | Path, config: FoldConfig | None = None,
                *, overwrite: bool = False) -> list[FoldPlan]:
    """Make the folds of a cluster manifest and write ``folds.yaml``, ``summary.md`` and
    ``removed/<fold>.txt`` to ``out_dir`` atomically (``taskmill folds make``).

    ``overwrite`` replaces ``out_dir`` even when it is not an earlier folds folder.
    """
    from taskmill.fileio import atomic_dir, claim_output

    config = config or FoldConfig()
    manifest_path = Path(manifest_path)
    if manifest_path.is_dir():
        manifest_path = manifest_path / MANIFEST_FILE
    manifest = load_manifest(manifest_path)
    path = corpus_file(corpus_dir)
    target = claim_output(out_dir, "folds make", inputs=[manifest_path, path], overwrite=overwrite)
    plans = make_folds(manifest, rows_by_task(path.parent), config, corpus_datasets(path.parent))
    with atomic_dir(out_dir, marker=target.write_marker) as tmp:
        (tmp / FOLDS_FILE).write_text(dump_yaml(folds_yaml(plans, manifest_path, path, config, Path(out_dir))), encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(plans), encoding="utf-8")
        (tmp / "removed").mkdir()
        for p in plans:
            (tmp / "removed" / f"{p.slug}.txt").write_text("".join(f"{rid}\n" for rid in p.removed_rows), encoding="utf-8")
    return plans
