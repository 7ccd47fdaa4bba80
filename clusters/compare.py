"""Agreement between a cluster manifest and a reference taxonomy (YAML ``task -> label``).

Reference keys may name tasks or source datasets: a manifest task matches the key equal to its task
name, else the key equal to its dataset id (``glue/sst2``), so one taxonomy of datasets serves any
collection built over them. Only tasks found in both are scored; the others are listed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from taskmill.clusters.manifest import ClusterManifest, load_manifest, load_yaml
from taskmill.errors import ConfigError


@dataclass
class Comparison:
    """Scores and the confusion table of one manifest against one reference.

    Attributes:
        ari: Adjusted Rand index (1 = same partition, about 0 = chance).
        nmi: Normalised mutual information (arithmetic mean normalisation).
        n_tasks: Tasks scored.
        clusters: Cluster names (rows of ``table``).
        labels: Reference labels (columns of ``table``).
        table: ``table[i][j]`` = tasks in cluster i with reference label j.
        unmatched_tasks: Manifest tasks with no reference label.
        unmatched_reference: Reference keys matching no manifest task.
    """

    ari: float
    nmi: float
    n_tasks: int
    clusters: list[str]
    labels: list[str]
    table: list[list[int]]
    unmatched_tasks: list[str] = field(default_factory=list)
    unmatched_reference: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        """Scores line plus the confusion table."""
        head = [f"ARI {self.ari:.3f}, NMI {self.nmi:.3f} over {self.n_tasks} tasks", ""]
        rows = ["| cluster | " + " | ".join(self.labels) + " |", "|---" * (len(self.labels) + 1) + "|"]
        rows += [f"| {c} | " + " | ".join(str(x) if x else "." for x in r) + " |" for c, r in zip(self.clusters, self.table)]
        tail = []
        if self.unmatched_tasks:
            tail.append(f"Not in the reference: {', '.join(self.unmatched_tasks)}")
        if self.unmatched_reference:
            tail.append(f"Reference entries with no task: {', '.join(self.unmatched_reference)}")
        return "\n".join(head + rows + ([""] + tail if tail else []))


def load_reference(path: str | Path) -> dict[str, str]:
    """Read a reference taxonomy: a mapping ``task or dataset -> label`` (strings).

    A top-level ``labels:`` key holding that mapping is accepted too, so the file can carry notes.
    """
    raw = load_yaml(path)
    if isinstance(raw, dict) and isinstance(raw.get("labels"), dict):
        raw = raw["labels"]
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(["expected a non-empty mapping task -> label"], file=str(path))
    bad = [f"{k!r}: expected a string label, got {type(v).__name__}" for k, v in raw.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(bad, file=str(path))
    return {str(k): v for k, v in raw.items()}


def compare(manifest: ClusterManifest, reference: dict[str, str]) -> Comparison:
    """Score ``manifest``'s clusters against ``reference`` labels.

    Raises:
        ConfigError: Fewer than two tasks match the reference.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    cluster_of, dataset_of = manifest.cluster_of(), manifest.dataset_of()
    used_keys: set[str] = set()
    pairs: list[tuple[str, str]] = []
    unmatched = []
    for task in sorted(cluster_of):
        key = task if task in reference else dataset_of.get(task) if dataset_of.get(task) in reference else None
        if key is None:
            unmatched.append(task)
            continue
        used_keys.add(key)
        pairs.append((cluster_of[task], reference[key]))
    if len(pairs) < 2:
        raise ConfigError([f"only {len(pairs)} manifest task(s) match the reference; expected reference keys that are task names or dataset ids"])
    predicted, truth = [p for p, _ in pairs], [t for _, t in pairs]
    counts = Counter(pairs)  # (cluster, label) -> tasks
    matched = set(predicted)
    clusters = [c.name for c in manifest.clusters if c.name in matched]
    labels = sorted(set(truth))
    table = [[counts[c, lab] for lab in labels] for c in clusters]
    return Comparison(
        ari=round(float(adjusted_rand_score(truth, predicted)), 4),
        nmi=round(float(normalized_mutual_info_score(truth, predicted)), 4),
        n_tasks=len(pairs), clusters=clusters, labels=labels, table=table,
        unmatched_tasks=unmatched, unmatched_reference=sorted(set(reference) - used_keys),
    )


def compare_files(manifest_path: str | Path, reference_path: str | Path) -> Comparison:
    """:func:`compare` on files (``taskmill cluster compare``)."""
    return compare(load_manifest(manifest_path), load_reference(reference_path))
