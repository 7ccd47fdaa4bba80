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

    python bench/cluster_weights.py --out .bench/shared [--embedders tfidf,minilm] [--grid 0,1,2] [--candidates]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_shared_eval import REFERENCE, SHARED, build_corpus  # noqa: E402

from taskmill.clusters.cluster import ClusterConfig  # noqa: E402
from taskmill.clusters.compare import load_reference  # noqa: E402
from taskmill.clusters.corpus import rows_by_task  # noqa: E402
from taskmill.clusters.represent import RepresentConfig, TaskVectors, center_rows, represent_tasks  # noqa: E402
from taskmill.clusters.run import task_datasets  # noqa: E402
from taskmill.clusters.schema import read_schemas  # noqa: E402
from taskmill.clusters.weights import SettingLabels, choose_setting, leave_one_out, settings_grid  # noqa: E402


if TYPE_CHECKING:
    import numpy as np

TEXT_VIEWS = ("template", "schema", "rows")


def cosine_spread(view: np.ndarray) -> float:
    """Standard deviation of the pairwise cosines of a view's unit rows ``(n, dim)`` (pairs i < j)."""
    import numpy as np

    upper = np.triu_indices(len(view), 1)
    return float((view @ view.T)[upper].std())


def answer_tokens(raw: np.ndarray, names: list[str]) -> list[list[str]]:
    """Each task's answer space as a few discrete facts: the metrics most of its rows use, its
    commonest answer kind and target length class, choices in the prompt and their number when
    most rows have them (from the answer view's raw shares; no dataset or taxonomy name)."""
    col = {n: i for i, n in enumerate(names)}
    kinds = ("open-ended", "fixed label set", "choices per row")
    lengths = [n for n in names if n.startswith("target ") and "word" in n]
    out = []
    for shares in raw:
        tokens = [n for n in names if n.startswith("metric ") and shares[col[n]] >= 0.5]
        tokens += [max(kinds, key=lambda n: shares[col[n]]), max(lengths, key=lambda n: shares[col[n]])]
        tokens += [n for n in ("choices in prompt", "2 choices", "3 choices", "4 choices", "5+ choices") if shares[col[n]] >= 0.5]
        out.append(tokens)
    return out


def candidate_views(vectors: TaskVectors, config: RepresentConfig) -> dict[str, dict[str, np.ndarray]]:
    """The views with one change each, as this round tried them (README, "How the view weights were
    chosen"); each goes through the same weights search and leave-one-dataset-out estimate:

    * the template view as the previous rounds embedded it: the text recovered from the renderings
      (words most renderings of a template share, the rest masked by shape), not the template's own text;
    * the schema view as the previous round embedded it (field names and label names, two texts averaged);
    * per-view scale normalisation: each view divided by the square root of the spread (standard
      deviation) of its pairwise cosines, so every view's cosines vary alike before weighting;
    * a metadata view in the answer view's place: :func:`answer_tokens` as present / absent tokens
      weighted by inverse document frequency.
    """
    import numpy as np

    from taskmill.clusters.represent import clip_text, embed_tasks, l2_normalise, make_embedder
    from taskmill.clusters.schema import schema_texts

    views = vectors.views
    labelled = {t: schema_texts(vectors.schemas[t], with_labels=True) for t in vectors.tasks}
    docs = answer_tokens(vectors.raw["answer"], vectors.answer_features)
    vocab = sorted({t for d in docs for t in d})
    present = np.array([[float(t in d) for t in vocab] for d in docs])
    idf = np.log((1 + len(docs)) / (1 + present.sum(axis=0))) + 1
    recovered = {t: [clip_text(s.text, config.max_chars) for s in vectors.sketches[t]] for t in vectors.tasks}
    return {
        "template view recovered from the renderings (previous round)": {**views, "template": embed_tasks(recovered, make_embedder(config))},
        "schema with label names (previous round)": {**views, "schema": embed_tasks(labelled, make_embedder(config))},
        "per-view cosine spread scaled": {v: m / np.sqrt(max(cosine_spread(m), 1e-9)) for v, m in views.items()},
        "metadata tokens as the answer view": {**views, "answer": l2_normalise(present * idf)},
    }


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
    parser.add_argument("--candidates", action="store_true", help="also score, with the weights search, the candidate views "
                        "this round tried (see candidate_views) on the first search space run")
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
        if args.candidates:
            settings = next(iter(spaces.values()))
            for name, candidate in candidate_views(vectors, every_view).items():
                table = SettingLabels({False: candidate}, settings, config)
                best = choose_setting(table, truth)
                held = leave_one_out(table, truth)
                print(f"| {embedder} | candidate: {name} ({len(settings)}) | {best.setting.describe()} | {best.ari:.3f} | {held.ari:.3f} | "
                      f"{'/'.join(map(str, held.pairs))} | |", flush=True)
        print(f"  ({embedder}: {time.process_time() - start:.0f} s CPU)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
