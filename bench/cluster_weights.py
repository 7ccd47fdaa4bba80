"""How the default representation was chosen: search against the team taxonomy, and a held-out estimate.

Builds (or reuses) the corpus of ``bench/cluster_shared_eval.py`` (29 shared datasets, zero-shot,
every library template), computes every view once per embedder (plain and centred), then for
agglomerative clustering with k by silhouette prints, per search space (the weights alone as the
previous round searched them, then weights x centring x linkage):

* the in-sample best setting on all 29 datasets and its ARI (optimistic: chosen on the labels
  it is scored against);
* the leave-one-dataset-out estimate (``taskmill.clusters.weights``): per dataset, the setting
  chosen on the other 28 only, and the pairs involving the held-out dataset judged under it; one
  ARI over all those pairs, and how often each setting was chosen.

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
from taskmill.clusters.represent import RepresentConfig, center_rows, represent_tasks  # noqa: E402
from taskmill.clusters.run import task_datasets  # noqa: E402
from taskmill.clusters.schema import read_schemas  # noqa: E402
from taskmill.clusters.weights import SettingLabels, choose_setting, leave_one_out, settings_grid  # noqa: E402


TEXT_VIEWS = ("template", "schema", "rows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / ".bench" / "shared")
    parser.add_argument("--rows", type=int, default=100, help="source rows per dataset")
    parser.add_argument("--embedders", default="tfidf,minilm")
    parser.add_argument("--grid", default="0,1,2", help="weight values per view (the grid is their product, scaled to sum 1)")
    parser.add_argument("--linkages", default="ward,average", help="agglomerative linkages searched")
    parser.add_argument("--spaces", default="0,1", help="search spaces run: 0 weights without the schema view (before it existed), "
                        "1 weights, 2 weights x centring, 3 weights x centring x linkage")
    parser.add_argument("--schema-embedder", default="same", help="what embeds the schema view: same (the text views' embedder) or tfidf")
    args = parser.parse_args(argv)
    if not (SHARED / "data").is_dir():
        print(f"no shared data at {SHARED / 'data'}", file=sys.stderr)
        return 1
    corpus = args.out / "corpus" if (args.out / "corpus" / "corpus.jsonl").is_file() else build_corpus(args.out, args.rows)
    groups = rows_by_task(corpus)
    reference = load_reference(REFERENCE)
    datasets = task_datasets(groups)
    values = tuple(float(x) for x in args.grid.split(","))
    spaces = {
        "weights, no schema view (plain, ward)": [s for s in settings_grid(values) if s.weight_map()["schema"] == 0],
        "weights (plain, ward)": settings_grid(values),
        "weights x centring (ward)": settings_grid(values, (False, True)),
        "weights x centring x linkage": settings_grid(values, (False, True), tuple(args.linkages.split(","))),
    }
    spaces = {name: spaces[name] for i, name in enumerate(spaces) if str(i) in args.spaces.split(",")}
    config = ClusterConfig()
    print(f"{len(groups)} tasks; clustering: agglomerative, k by silhouette; schema view embedded by {args.schema_embedder}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| embedder | search space (settings) | in-sample best setting | in-sample ARI | leave-one-dataset-out ARI | pairs tp/fp/fn/tn | settings chosen without each dataset (count) |")
    print("|---|---|---|---|---|---|---|")
    for embedder in args.embedders.split(","):
        start = time.process_time()
        every_view = RepresentConfig(embedder=embedder, center=False, template_weight=1, answer_weight=1, shape_weight=1, schema_weight=1, rows_weight=1,
                                     schema_embedder=args.schema_embedder)
        vectors = represent_tasks(groups, every_view, read_schemas(corpus, groups))
        plain = vectors.views
        views = {False: plain, True: {v: center_rows(m) if v in TEXT_VIEWS else m for v, m in plain.items()}}
        truth = [reference[datasets[t]] for t in vectors.tasks]
        for space, settings in spaces.items():
            table = SettingLabels(views, settings, config)
            best = choose_setting(table, truth)
            held = leave_one_out(table, truth)
            counts = Counter(s.describe() for s in held.chosen)
            chosen = "; ".join(f"{w} ({n})" for w, n in counts.most_common(4)) + ("; ..." if len(counts) > 4 else "")
            print(f"| {embedder} | {space} ({len(settings)}) | {best.setting.describe()} | {best.ari:.3f} | {held.ari:.3f} | {'/'.join(map(str, held.pairs))} | {chosen} |", flush=True)
        print(f"  ({embedder}: {time.process_time() - start:.0f} s CPU)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
