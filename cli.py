"""The ``taskmill`` command line: thin wrappers that parse arguments and call one function each.

Heavy libraries (torch, datasets, sentence-transformers) are imported inside the functions called,
so ``taskmill --help`` starts fast and works without them. Every :class:`TaskmillError` becomes one
line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from taskmill.errors import TaskmillError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    help="Instruction-tuning corpora, task clusters, SFT/LoRA training and leave-one-cluster-out evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
templates_app = typer.Typer(help="Lint, show and convert prompt templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


Executor = Annotated[Optional[str], typer.Option(
    "--executor", help="Where the LOCO units run: local (one after another here; the default) or ray "
    "(one Ray task per unit; replaces the config's executor.kind).")]
Address = Annotated[Optional[str], typer.Option(
    "--address", help="Ray cluster to run on (implies --executor ray): auto, HOST:PORT or ray://HOST:PORT "
    "(without it, --executor ray starts a private Ray instance on this machine).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Write even into an existing folder that is not this command's own output "
    "(never the current or home directory, nor a folder holding an input).")]


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM as an exception, so that every `finally` and temp-folder cleanup runs on the way out.
    raise SystemExit(128 + signum)


def user_errors(func: F) -> F:
    """Turn a :class:`TaskmillError` into one line on stderr and its exit code (2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            return func(*args, **kwargs)
        except TaskmillError as err:
            typer.echo(f"taskmill: error: {err.line()}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


# --- templates ------------------------------------------------------------------------------------


@templates_app.command("lint")
@user_errors
def templates_lint(
    files: Annotated[list[Path], typer.Argument(help="Template files (taskmill or PromptSource YAML).")],
    data: Annotated[Optional[Path], typer.Option(help="JSONL dataset rows (HF schema) to check against.")] = None,
    rows: Annotated[Optional[int], typer.Option(help="Render only the first N rows of --data (default: every row, as build does).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the `choice` filter.")] = 0,
    plain: Annotated[bool, typer.Option(help="No colour.")] = False,
) -> None:
    """Report parse errors, unknown fields, single-brace text, empty renders, targets outside the choices, duplicates."""
    from rich.console import Console
    from rich.text import Text

    from taskmill.templates.lint import lint_paths

    report = lint_paths(files, data, rows, seed)
    console = Console(no_color=plain, highlight=False, soft_wrap=True)
    for finding in report.findings:
        style = "bold red" if finding.level == "error" else "yellow"
        head, _, tail = finding.line().partition(f"{finding.level} [")
        console.print(Text(head) + Text(finding.level, style=style) + Text(" [" + tail))
    console.print(report.summary())
    raise typer.Exit(1 if report.errors else 0)


@templates_app.command("show")
@user_errors
def templates_show(
    file: Annotated[Path, typer.Argument(help="Template file (taskmill or PromptSource YAML).")],
    data: Annotated[Path, typer.Option(help="JSONL dataset rows (HF schema).")],
    n: Annotated[int, typer.Option("-n", help="Rows per template.")] = 3,
    seed: Annotated[Optional[int], typer.Option(help="Draw the rows at random with this seed (also seeds `choice`).")] = None,
    template: Annotated[Optional[str], typer.Option(help="Only the template with this name or id.")] = None,
) -> None:
    """Print rendered examples (input, target, choices) of each template."""
    from taskmill.templates.show import format_example, show_examples

    for example in show_examples(file, data, n, seed, template):
        typer.echo(format_example(example))


@templates_app.command("convert-flan")
@user_errors
def templates_convert_flan(
    task: Annotated[str, typer.Argument(help="FLAN task name (a key of flan_templates.json).")],
    out: Annotated[Path, typer.Option(help="taskmill YAML file to write.")],
    flan: Annotated[Optional[Path], typer.Option(help="FLAN's flan_templates.json (default $TASKMILL_FLAN_TEMPLATES).")] = None,
    mapping: Annotated[Optional[str], typer.Option(help="Shipped mapping name, FILE.yaml or FILE.yaml:NAME.")] = None,
    field: Annotated[Optional[list[str]], typer.Option(help="FLAN_FIELD=JINJA_EXPR over the HF row (repeatable).")] = None,
    choices: Annotated[Optional[str], typer.Option(help="Answer choices Jinja source, split on |||.")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="HF dataset id of the output file: name, owner/name, name/config or owner/name/config.")] = None,
    kind: Annotated[Optional[str], typer.Option(help="FLAN task kind (classification, summarisation, translation, qa, ...); default: FLAN's.")] = None,
) -> None:
    """Convert FLAN's format-string patterns for TASK into a taskmill template file."""
    from taskmill.templates.flan import convert_flan

    fields = dict(_key_value(item) for item in field or [])
    result = convert_flan(task, out, flan=flan, mapping=mapping, fields=fields, answer_choices=choices, dataset=dataset,
                          kind=kind)
    typer.echo(f"wrote {len(result.template_file.templates)} template(s) for {result.template_file.dataset_id} to {out}")
    for note in result.skipped:
        typer.echo(f"skipped {note}")


@templates_app.command("convert-lmeval")
@user_errors
def templates_convert_lmeval(
    task_yaml: Annotated[Path, typer.Argument(help="lm-evaluation-harness task YAML (e.g. lm_eval/tasks/piqa/piqa.yaml), or the name of one of the installed lm-eval's task files (piqa, arc_easy, hellaswag).")],
    out: Annotated[Path, typer.Option(help="taskmill YAML file to write.")],
    dataset: Annotated[Optional[str], typer.Option(help="HF dataset id of the output file (default: the task's dataset_path/dataset_name).")] = None,
) -> None:
    """Convert an lm-eval multiple-choice task into a taskmill template whose requests equal lm-eval's."""
    from taskmill.templates.lmeval import convert_lmeval

    result = convert_lmeval(task_yaml, out, dataset=dataset)
    settings = result.eval_settings
    typer.echo(f"wrote lm-eval task {result.task} as template {result.template_file.templates[0].id} for "
               f"{result.template_file.dataset_id} to {out}")
    typer.echo(f"evaluate with: taskmill eval ... --prompt-style {settings['prompt_style']} "
               f"--separator {settings['separator']!r}")


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise TaskmillError(f"--field expects FLAN_FIELD=EXPRESSION, got '{item}'")
    return key.strip(), value.strip()


# --- builders -------------------------------------------------------------------------------------


@app.command("build")
@user_errors
def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Corpus folder (new, or an earlier corpus folder: replaced atomically).")],
    collection: Annotated[Optional[Path], typer.Argument(help="Collection YAML (default: the embedded starter collection).")] = None,
    num_proc: Annotated[Optional[int], typer.Option("--num-proc", help="Rendering workers: processes (local; default 1) or Ray actors (ray; default one per cluster CPU). Output does not depend on it.", show_default=False)] = None,
    executor: Annotated[str, typer.Option("--executor", help="local (processes on this machine) or ray (Ray actors; needs the output folder on storage every node sees).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster to use with --executor ray: auto, HOST:PORT or ray://HOST:PORT (default: start Ray on this machine, or RAY_ADDRESS).")] = None,
    save_to_disk: Annotated[bool, typer.Option("--save-to-disk", help="Also write DIR/hf_dataset (datasets.load_from_disk).")] = False,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="Formats to build, replacing the collection's (repeat).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="datasets cache folder (default: HF_DATASETS_CACHE).")] = None,
    overwrite: Overwrite = False,
    max_size: Annotated[Optional[str], typer.Option("--max-size", help="Refuse, before writing, a corpus.jsonl larger than this (500MB, 20GB; 0: no limit) [default: 1GB].")] = None,
) -> None:
    """Build an instruction-tuning corpus: corpus.jsonl, parquet/ shards, card.md, manifest.json."""
    from taskmill.builders.build import DEFAULT_MAX_SIZE, build_collection, parse_size

    limit = parse_size(max_size) if max_size is not None else DEFAULT_MAX_SIZE
    result = build_collection(collection, out, num_proc=num_proc, executor=executor, address=address,
                              save_to_disk=save_to_disk, formats=format, progress=progress, cache_dir=cache_dir,
                              max_size=limit, overwrite=overwrite)
    typer.echo(f"wrote {result.rows} rows ({result.rendered} rendered) to {result.out}")
    if executor == "local":
        _EXIT_NOW["on_success"] = True


@app.command("preferences")
@user_errors
def preferences_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder or corpus.jsonl (rows with answer_choices are paired).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for preferences.jsonl and manifest.json.")],
    seed: Annotated[int, typer.Option(help="Seed of the sampled wrong choices.")] = 0,
    rejected: Annotated[str, typer.Option(help="sampled (seeded wrong choice) or model (the model's top wrong choice).")] = "sampled",
    model: Annotated[Optional[str], typer.Option(help="Model for --rejected model (hf backend).")] = None,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="Only rows of these formats (repeat).")] = None,
    split: Annotated[Optional[list[str]], typer.Option("--split", help="Only rows of these splits (repeat).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Preference pairs (TRL prompt/chosen/rejected) from labelled rows: gold vs a wrong choice."""
    from taskmill.builders.preference import cli_preferences

    typer.echo(cli_preferences(corpus, out, seed, rejected, model, format or [], split or [], overwrite))


@app.command("self-instruct")
@user_errors
def self_instruct_cmd(
    seeds: Annotated[Path, typer.Argument(help="Seed instructions (JSONL/YAML of instruction/input/output).")],
    model: Annotated[str, typer.Option(help="Model folder or .gguf (hf backend) / served name (openai).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for instructions.jsonl, candidates.jsonl, manifest.json.")],
    backend: Annotated[str, typer.Option(help="hf, vllm or openai.")] = "hf",
    target: Annotated[int, typer.Option(help="New instructions wanted.")] = 50,
    rounds: Annotated[int, typer.Option(help="At most this many generation rounds.")] = 10,
    per_round: Annotated[int, typer.Option(help="Prompts per round.")] = 8,
    rouge_threshold: Annotated[float, typer.Option(help="Reject when ROUGE-L F1 with a pool instruction is at least this.")] = 0.7,
    prompt_style: Annotated[str, typer.Option(help="plain or chat.")] = "plain",
    seed: Annotated[int, typer.Option(help="Seed of the demonstration draws.")] = 0,
    base_url: Annotated[Optional[str], typer.Option(help="openai: server URL up to /v1.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Model-written instructions (Self-Instruct): generate from seeds, filter by rules and ROUGE-L novelty."""
    from taskmill.builders.selfinstruct import SelfInstructConfig, cli_self_instruct

    cfg = SelfInstructConfig(target=target, rounds=rounds, per_round=per_round, rouge_threshold=rouge_threshold,
                             prompt_style=prompt_style, seed=seed)
    typer.echo(cli_self_instruct(seeds, model, out, backend, cfg, base_url, overwrite))


# --- clusters -------------------------------------------------------------------------------------

cluster_app = typer.Typer(help="Cluster tasks by similarity and compare with a reference taxonomy.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
folds_app = typer.Typer(help="Leave-one-cluster-out / leave-one-task-out folds with leakage guards.", no_args_is_help=True)
app.add_typer(folds_app, name="folds")


@cluster_app.command("run")
@user_errors
def cluster_run_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder (holds corpus.jsonl).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (replaced atomically; its manifest's overrides are kept).")],
    embedder: Annotated[str, typer.Option(help="tfidf, minilm, or a sentence-transformers model id/path.")] = "minilm",
    algorithm: Annotated[str, typer.Option(help="agglomerative, kmeans or hdbscan.")] = "agglomerative",
    k: Annotated[Optional[int], typer.Option(help="Number of clusters (default: best silhouette).")] = None,
    distance_threshold: Annotated[Optional[float], typer.Option(help="Agglomerative: cut at this cosine distance.")] = None,
    linkage: Annotated[str, typer.Option(help="Agglomerative linkage: ward, average, complete, single.")] = "ward",
    k_max: Annotated[Optional[int], typer.Option(help="Largest k the silhouette search tries.")] = None,
    min_cluster_size: Annotated[int, typer.Option(help="HDBSCAN smallest cluster.")] = 2,
    rows_per_task: Annotated[int, typer.Option(help="Rows sampled per task to represent it.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the row sample and k-means.")] = 0,
    overrides: Annotated[Optional[Path], typer.Option(help="YAML with an 'overrides' block (pin/merge/rename).")] = None,
    task_types: Annotated[Optional[Path], typer.Option("--task-types", help="YAML: task or dataset -> task type; clusters are named after their tasks' types (shipped taxonomies otherwise).")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write heatmap, dendrogram and PCA PNGs.")] = True,
    overwrite: Overwrite = False,
    weights: Annotated[Optional[str], typer.Option("--weights", help="View weights, e.g. template=1,answer=0.5,shape=0.5,schema=1,rows=0 (unnamed views keep their defaults).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also print what holds each cluster together and each task's nearest tasks (always in summary.md).")] = False,
) -> None:
    """Cluster the tasks of a corpus: clusters.yaml, similarity.csv, plots and summary.md."""
    from taskmill.clusters.cluster import ClusterConfig
    from taskmill.clusters.represent import RepresentConfig, parse_weights
    from taskmill.clusters.run import run_clustering, summary_markdown

    run = run_clustering(
        corpus, out,
        RepresentConfig(embedder=embedder, rows_per_task=rows_per_task, seed=seed, **parse_weights(weights or "")),
        ClusterConfig(algorithm=algorithm, k=k, distance_threshold=distance_threshold, linkage=linkage, k_max=k_max, min_cluster_size=min_cluster_size, seed=seed),
        overrides_file=overrides, draw=plots, overwrite=overwrite, task_types_file=task_types,
    )
    text = summary_markdown(run).split("![")[0]
    typer.echo((text if explain else text.split("## Why these clusters")[0]).rstrip())
    typer.echo(f"\nwrote {out}/clusters.yaml, similarity.csv, summary.md" + (", heatmap.png, dendrogram.png, pca.png, k.png" if plots else ""))


@cluster_app.command("compare")
@user_errors
def cluster_compare_cmd(
    manifest: Annotated[Path, typer.Argument(help="clusters.yaml (or its folder).")],
    reference: Annotated[Path, typer.Argument(help="Reference taxonomy YAML: task or dataset -> label.")],
) -> None:
    """Adjusted Rand index, NMI and confusion table of clusters against a reference taxonomy."""
    from taskmill.clusters.compare import compare_files

    typer.echo(compare_files(manifest, reference).to_markdown())


@folds_app.command("make")
@user_errors
def folds_make_cmd(
    manifest: Annotated[Path, typer.Argument(help="clusters.yaml (or its folder).")],
    corpus: Annotated[Path, typer.Option("--corpus", help="The corpus the clusters were made from.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (replaced atomically).")],
    kind: Annotated[Optional[list[str]], typer.Option(help="cluster and/or task (repeat; default both).")] = None,
    group: Annotated[Optional[list[str]], typer.Option(help="Clusters held out together, comma-separated (names or task:<t>); repeat.")] = None,
    alias: Annotated[Optional[list[str]], typer.Option(help="DATASET=SOURCE: datasets sharing instances, or a config given a source of its own (repeat).")] = None,
    same_source: Annotated[bool, typer.Option("--same-source/--no-same-source", help="Drop train tasks sharing a held-out task's source dataset (all configs of one dataset are one source).")] = True,
    independent_configs: Annotated[Optional[str], typer.Option(
        "--independent-configs", help="Comma-separated datasets whose configs are independent datasets, each its own source "
        "(default: glue,super_glue,taskmill_starter; '' for none).")] = None,
    dedup: Annotated[bool, typer.Option("--dedup/--no-dedup", help="Remove near-duplicate training rows.")] = True,
    threshold: Annotated[float, typer.Option(help="IDF-weighted similarity of instance words at which a training row counts as a near duplicate of a held-out row.")] = 0.75,
    ngram: Annotated[int, typer.Option(help="Words per n-gram when learning template text.")] = 3,
    min_words: Annotated[int, typer.Option(help="Instance words (template text removed) below which only exact prompts match.")] = 4,
    overwrite: Overwrite = False,
) -> None:
    """Write folds.yaml (train/test tasks and leakage counts per fold), summary.md and removed/."""
    from taskmill.clusters.folds import FoldConfig, summary_markdown, write_folds
    from taskmill.clusters.leakage import DedupConfig
    from taskmill.clusters.sources import INDEPENDENT_CONFIGS

    bad = [a for a in alias or [] if a.count("=") != 1]
    if bad:
        raise TaskmillError(f"--alias: expected DATASET=SOURCE, got {', '.join(bad)}")
    config = FoldConfig(
        kinds=tuple(kind or ("cluster", "task")),
        groups=tuple(tuple(x.strip() for x in g.split(",") if x.strip()) for g in group or []),
        source_aliases=dict(a.split("=", 1) for a in alias or []),
        same_source=same_source,
        independent_configs=INDEPENDENT_CONFIGS if independent_configs is None else tuple(
            x.strip() for x in independent_configs.split(",") if x.strip()),
        dedup=DedupConfig(enabled=dedup, threshold=threshold, ngram=ngram, min_words=min_words),
    )
    typer.echo(summary_markdown(write_folds(manifest, corpus, out, config, overwrite=overwrite)))
    typer.echo(f"wrote {out}/folds.yaml, summary.md, removed/")


@folds_app.command("corpus")
@user_errors
def folds_corpus_cmd(
    folds: Annotated[Path, typer.Argument(help="Folder written by `taskmill folds make`.")],
    fold: Annotated[str, typer.Argument(help="Fold name (cluster:<name>, task:<name>, or a bare name).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: train/ and test/ corpora.")],
    corpus: Annotated[Optional[Path], typer.Option(help="Source corpus (default: the one recorded in folds.yaml).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Write one fold's training corpus and held-out corpus (corpus.jsonl schema)."""
    from taskmill.clusters.fold_corpus import write_fold_corpora

    counts = write_fold_corpora(folds, fold, out, corpus, overwrite=overwrite)
    typer.echo(f"wrote {out}/train ({counts['train_rows']} rows, {counts['removed_rows']} removed as duplicates) and {out}/test ({counts['test_rows']} rows)")


# --- trainer --------------------------------------------------------------------------------------


@app.command("train", context_settings={"allow_extra_args": False})
@user_errors
def train_cmd(
    config: Annotated[Path, typer.Argument(help="Training config YAML.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="Dotted overrides: optim.lr=1e-4 lora.r=32")] = None,
    overwrite: Overwrite = False,
    force_config: Annotated[bool, typer.Option("--force-config", help="Continue a run (checkpoint or finished) whose recorded config differs from this one.")] = False,
) -> None:
    """Fine-tune a causal LM (LoRA or full) on a corpus; works under torchrun for DDP/FSDP2.

    Re-running into the same run.output_dir resumes from its newest checkpoint, or does nothing
    when that run finished; a changed config is refused unless --force-config.
    """
    from taskmill.trainer import load_config, train

    result = train(load_config(config, overrides or []), overwrite=overwrite, force_config=force_config)
    if result.records:
        last = result.records[-1]
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f}")
    if result.eval_loss is not None:
        typer.echo(f"eval loss {result.eval_loss:.4f}")
    if result.saved is not None:
        typer.echo(f"saved {result.saved}")


@app.command("reward-eval")
@user_errors
def reward_eval_cmd(
    pairs: Annotated[Path, typer.Argument(help="Held-out pairs: JSONL of prompt/chosen/rejected, or a folder with preferences.jsonl.")],
    model: Annotated[Path, typer.Option("--model", help="Reward model folder (OUTPUT/reward_model of an objective: reward run).")],
    max_length: Annotated[int, typer.Option(help="Longest sequence in tokens (longer ones keep their end, as in training).")] = 2048,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the pairs for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the result as JSON to this file.")] = None,
) -> None:
    """Pairwise accuracy and mean margin of a reward model on held-out pairs, with bootstrap intervals."""
    from taskmill.trainer.reward import cli_reward_eval

    typer.echo(cli_reward_eval(pairs, model, max_length, resamples, seed, out))


@app.command("merge")
@user_errors
def merge_cmd(
    adapter: Annotated[Path, typer.Argument(help="LoRA adapter folder written by `taskmill train`.")],
    out: Annotated[Path, typer.Argument(help="Folder for the merged model.")],
    base: Annotated[Optional[str], typer.Option(help="Base model folder (default: the one the run used).")] = None,
    gguf_file: Annotated[Optional[str], typer.Option(help="GGUF file inside --base.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Merge a LoRA adapter into its base model and save a plain HF model folder."""
    from taskmill.trainer import merge_adapter

    typer.echo(f"saved {merge_adapter(adapter, out, base, gguf_file, overwrite=overwrite)}")


@app.command("head")
@user_errors
def head_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder or corpus.jsonl (classification rows are used).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json and heads.pt.")],
    encoder: Annotated[Optional[str], typer.Option(help="BERT-style encoder folder (default: packaged all-MiniLM-L6-v2).")] = None,
    eval_corpus: Annotated[Optional[Path], typer.Option(help="Evaluation rows from this corpus instead of --eval-split.")] = None,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="Formats used (repeat; default zero_shot).")] = None,
    train_split: Annotated[Optional[list[str]], typer.Option("--train-split", help="Training splits (default train).")] = None,
    eval_split: Annotated[Optional[list[str]], typer.Option("--eval-split", help="Evaluation splits (default validation).")] = None,
    epochs: Annotated[int, typer.Option(help="Full-batch epochs per head.")] = 200,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Head initialisation seed.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Head fine-tuning baseline: frozen encoder, one linear classifier per task (cannot do held-out tasks)."""
    from taskmill.trainer.head import HeadConfig, format_heads, run_heads

    cfg = HeadConfig(encoder=encoder, formats=tuple(format or ["zero_shot"]), train_splits=tuple(train_split or ["train"]),
                     eval_splits=tuple(eval_split or ["validation"]), epochs=epochs, lr=lr, seed=seed)
    typer.echo(format_heads(run_heads(corpus, out, cfg, eval_corpus, overwrite=overwrite)) + f"\nwrote {out}/results.json, heads.pt")


# --- eval -----------------------------------------------------------------------------------------


@app.command("eval")
@user_errors
def eval_command(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder (with corpus.jsonl) or the JSONL file.")],
    model: Annotated[str, typer.Option(help="Model folder, .gguf file, hub id (hf/vllm) or served name (openai).")],
    out: Annotated[Path, typer.Option(help="Output folder (results.json, examples.jsonl/.parquet, cache).")],
    backend: Annotated[str, typer.Option(help="hf, vllm or openai.")] = "hf",
    adapter: Annotated[Optional[str], typer.Option(help="PEFT adapter folder (openai: served adapter name).")] = None,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="Instance format(s); default all but cot.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Only these task(s).")] = None,
    fold: Annotated[Optional[Path], typer.Option(help="Fold JSON: evaluate its test_tasks (held-out cluster).")] = None,
    clusters: Annotated[Optional[Path], typer.Option(help="Task->cluster JSON or cluster manifest, for per-cluster scores.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most N rows per (task, template, format).")] = None,
    prompt_style: Annotated[str, typer.Option(help="plain, chat, auto (chat when the model has a template) or lmeval (lm-eval's requests: prompt, then separator + choice).")] = "auto",
    separator: Annotated[str, typer.Option(help="Prompt/continuation separator for plain style (escapes allowed).")] = "\\n",
    calibrate: Annotated[bool, typer.Option(help="Also report accuracy calibrated on a content-free prompt.")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget for open-ended rows.")] = 64,
    batch_size: Annotated[Optional[int], typer.Option(help="Backend batch size.")] = None,
    device: Annotated[Optional[str], typer.Option(help="hf: cpu, cuda, cuda:1 ...")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="hf/vllm weight dtype.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="openai: server URL up to /v1.")] = None,
    tensor_parallel_size: Annotated[Optional[int], typer.Option(help="vllm: GPUs per engine.")] = None,
    data_parallel_size: Annotated[Optional[int], typer.Option(help="vllm: engine processes.")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% intervals (0: none).")] = 1000,
    cache: Annotated[Optional[Path], typer.Option(help="Cache file shared across runs (default OUT/cache.jsonl).")] = None,
    squad: Annotated[str, typer.Option(help="SQuAD F1 on answers that normalise to nothing: squad_v2 (both empty -> 100) or squad_v1 (0).")] = "squad_v2",
    overwrite: Overwrite = False,
) -> None:
    """Score one model (optionally with an adapter) on a corpus; resumable, cached per example."""
    from taskmill.eval.report import cli_eval

    options = {"batch_size": batch_size, "device": device, "dtype": dtype, "base_url": base_url,
               "tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size}
    typer.echo(cli_eval(
        str(corpus), model=model, out=str(out), backend=backend, adapter=adapter, formats=format, tasks=task,
        fold=str(fold) if fold else None, clusters=str(clusters) if clusters else None, limit=limit,
        prompt_style=prompt_style, separator=separator, calibrate=calibrate, max_new_tokens=max_new_tokens,
        seed=seed, bootstrap=bootstrap, cache=str(cache) if cache else None, options=options, overwrite=overwrite,
        squad=squad,
    ))


@app.command("loco")
@user_errors
def loco_command(
    config: Annotated[Path, typer.Argument(help="LOCO YAML: folds, model, out, train, eval.")],
    executor: Executor = None,
    address: Address = None,
    overwrite: Overwrite = False,
) -> None:
    """Leave-one-cluster-out: per fold, train an adapter and evaluate base and adapter on the held-out cluster."""
    from taskmill.orchestrate.loco import cli_loco

    typer.echo(cli_loco(str(config), overwrite, executor=executor, address=address))


@app.command("report")
@user_errors
def report_command(
    results: Annotated[list[str], typer.Argument(help="results.json files or folders holding them (recursive); LABEL=PATH names the row.")],
    out: Annotated[Path, typer.Option(help="Report folder (leaderboard.html/.md/.csv/.json, plots/).")],
    bootstrap: Annotated[int, typer.Option(help="Resamples of the paired intervals of tuned-minus-base deltas (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of those resamples.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Merge eval results into one leaderboard: Markdown, CSV, JSON and a self-contained HTML page."""
    from taskmill.eval.leaderboard.report import cli_report

    typer.echo(cli_report(results, str(out), bootstrap=bootstrap, seed=seed, overwrite=overwrite))


@app.command("run")
@user_errors
def run_command(
    pipeline: Annotated[Optional[Path], typer.Argument(help="Pipeline YAML (default: the embedded starter pipeline).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (replaces the pipeline's `out`).")] = None,
    executor: Executor = None,
    address: Address = None,
    overwrite: Overwrite = False,
) -> None:
    """The whole job: build -> cluster -> folds -> train + eval per fold -> leaderboard (skips what is done)."""
    from taskmill.orchestrate.pipeline import cli_run

    typer.echo(cli_run(str(pipeline) if pipeline else None, str(out) if out else None, overwrite,
                       executor=executor, address=address))


# Set by a command whose process has nothing left to clean up once it succeeded. A local build's
# parent holds every source row as Python objects: freeing them one by one at interpreter exit
# measured ~0.5 s per build. Its workers are stopped and its output renamed into place by then.
# (Never for commands that may have started Ray or vLLM: their exit handlers stop processes.)
_EXIT_NOW = {"on_success": False}


def main() -> None:
    """Entry point for ``python -m taskmill`` and the ``taskmill`` script."""
    try:
        app()
    except SystemExit as stop:
        if _EXIT_NOW["on_success"] and stop.code in (0, None):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        raise


if __name__ == "__main__":
    main()
