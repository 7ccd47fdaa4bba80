"""The cluster manifest (``clusters.yaml``) and the manual overrides that survive re-runs.

A manifest lists each cluster's name, its distinctive terms and its tasks, each with its cosine
similarity to the cluster centroid and to the nearest other cluster. People edit the ``overrides``
block; ``taskmill cluster run`` reads it back from the previous manifest in its output folder (or
from ``--overrides``) and applies it to the fresh clustering:

```yaml
overrides:
  pin:    {boolq: task:multirc, wic: word-sense}   # task -> cluster (name, task:<t>, or a new name)
  merge:  [[task:rte, task:mrpc]]                   # clusters merged into the first one's name
  rename: {task:sst2: sentiment}                    # cluster -> new name
```

A cluster reference is a cluster name as it appears in the manifest, or ``task:<name>`` for "the
cluster that holds this task"; task references keep working when a re-run renames clusters.
Overrides apply in the order pin, merge, rename; references that no longer resolve are listed
under ``unresolved_overrides`` rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError
from taskmill.fileio import read_yaml

MANIFEST_FILE = "clusters.yaml"
FORMAT_VERSION = 1


@dataclass
class TaskEntry:
    """One task in a cluster: its source dataset and how close it sits to its cluster."""

    task: str
    dataset: str
    similarity: float
    nearest_other: str | None = None
    nearest_other_similarity: float | None = None


@dataclass
class ClusterEntry:
    """One cluster: ``name`` (auto or overridden), ``auto_name``, ``terms`` and its tasks."""

    name: str
    auto_name: str
    terms: list[str]
    tasks: list[TaskEntry]

    @property
    def task_names(self) -> list[str]:
        """Names of the cluster's tasks."""
        return [t.task for t in self.tasks]


@dataclass
class Overrides:
    """Manual changes applied on top of the algorithm's clusters (see the module docstring)."""

    pin: dict[str, str] = field(default_factory=dict)
    merge: list[list[str]] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when there is nothing to apply."""
        return not (self.pin or self.merge or self.rename)

    def to_yaml(self) -> dict[str, Any]:
        """Plain dict for the manifest."""
        return {"pin": dict(self.pin), "merge": [list(g) for g in self.merge], "rename": dict(self.rename)}

    @classmethod
    def from_yaml(cls, obj: Any, file: str | None = None) -> Overrides:
        """Parse an ``overrides`` block, listing every problem at once."""
        obj = obj or {}
        problems = []
        if not isinstance(obj, dict):
            raise ConfigError([f"overrides: expected a mapping with pin/merge/rename, got {type(obj).__name__}"], file=file)
        unknown = sorted(set(obj) - {"pin", "merge", "rename"})
        if unknown:
            problems.append(f"overrides: unknown keys {unknown}; expected pin, merge, rename")
        pin, merge, rename = obj.get("pin") or {}, obj.get("merge") or [], obj.get("rename") or {}
        if not isinstance(pin, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pin.items()):
            problems.append("overrides.pin: expected a mapping task -> cluster reference (strings)")
        if not isinstance(merge, list) or not all(isinstance(g, list) and len(g) >= 2 and all(isinstance(x, str) for x in g) for g in merge):
            problems.append("overrides.merge: expected a list of lists of 2+ cluster references")
        if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in rename.items()):
            problems.append("overrides.rename: expected a mapping cluster reference -> new name (strings)")
        if problems:
            raise ConfigError(problems, file=file)
        return cls(pin=dict(pin), merge=[list(g) for g in merge], rename=dict(rename))


@dataclass
class ClusterManifest:
    """Everything ``clusters.yaml`` holds."""

    clusters: list[ClusterEntry]
    overrides: Overrides = field(default_factory=Overrides)
    unresolved_overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    def cluster_of(self) -> dict[str, str]:
        """Task -> cluster name."""
        return {t.task: c.name for c in self.clusters for t in c.tasks}

    def dataset_of(self) -> dict[str, str]:
        """Task -> source dataset."""
        return {t.task: t.dataset for c in self.clusters for t in c.tasks}

    def to_yaml(self) -> dict[str, Any]:
        """Plain dict in a fixed key order (the file people read and edit)."""
        return {
            "taskmill_cluster_manifest": FORMAT_VERSION,
            "corpus": self.corpus,
            "config": self.config,
            "quality": self.quality,
            "overrides": self.overrides.to_yaml(),
            "unresolved_overrides": list(self.unresolved_overrides),
            "clusters": [
                {
                    "name": c.name,
                    "auto_name": c.auto_name,
                    "terms": list(c.terms),
                    "size": len(c.tasks),
                    "tasks": [_task_yaml(t) for t in c.tasks],
                }
                for c in self.clusters
            ],
        }


def _task_yaml(t: TaskEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"task": t.task, "dataset": t.dataset, "similarity": t.similarity}
    if t.nearest_other is not None:
        out["nearest_other"] = t.nearest_other
        out["nearest_other_similarity"] = t.nearest_other_similarity
    return out


def dump_yaml(obj: Any) -> str:
    """YAML text in key order, unicode kept, wide lines."""
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=120)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing, non-UTF-8 or malformed file is a one-line error."""
    return read_yaml(Path(path))


def _parse_clusters(raw: Any, problems: list[str]) -> list[ClusterEntry]:
    clusters = []
    if not isinstance(raw, list) or not raw:
        problems.append("clusters: expected a non-empty list")
        return clusters
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("tasks"), list):
            problems.append(f"clusters[{i}]: expected name (string) and tasks (list)")
            continue
        tasks = []
        for j, t in enumerate(c["tasks"]):
            t = {"task": t} if isinstance(t, str) else t  # hand-written manifests may list bare names
            if not isinstance(t, dict) or not isinstance(t.get("task"), str):
                problems.append(f"clusters[{i}].tasks[{j}]: expected a task name or a mapping with 'task'")
                continue
            tasks.append(TaskEntry(t["task"], str(t.get("dataset", t["task"])), float(t.get("similarity", 1.0)), t.get("nearest_other"), t.get("nearest_other_similarity")))
        clusters.append(ClusterEntry(c["name"], str(c.get("auto_name", c["name"])), list(c.get("terms") or []), tasks))
    return clusters


def _check_unique(clusters: list[ClusterEntry], problems: list[str]) -> None:
    names = [c.name for c in clusters]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"cluster name {name!r} appears more than once")
    seen: dict[str, str] = {}
    for c in clusters:
        for t in c.task_names:
            if t in seen:
                problems.append(f"task {t!r} is in both {seen[t]!r} and {c.name!r}")
            seen[t] = c.name


def load_manifest(path: str | Path) -> ClusterManifest:
    """Read a cluster manifest (a ``clusters.yaml`` file or the folder holding it).

    Raises:
        ConfigError: Every schema problem found, in one message.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(["expected a cluster manifest mapping with a 'clusters' list"], file=str(path))
    problems: list[str] = []
    clusters = _parse_clusters(raw.get("clusters"), problems)
    _check_unique(clusters, problems)
    try:
        overrides = Overrides.from_yaml(raw.get("overrides"))
    except ConfigError as err:
        problems.extend(err.problems)
        overrides = Overrides()
    if problems:
        raise ConfigError(problems, file=str(path))
    return ClusterManifest(
        clusters=clusters,
        overrides=overrides,
        unresolved_overrides=list(raw.get("unresolved_overrides") or []),
        config=dict(raw.get("config") or {}),
        corpus=dict(raw.get("corpus") or {}),
        quality=dict(raw.get("quality") or {}),
    )


def load_overrides(path: str | Path) -> Overrides:
    """Overrides from a file holding either a full manifest or just an ``overrides`` mapping."""
    raw = load_yaml(path)
    if isinstance(raw, dict) and "overrides" in raw:
        raw = raw["overrides"]
    return Overrides.from_yaml(raw, file=str(path))


class _Partition:
    """Cluster name -> ordered task list, with task references resolved against it."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = {name: list(tasks) for name, tasks in groups.items()}

    def owner(self, task: str) -> str | None:
        return next((name for name, tasks in self.groups.items() if task in tasks), None)

    def resolve(self, ref: str) -> str | None:
        if ref.startswith("task:"):
            return self.owner(ref[len("task:"):])
        return ref if ref in self.groups else None

    def move(self, task: str, target: str) -> None:
        source = self.owner(task)
        if source is not None:
            self.groups[source].remove(task)
            if not self.groups[source]:
                del self.groups[source]
        self.groups.setdefault(target, []).append(task)


def apply_overrides(groups: dict[str, list[str]], overrides: Overrides) -> tuple[dict[str, list[str]], list[str]]:
    """Apply pins, then merges, then renames to ``groups`` (cluster name -> tasks).

    Returns:
        The new groups and a list of overrides that could not be applied (with the reason).
    """
    part = _Partition(groups)
    unresolved: list[str] = []
    for task in sorted(overrides.pin):
        target_ref = overrides.pin[task]
        if part.owner(task) is None:
            unresolved.append(f"pin {task} -> {target_ref}: no such task")
            continue
        target = part.resolve(target_ref)
        if target is None and target_ref.startswith("task:"):
            unresolved.append(f"pin {task} -> {target_ref}: no such task")
            continue
        part.move(task, target or target_ref)  # an unknown plain name creates that cluster
    for group in overrides.merge:
        _merge(part, group, unresolved)
    for ref in sorted(overrides.rename):
        _rename(part, ref, overrides.rename[ref], unresolved)
    return part.groups, unresolved


def _merge(part: _Partition, group: list[str], unresolved: list[str]) -> None:
    names = []
    for ref in group:
        name = part.resolve(ref)
        if name is None:
            unresolved.append(f"merge {group}: {ref} does not resolve")
        elif name not in names:
            names.append(name)
    for name in names[1:]:
        for task in list(part.groups[name]):
            part.move(task, names[0])


def _rename(part: _Partition, ref: str, new: str, unresolved: list[str]) -> None:
    name = part.resolve(ref)
    if name is None:
        unresolved.append(f"rename {ref} -> {new}: {ref} does not resolve")
    elif new != name and new in part.groups:
        unresolved.append(f"rename {ref} -> {new}: a cluster named {new} already exists")
    else:
        part.groups = {(new if k == name else k): v for k, v in part.groups.items()}
