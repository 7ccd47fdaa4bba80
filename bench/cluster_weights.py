"""How the default view weights were chosen: grid search against the team taxonomy, and a held-out estimate.

Builds (or reuses) the corpus of ``bench/cluster_shared_eval.py`` (29 shared datasets, zero-shot,
every library template), computes every view once per embedder, then for the default clustering
(ward, k by silhouette) prints:

* the in-sample best weights on all 29 datasets and their ARI (optimistic: chosen on the labels
  they are scored against);
* the leave-one-dataset-out estimate (``taskmill.clusters.weights``): per dataset, weights chosen on
  the other 28 only, and the pairs involving the held-out dataset judged under them; one ARI over
  all those pairs, and how often each weight vector was chosen.

No evaluation fold (LOCO scores) is read. Usage::

    python bench/cluster_weights.py --out .bench/shared [--embedders tfidf,minilm] [--grid 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_shared_eval import REFERENCE, SHARED, build_corpus  # noqa: E402

from taskmill.clusters.cluster import ClusterConfig  # noqa: E402
from taskmill.clusters.compare import load_reference  # noqa: E402
from taskmill.clusters.corpus import rows_by_task  # noqa: E402
from taskmill.clusters.represent import RepresentConfig, represent_tasks  # noqa: E402
from taskmill.clusters.run import task_datasets  # noqa: E402
from taskmill.clusters.weights import choose_weights, leave_one_out, weight_grid  # noqa: E402


def _fmt(weights: dict[str, float]) -> str:
    return ", ".join(f"{v} {w:.2f}" for v, w in weights.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / ".bench" / "shared")
    parser.add_argument("--rows", type=int, default=100, help="source rows per dataset")
    parser.add_argument("--embedders", default="tfidf,minilm")
    parser.add_argument("--grid", default="0,1,2", help="weight values per view (the grid is their product, scaled to sum 1)")
    args = parser.parse_args(argv)
    if not (SHARED / "data").is_dir():
        print(f"no shared data at {SHARED / 'data'}", file=sys.stderr)
        return 1
    corpus = args.out / "corpus" if (args.out / "corpus" / "corpus.jsonl").is_file() else build_corpus(args.out, args.rows)
    groups = rows_by_task(corpus)
    reference = load_reference(REFERENCE)
    datasets = task_datasets(groups)
    grid = weight_grid(tuple(float(x) for x in args.grid.split(",")))
    config = ClusterConfig()
    print(f"{len(groups)} tasks, {len(grid)} weight vectors, clustering: ward, k by silhouette; load average {os.getloadavg()[0]:.1f}\n")
    print("| embedder | in-sample best weights | in-sample ARI | leave-one-dataset-out ARI | pairs tp/fp/fn/tn | weights chosen without each dataset (count) |")
    print("|---|---|---|---|---|---|")
    for embedder in args.embedders.split(","):
        start = time.process_time()
        vectors = represent_tasks(groups, RepresentConfig(embedder=embedder))
        truth = [reference[datasets[t]] for t in vectors.tasks]
        best = choose_weights(vectors.views, truth, config, grid)
        held = leave_one_out(vectors.views, truth, config, grid)
        counts = Counter(_fmt(w) for w in held.chosen)
        chosen = "; ".join(f"{w} ({n})" for w, n in counts.most_common())
        print(f"| {embedder} | {_fmt(best.weights)} | {best.ari:.3f} | {held.ari:.3f} | {'/'.join(map(str, held.pairs))} | {chosen} |")
        print(f"  ({embedder}: {time.process_time() - start:.0f} s CPU)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
