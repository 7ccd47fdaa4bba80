"""Cluster the 29 datasets of ../shared/data and score the clusters against the team's taxonomy.

It writes a collection over the 29 datasets (first split, ``--rows`` seeded source rows each,
zero-shot, every template of the team library) and builds it with ``taskmill build``. Then it
clusters the corpus with each representation x algorithm over several row samples and prints
ARI / NMI against ``clusters/reference/shared_taxonomy.yaml`` side by side: before (the rendered
rows only) and after (the task-side views at the default weights) per embedder. It writes the default run (what
``taskmill cluster run`` gives) with its plots, and makes its folds over a bigger build.

Usage::

    python bench/cluster_shared_eval.py --out .bench/shared   # writes corpus/, default/, fold-corpus/, folds/ (~10 min)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.compare import compare, load_reference
from taskmill.clusters.represent import RepresentConfig
from taskmill.clusters.run import run_clustering

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
REFERENCE = REPO / "clusters" / "reference" / "shared_taxonomy.yaml"


def write_collection(path: Path, max_examples: int) -> Path:
    """A collection over every shared dataset: its first split, zero-shot, the team's template library."""
    import yaml

    tasks = []
    for folder in sorted(p for p in (SHARED / "data").resolve().iterdir() if p.is_dir()):
        split = next(s for s in ("train", "validation", "test") if (folder / f"{s}.jsonl").is_file())
        tasks.append({"name": folder.name, "dataset": folder.name.replace("__", "/"),
                      "data_files": {split: str(folder / f"{split}.jsonl")}, "splits": [split], "max_examples": max_examples})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"seed": 0, "formats": ["zero_shot"], "tasks": tasks}, sort_keys=False), encoding="utf-8")
    return path


def build_corpus(out: Path, max_examples: int, name: str = "corpus") -> Path:
    """``taskmill build`` of :func:`write_collection` into ``out/<name>``."""
    from taskmill.builders.build import build_collection

    start = time.perf_counter()
    collection = write_collection(out / f"{name}-collection.yaml", max_examples)
    result = build_collection(collection, out / name, progress=False)
    print(f"taskmill build: {result.rows} rows, 29 tasks, {max_examples} source rows per task x every library template "
          f"-> {out / name} ({time.perf_counter() - start:.0f} s)")
    return out / name


def configs(n_labels: int) -> dict[str, ClusterConfig]:
    """The clusterings compared: name -> config (k None = silhouette / HDBSCAN's own)."""
    return {
        "ward-auto": ClusterConfig(), f"ward-{n_labels}": ClusterConfig(k=n_labels),
        "average-auto": ClusterConfig(linkage="average"),
        "kmeans-auto": ClusterConfig(algorithm="kmeans"), f"kmeans-{n_labels}": ClusterConfig(algorithm="kmeans", k=n_labels),
        "hdbscan": ClusterConfig(algorithm="hdbscan"),
    }


ROWS_ONLY = {"template_weight": 0.0, "answer_weight": 0.0, "shape_weight": 0.0, "schema_weight": 0.0, "rows_weight": 1.0}


def representations(embedders: list[str]) -> dict[str, RepresentConfig]:
    """Before (the rendered rows only, as taskmill clustered until issue 19) and after (the default
    view weights) for each embedder: column name -> config."""
    out = {}
    for embedder in embedders:
        out[f"{embedder} rows (before)"] = RepresentConfig(embedder=embedder, **ROWS_ONLY)
        out[f"{embedder} views (after)"] = RepresentConfig(embedder=embedder)
    return out


def seed_table(corpus: Path, reference: dict[str, str], embedders: list[str], seeds: int) -> dict[tuple[str, str], list[tuple[float, float, int]]]:
    """ARI, NMI and k of every representation x config over ``seeds`` row samples (seed also seeds k-means)."""
    from taskmill.clusters.manifest import Overrides
    from taskmill.clusters.run import cluster_corpus

    scores: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for seed in range(seeds):
        for embedder, represent in representations(embedders).items():
            for name, config in configs(len(set(reference.values()))).items():
                run = cluster_corpus(corpus, replace(represent, seed=seed), replace(config, seed=seed), Overrides())
                score = compare(run.manifest, reference)
                scores.setdefault((embedder, name), []).append((score.ari, score.nmi, run.manifest.quality["k"]))
    return scores


def print_seed_table(scores: dict[tuple[str, str], list[tuple[float, float, int]]], embedders: list[str], seeds: int) -> None:
    """Markdown: one row per config, mean ARI (sd) and mean NMI per embedder."""
    import numpy as np

    names = list(dict.fromkeys(name for _, name in scores))
    print(f"\nARI / NMI against the reference, mean (sd) over {seeds} row samples; k from seed 0\n")
    print("| clustering | " + " | ".join(f"{e} ARI | {e} NMI | {e} k" for e in embedders) + " |")
    print("|---" * (1 + 3 * len(embedders)) + "|")
    for name in names:
        cells = []
        for e in embedders:
            a = np.array(scores[(e, name)])
            cells += [f"{a[:, 0].mean():.3f} ({a[:, 0].std():.3f})", f"{a[:, 1].mean():.3f}", f"{int(a[0, 2])}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    means = {e: np.mean([np.mean([x[0] for x in scores[(e, n)]]) for n in names]) for e in embedders}
    print("\nmean ARI over all clusterings and samples: " + ", ".join(f"{e} {m:.3f}" for e, m in means.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "shared")
    parser.add_argument("--rows", type=int, default=100, help="source rows per dataset (max_examples), each rendered with every template")
    parser.add_argument("--embedders", default="tfidf,minilm", help="embedders of the text views, each shown before and after")
    parser.add_argument("--seeds", type=int, default=5, help="row samples per configuration")
    parser.add_argument("--fold-rows", type=int, default=1000, help="source rows per dataset in the corpus the folds are made over (0: no folds)")
    args = parser.parse_args(argv)
    if not (SHARED / "data").is_dir():
        print(f"no shared data at {SHARED / 'data'}", file=sys.stderr)
        return 1
    corpus = build_corpus(args.out, args.rows)
    reference = load_reference(REFERENCE)
    embedders = args.embedders.split(",")
    start = time.perf_counter()
    columns = list(representations(embedders))
    print_seed_table(seed_table(corpus, reference, embedders, args.seeds), columns, args.seeds)
    print(f"({time.perf_counter() - start:.0f} s)")
    run = run_clustering(corpus, args.out / "default", draw=True, overwrite=True)  # what `taskmill cluster run` gives
    score = compare(run.manifest, reference)
    default = RepresentConfig()
    print(f"\ndefault run ({default.embedder}, views {default.weights()}, ward, k by silhouette = {run.manifest.quality['k']}) "
          f"-> {args.out / 'default'}\n\n| cluster | tasks |\n|---|---|")
    for c in run.manifest.clusters:
        print(f"| {c.name} | {', '.join(c.task_names)} |")
    print("\n" + score.to_markdown())
    if args.fold_rows:
        make_folds_over(args.out, args.out / "default" / "clusters.yaml", args.fold_rows)
    return 0


def make_folds_over(out: Path, manifest: Path, n_rows: int) -> None:
    """Folds of the best clustering over a bigger corpus of the same tasks, with guard counts."""
    from taskmill.clusters.folds import FoldConfig, summary_markdown, write_folds

    print(f"\nfolds over a corpus of {n_rows} source rows per dataset:")
    corpus = build_corpus(out, n_rows, "fold-corpus")
    start = time.perf_counter()
    plans = write_folds(manifest, corpus, out / "folds", FoldConfig())
    print(f"\n{len(plans)} folds in {time.perf_counter() - start:.1f} s -> {out / 'folds'}\n")
    print(summary_markdown(plans))
    for plan in plans:
        for train_id, test_id, score in plan.examples[:1]:
            print(f"  {plan.fold.name}: e.g. train row {train_id} ~ held-out row {test_id} (Jaccard {score})")


if __name__ == "__main__":
    raise SystemExit(main())
