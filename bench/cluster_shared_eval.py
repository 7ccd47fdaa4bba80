"""Cluster the 29 datasets of ../shared/data and score the clusters against the team's taxonomy.

Until ``taskmill build`` exists this script makes its own small corpus: for each dataset it
renders the first ``--rows`` rows of its first split with every original-task template from the
team library (``templates/library``) or, where the library has none, PromptSource's
(``../shared/promptsource_templates``). gsm8k has neither, so it gets two plain templates written
here. Then it clusters the corpus with each representation x algorithm and prints ARI / NMI
against ``clusters/reference/shared_taxonomy.yaml``, plus the cluster table of the best run.

Usage::

    python bench/cluster_shared_eval.py --out .bench/shared   # writes corpus/ and one folder per run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.compare import compare, load_reference
from taskmill.clusters.represent import RepresentConfig
from taskmill.clusters.run import run_clustering
from taskmill.clusters.synthetic import row_id
from taskmill.records import Row, Template, TemplateMetadata
from taskmill.templates import compile_template, load_template_file

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
REFERENCE = REPO / "clusters" / "reference" / "shared_taxonomy.yaml"
PS_ALIASES = {"super_glue/wsc": "super_glue/wsc.fixed"}  # wsc.fixed has the same fields as wsc
GSM8K = (
    Template(id="gsm8k-solve", name="solve", input="Solve this math word problem step by step.\n\n{{ question }}", target="{{ answer }}",
             metadata=TemplateMetadata(original_task=True, metrics=("Exact Match",))),
    Template(id="gsm8k-answer", name="question answer", input="Question: {{ question }}\nAnswer:", target="{{ answer }}",
             metadata=TemplateMetadata(original_task=True, metrics=("Exact Match",))),
)


def dataset_id(folder: str) -> str:
    """``glue__sst2`` -> ``glue/sst2``."""
    return folder.replace("__", "/")


def templates_for(folder: str) -> tuple[str, tuple[Template, ...]]:
    """(where the templates came from, original-task templates) for a shared dataset folder."""
    library = REPO / "templates" / "library" / f"{folder}.yaml"
    ps = SHARED / "promptsource_templates" / PS_ALIASES.get(dataset_id(folder), dataset_id(folder)) / "templates.yaml"
    if library.is_file():
        source, loaded = "library", load_template_file(library).templates
    elif ps.is_file():
        source, loaded = "promptsource", load_template_file(ps).templates
    elif folder == "gsm8k__main":
        return "written here", GSM8K
    else:
        return "none", ()
    original = tuple(t for t in loaded if t.metadata.original_task is not False)
    return source, original or loaded


def first_split(folder: Path) -> tuple[str, list[dict]]:
    """(split name, rows) of the first split file present (train, validation, test order)."""
    for split in ("train", "validation", "test"):
        path = folder / f"{split}.jsonl"
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                return split, [json.loads(line) for line in handle]
    raise SystemExit(f"{folder}: no split file")


def render_dataset(folder: Path, n_rows: int) -> tuple[list[Row], str, int]:
    """Rows of one dataset rendered with its templates; also the template source and failures."""
    source, templates = templates_for(folder.name)
    split, data = first_split(folder)
    rows, failures = [], 0
    for template in templates:
        compiled = compile_template(template)
        for index, raw in enumerate(data[:n_rows]):
            try:
                rendered = compiled.render(raw, seed=index)
            except Exception:  # a PromptSource template that does not apply to this row: skip the row
                failures += 1
                continue
            if not rendered.input or not rendered.target:
                failures += 1
                continue
            rows.append(Row(
                id=row_id(folder.name, split, index, template.id, "zero_shot"), task=folder.name, dataset=dataset_id(folder.name),
                split=split, row_index=index, template_id=template.id, template_name=template.name, format="zero_shot",
                prompt=rendered.input, completion=rendered.target,
                messages=({"role": "user", "content": rendered.input}, {"role": "assistant", "content": rendered.target}),
                answer_choices=rendered.answer_choices, target_index=rendered.target_index,
                metrics=template.metadata.metrics, original_task=template.metadata.original_task,
            ))
    return rows, f"{source} ({len(templates)} templates)", failures


def build_corpus(out: Path, n_rows: int, name: str = "corpus") -> Path:
    """Write ``out/<name>/corpus.jsonl`` over every shared dataset; print one line per dataset."""
    corpus = out / name
    corpus.mkdir(parents=True, exist_ok=True)
    all_rows: list[Row] = []
    for folder in sorted(p for p in (SHARED / "data").iterdir() if p.is_dir()):
        rows, source, failures = render_dataset(folder, n_rows)
        print(f"  {folder.name:28s} {len(rows):4d} rows  templates: {source}  failed renders: {failures}")
        all_rows.extend(rows)
    with (corpus / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for row in all_rows:
            handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
    print(f"corpus: {len(all_rows)} rows, {len({r.task for r in all_rows})} tasks -> {corpus}")
    return corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "shared")
    parser.add_argument("--rows", type=int, default=40, help="rows rendered per dataset and template")
    parser.add_argument("--embedders", default="tfidf,minilm")
    parser.add_argument("--fold-rows", type=int, default=400, help="rows per dataset and template in the corpus the folds are made over (0: no folds)")
    args = parser.parse_args(argv)
    if not (SHARED / "data").is_dir():
        print(f"no shared data at {SHARED / 'data'}", file=sys.stderr)
        return 1
    corpus = build_corpus(args.out, args.rows)
    reference = load_reference(REFERENCE)
    n_labels = len(set(reference.values()))
    runs = [("agglomerative", "ward", None), ("agglomerative", "ward", n_labels), ("agglomerative", "average", None),
            ("kmeans", "", None), ("kmeans", "", n_labels), ("hdbscan", "", None)]
    print(f"\n| embedder | algorithm | k | silhouette | ARI | NMI | seconds |\n|---|---|---|---|---|---|---|")
    results = {}
    for embedder in args.embedders.split(","):
        for algorithm, linkage, k in runs:
            start = time.perf_counter()
            label = f"{algorithm}-{linkage}" if linkage else algorithm
            name = f"{embedder}-{label}-{'auto' if k is None else k}"
            config = ClusterConfig(algorithm=algorithm, k=k, linkage=linkage or "ward")
            run = run_clustering(corpus, args.out / name, RepresentConfig(embedder=embedder), config, draw=True)
            score = compare(run.manifest, reference)
            results[name] = (score, run)
            print(f"| {embedder} | {label} | {run.manifest.quality['k']}{'' if k else (' (hdbscan)' if algorithm == 'hdbscan' else ' (silhouette)')} | {run.manifest.quality['silhouette']} "
                  f"| {score.ari:.3f} | {score.nmi:.3f} | {time.perf_counter() - start:.1f} |")
    best = max(results, key=lambda n: results[n][0].ari)
    score, run = results[best]
    print(f"\nbest run by ARI: {best} (outputs in {args.out / best})\n\n| cluster | tasks |\n|---|---|")
    for c in run.manifest.clusters:
        print(f"| {c.name} | {', '.join(c.task_names)} |")
    print("\n" + score.to_markdown())
    if args.fold_rows:
        make_folds_over(args.out, args.out / best / "clusters.yaml", args.fold_rows)
    return 0


def make_folds_over(out: Path, manifest: Path, n_rows: int) -> None:
    """Folds of the best clustering over a bigger corpus of the same tasks, with guard counts."""
    from taskmill.clusters.folds import FoldConfig, summary_markdown, write_folds

    print(f"\nfolds over a {n_rows}-rows-per-template corpus:")
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
