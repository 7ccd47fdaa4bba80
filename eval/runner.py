"""``taskmill eval``: score one model (optionally with an adapter) on a corpus, resumably.

Flow: load and filter the corpus rows -> look each row up in the cache -> ask the backend only for
the missing rows, a chunk at a time, appending each answered chunk to the cache -> score every row
from its raw answers -> write ``examples.jsonl``/``.parquet`` and ``results.json``.
A killed run loses at most the chunk in flight; a re-run with nothing changed asks the model nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from taskmill.errors import ConfigError, DataError
from taskmill.eval.aggregate import aggregate
from taskmill.eval.metrics import DEFAULT_SQUAD, SQUAD_VERSIONS, describe_metrics
from taskmill.backends.requests import PromptStyle
from taskmill.eval.scoring import (
    ScoringOptions,
    choice_raw,
    generate_request,
    is_choice_row,
    loglikelihood_requests,
    request_hash,
    score_row,
)
from taskmill.eval.store import ResultCache, cache_key, package_versions, write_parquet
from taskmill.records import FORMATS, Row
from taskmill.fileio import claim_output, corpus_file, write_json, write_jsonl

EVAL_FORMATS: tuple[str, ...] = ("zero_shot", "few_shot", "zero_shot_options", "few_shot_options")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run.

    Attributes:
        corpus: A corpus folder (with ``corpus.jsonl``) or the JSONL file itself.
        out: Output folder.
        model: Model folder, ``.gguf`` file, hub id (hf/vllm) or served model name (openai).
        adapter: PEFT adapter folder, or None for the base model.
        backend: ``hf``, ``vllm`` or ``openai``.
        backend_options: Extra keyword arguments of the backend (device, dtype, batch_size, ...).
        formats: Instance formats evaluated.
        tasks: Tasks evaluated (empty: all).
        fold: A fold JSON (``taskmill.records.Fold`` fields); restricts tasks to its ``test_tasks``.
        clusters: Task -> cluster mapping for ``per_cluster``: a JSON object, or a cluster manifest.
        limit: At most this many rows per (task, template, format), in corpus order.
        prompt_style: ``plain``, ``chat``, ``auto`` (chat when the model has a chat template) or
            ``lmeval`` (lm-evaluation-harness's requests: ``(prompt, separator + choice)``).
        separator: Text between prompt and continuation in ``plain`` style (``lmeval``: the
            target delimiter that starts every choice).
        calibrate: Also compute ``acc_calibrated`` against ``content_free``.
        content_free: The content-free prompt for calibration.
        max_new_tokens: Generation budget for open-ended rows.
        stop: Stop sequences for generation.
        squad: SQuAD F1's rule for answers that normalise to nothing: ``squad_v2`` (default: both
            empty -> 100, as the SQuAD 2.0 script) or ``squad_v1`` (the v1.1 script: 0).
        seed: Bootstrap seed.
        bootstrap: Bootstrap resamples for the 95% intervals (0: none).
        chunk_size: Rows per backend call; the cache is flushed after each.
        cache: Cache file (default ``OUT/cache.jsonl``); share one across runs to reuse answers.
    """

    corpus: str
    out: str
    model: str
    adapter: str | None = None
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = EVAL_FORMATS
    tasks: tuple[str, ...] = ()
    fold: str | None = None
    clusters: str | None = None
    limit: int | None = None
    prompt_style: str = "auto"
    separator: str = "\n"
    calibrate: bool = False
    content_free: str = "N/A"
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ("\n\n",)
    squad: str = DEFAULT_SQUAD
    seed: int = 0
    bootstrap: int = 1000
    chunk_size: int = 256
    cache: str | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every problem at once."""
        from taskmill.backends import BACKENDS

        problems = []
        if not corpus_file(self.corpus).is_file():
            problems.append(f"corpus: no corpus.jsonl at {self.corpus}")
        if self.backend not in BACKENDS:
            problems.append(f"backend: '{self.backend}' is not one of {', '.join(BACKENDS)}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            problems.append(f"formats: {bad or 'none given'}: expected some of {', '.join(FORMATS)}")
        if self.prompt_style not in ("plain", "chat", "auto", "lmeval"):
            problems.append(f"prompt_style: '{self.prompt_style}': expected plain, chat, auto or lmeval")
        for name in ("limit", "chunk_size", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name}: {value}: expected a positive integer")
        if self.squad not in SQUAD_VERSIONS:
            problems.append(f"squad: '{self.squad}': expected {' or '.join(SQUAD_VERSIONS)}")
        if self.bootstrap < 0:
            problems.append(f"bootstrap: {self.bootstrap}: expected >= 0")
        for name in ("fold", "clusters", "adapter"):
            value = getattr(self, name)
            if value is not None and not Path(value).exists() and not (name == "adapter" and self.backend == "openai"):
                problems.append(f"{name}: {value} does not exist")
        if problems:
            raise ConfigError(problems)

    def config_hash(self) -> str:
        """Hash of the resolved config minus where outputs go (16 hex digits)."""
        obj = {k: v for k, v in asdict(self).items() if k not in ("out", "cache")}
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_rows(config: EvalConfig) -> list[Row]:
    """The corpus rows selected by ``config`` (tasks, fold, formats, limit), in corpus order.

    Raises:
        DataError: A line is not a valid corpus row (names file and line).
    """
    path = corpus_file(config.corpus)
    tasks = set(config.tasks)
    if config.fold:
        fold = json.loads(Path(config.fold).read_text(encoding="utf-8"))
        held = set(fold.get("test_tasks") or [])
        tasks = tasks & held if tasks else held
    rows, seen = [], {}
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = Row.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise DataError(f"not a corpus row ({type(err).__name__}: {err})", file=str(path), row=f"line {lineno}") from None
            if row.format not in config.formats or (tasks and row.task not in tasks):
                continue
            group = (row.task, row.template_id, row.format)
            seen[group] = seen.get(group, 0) + 1
            if config.limit is None or seen[group] <= config.limit:
                rows.append(row)
    return rows


def load_clusters(path: str | None) -> dict[str, str]:
    """Task -> cluster from a JSON object file or a cluster manifest (YAML, the clusters room's)."""
    if path is None:
        return {}
    p = Path(path)
    if p.suffix == ".json":
        obj = json.loads(p.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in obj.items()}
    from taskmill.clusters.manifest import load_manifest

    return dict(load_manifest(p).cluster_of())


def _scoring_options(config: EvalConfig, backend: Any) -> ScoringOptions:
    kind = config.prompt_style
    if kind == "auto":
        kind = "chat" if getattr(backend, "chat_format", None) else "plain"
    return ScoringOptions(
        style=PromptStyle(kind, config.separator), calibrate=config.calibrate, content_free=config.content_free,
        max_new_tokens=config.max_new_tokens, stop=tuple(config.stop),
    )


def run_backend(rows: Sequence[Row], backend: Any, options: ScoringOptions) -> list[dict[str, Any]]:
    """Ask the backend for one chunk of rows: one loglikelihood and one generate call at most."""
    chat = getattr(backend, "chat_format", None)
    choice_rows = [r for r in rows if is_choice_row(r)]
    gen_rows = [r for r in rows if not is_choice_row(r)]
    raws: dict[str, dict[str, Any]] = {}
    if choice_rows:
        per_row = [loglikelihood_requests(r, options, chat) for r in choice_rows]
        answers = backend.loglikelihood([q for reqs in per_row for q in reqs])
        start = 0
        for row, reqs in zip(choice_rows, per_row):
            raws[row.id] = choice_raw(row, answers[start : start + len(reqs)], options.calibrate)
            start += len(reqs)
    if gen_rows:
        texts = backend.generate([generate_request(r, options, chat) for r in gen_rows])
        for row, text in zip(gen_rows, texts):
            raws[row.id] = {"kind": "generate", "prediction": text}
    return [raws[r.id] for r in rows]


def evaluate(config: EvalConfig, backend: Any = None, progress: bool = True, *, overwrite: bool = False) -> dict[str, Any]:
    """Run one evaluation and write its results under ``config.out``.

    Args:
        config: The run.
        backend: A ready backend (tests, LOCO); built from ``config`` when None.
        progress: Show a progress bar.
        overwrite: Write into ``config.out`` even when it is not an earlier eval folder.

    Returns:
        The ``results.json`` content plus ``"model_calls"``: backend calls made by this run.
    """
    config.validate()
    inputs = [config.corpus, config.model] + [p for p in (config.adapter, config.fold, config.clusters) if p]
    target = claim_output(config.out, "eval", inputs=inputs, overwrite=overwrite, mode="update")
    rows = load_rows(config)
    if not rows:
        raise DataError("no rows left after filtering by tasks, fold and formats", file=config.corpus)
    if backend is None:
        backend = build_backend(config)
    options = _scoring_options(config, backend)
    out = target.ensure()
    cache = ResultCache(config.cache or out / "cache.jsonl")
    keys = {r.id: _row_key(r, backend, options) for r in rows}
    todo = [r for r in rows if cache.get(keys[r.id]) is None]
    calls = _fill_cache(todo, backend, options, cache, keys, config.chunk_size, progress)
    examples = [_example(r, cache.get(keys[r.id]), backend, config.squad) for r in rows]
    summary = _summary(config, backend, options, examples)
    write_jsonl(out / "examples.jsonl", examples)
    write_parquet(out / "examples.parquet", examples)
    write_json(out / "results.json", summary)
    return {**summary, "model_calls": calls, "rows_evaluated": len(todo)}


def build_backend(config: EvalConfig) -> Any:
    """The backend named by ``config`` with its model, adapter and options."""
    from taskmill.backends import get_backend

    return get_backend(config.backend, model=config.model, adapter=config.adapter, **config.backend_options)


def _row_key(row: Row, backend: Any, options: ScoringOptions) -> str:
    return cache_key(backend.model_revision, backend.adapter_hash, row.template_id, row.id, row.format, request_hash(row, options))


def _fill_cache(
    todo: list[Row], backend: Any, options: ScoringOptions, cache: ResultCache, keys: dict[str, str],
    chunk_size: int, progress: bool,
) -> int:
    """Answer the uncached rows chunk by chunk; return the number of backend calls."""
    calls = 0
    bar = _progress(len(todo), progress)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        raws = run_backend(chunk, backend, options)
        calls += any(is_choice_row(r) for r in chunk) + any(not is_choice_row(r) for r in chunk)
        cache.put_many({keys[r.id]: raw for r, raw in zip(chunk, raws)})
        bar(len(chunk))
    bar(0, close=True)
    return calls


def _progress(total: int, enabled: bool) -> Callable[..., None]:
    if not enabled or total == 0:
        return lambda n, close=False: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="eval rows", unit="row")

    def step(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return step


def _example(row: Row, raw: dict[str, Any] | None, backend: Any, squad: str) -> dict[str, Any]:
    assert raw is not None
    scored = score_row(row, raw, squad)
    return {
        "id": row.id, "task": row.task, "dataset": row.dataset, "split": row.split, "row_index": row.row_index,
        "template_id": row.template_id, "template_name": row.template_name, "format": row.format,
        "model_revision": backend.model_revision, "adapter_hash": backend.adapter_hash,
        "target": row.target_index if raw["kind"] == "choice" else row.completion,
        "prediction": scored["prediction"], "predictions": scored["predictions"],
        "primary": scored["primary"], "scores": scored["scores"], "stats": scored["stats"], "raw": raw,
    }


# /2: corpus-level metrics (BLEU, chrF) are corpus scores, not means of sentence scores; metric_info.
RESULTS_SCHEMA = "taskmill.eval.results/2"
VERSIONED = ("taskmill", "torch", "transformers", "peft", "vllm", "rouge-score", "sacrebleu", "numpy")


def template_sources(corpus: str, tasks: set[str]) -> list[dict[str, Any]]:
    """Where the templates of ``tasks`` came from, from the corpus manifest (converted files only).

    A template file converted from another tool (``taskmill templates convert-lmeval``) carries a
    ``source`` block (lm-eval task name and version, and the eval settings that reproduce its
    requests); the build copies it into ``manifest.json``. Hand-written files have none, and a
    corpus without a manifest (a bare JSONL) gives an empty list.
    """
    path = corpus_file(corpus).parent / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = manifest.get("templates") if isinstance(manifest, dict) else None
    return [{"task": e["task"], "template_file": e.get("path"), **e["source"]}
            for e in entries or [] if isinstance(e, dict) and e.get("source") and e.get("task") in tasks]


def _summary(config: EvalConfig, backend: Any, options: ScoringOptions, examples: list[dict]) -> dict[str, Any]:
    agg = aggregate(examples, clusters=load_clusters(config.clusters), n_boot=config.bootstrap, seed=config.seed)
    sources = template_sources(config.corpus, {e["task"] for e in examples})
    for source in sources:  # converted templates reproduce their origin only with its eval settings
        wanted = source.get("eval") or {}
        source["eval_settings_used"] = (wanted.get("prompt_style") == options.style.kind
                                        and wanted.get("separator") == options.style.separator)
    return {
        "schema": RESULTS_SCHEMA,
        "versions": package_versions(VERSIONED),
        "config": asdict(config),
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "backend": backend.name,
        "model_revision": backend.model_revision,
        "adapter_hash": backend.adapter_hash,
        "prompt_style": {"kind": options.style.kind, "separator": options.style.separator},
        "n_examples": len(examples),
        "metric_info": describe_metrics(sorted({m for ex in examples for m in ex["scores"]}), config.squad),
        **({"template_sources": sources} if sources else {}),
        **agg,
    }
