"""``taskmill loco CONFIG``: leave-one-cluster-out runs over the folds of a cluster manifest.

For every fold: write its train and held-out corpora (``taskmill.clusters``), train a LoRA adapter on
the train corpus (``taskmill.trainer``), evaluate the base model and the adapter on the held-out
corpus (``taskmill.eval``), and record both. The work is cut into units (the base model's answers,
each fold's base results, each fold x recipe; :mod:`taskmill.orchestrate.loco_units`) that an
executor runs here one after another or across a Ray cluster (:mod:`taskmill.executors`), with the
same bytes either way. Units already finished are skipped, so a killed run continues where it
stopped; the base model answers each held-out task once, however many folds hold it out.

Config (YAML)::

    folds: runs/folds            # written by `taskmill folds make`
    model: models/base           # HF folder or .gguf file; trained and evaluated
    out: runs/loco
    fold_names: []               # default: every fold
    train: {lora: {r: 8}, run: {max_steps: 100}}   # trainer config (mapping or YAML path);
                                 # model.path, data.corpus, run.output_dir are set per fold
    eval: {backend: hf, formats: [zero_shot], limit: 200}   # EvalConfig fields (but cache: each
                                 # unit has its own)
    recipes: [sft, sft+dpo]      # optional: also DPO after SFT (see taskmill.orchestrate.recipes)
    executor: {kind: ray, address: auto, num_gpus_per_unit: 1}   # optional (taskmill.executors.config)

Output: ``OUT/folds/<fold>/{data,train,base,tuned}``, ``OUT/base/<fold>/`` (the base model's answers),
``OUT/units/<unit>.json`` (one record per unit: state, host, seconds, model calls) and
``OUT/loco.json`` (per fold and task: base score, tuned score, difference).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from taskmill.errors import ConfigError
from taskmill.eval.runner import EvalConfig
from taskmill.executors import ExecutorConfig, executor_problems
from taskmill.fileio import claim_output, write_json
from taskmill.orchestrate.loco_units import FoldInfo, as_executor_unit, finished, fold_summary, plan_units, slug

# cache: every unit keeps its own (one file appended by several processes would interleave lines)
_EVAL_FIELDS = {f.name for f in fields(EvalConfig)} - {"corpus", "out", "model", "adapter", "fold", "cache"}
_KEYS = {"folds", "model", "out", "fold_names", "train", "eval", "recipes", "dpo", "preference", "executor", "rlhf"}


@dataclass(frozen=True)
class LocoConfig:
    """A LOCO run (see the module docstring for the YAML form)."""

    folds: str
    model: str
    out: str
    fold_names: tuple[str, ...] = ()
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    recipes: tuple[str, ...] = ("sft",)
    dpo: dict[str, Any] = field(default_factory=dict)
    preference: dict[str, Any] = field(default_factory=dict)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    rlhf: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Any, file: str | None = None) -> LocoConfig:
        """Validate a parsed YAML mapping, listing every problem at once."""
        problems: list[str] = []
        if not isinstance(raw, dict):
            raise ConfigError(["expected a mapping with folds, model, out, train, eval"], file=file)
        for key in ("folds", "model", "out"):
            if not isinstance(raw.get(key), str):
                problems.append(f"{key}: required, a path")
        unknown = set(raw) - _KEYS
        from taskmill.orchestrate.recipes import check_recipes

        check_recipes(raw, problems)
        problems += [f"{k}: unknown key" for k in sorted(unknown)]
        train = raw.get("train") or {}
        if isinstance(train, str):
            from taskmill.fileio import read_yaml

            train = read_yaml(Path(train)) if Path(train).is_file() else None
        if not isinstance(train, dict):
            problems.append("train: expected a trainer config mapping or the path of one")
        ev = raw.get("eval") or {}
        bad = sorted(set(ev) - _EVAL_FIELDS - {"cache"}) if isinstance(ev, dict) else ["(not a mapping)"]
        problems += [f"eval.{k}: not an eval setting (one of {', '.join(sorted(_EVAL_FIELDS))})" for k in bad]
        if isinstance(ev, dict) and "cache" in ev:
            problems.append("eval.cache: not a LOCO setting: every unit keeps its own cache in its output folder")
        problems += executor_problems(raw.get("executor"))
        if isinstance(train, dict) and isinstance(raw.get("dpo") or {}, dict):
            from taskmill.orchestrate.recipes import check_serving_ranks

            check_serving_ranks(train, raw.get("dpo") or {}, raw.get("recipes") or ["sft"], ev, problems,
                                raw.get("rlhf") if isinstance(raw.get("rlhf"), dict) else None)
        if problems:
            raise ConfigError(problems, file=file)
        return cls(raw["folds"], raw["model"], raw["out"], tuple(raw.get("fold_names") or ()), train, dict(ev),
                   tuple(raw.get("recipes") or ("sft",)), dict(raw.get("dpo") or {}), dict(raw.get("preference") or {}),
                   ExecutorConfig(**(raw.get("executor") or {})), dict(raw.get("rlhf") or {}))


def load_loco_config(path: str | Path) -> LocoConfig:
    """Read and validate a LOCO YAML file."""
    from taskmill.fileio import read_yaml

    return LocoConfig.from_mapping(read_yaml(Path(path)), file=str(path))


def train_fold(config: LocoConfig, train_corpus: Path, out: Path) -> Path:
    """Train (or find) the fold's adapter; returns its folder."""
    adapter = out / "adapter"
    if (adapter / "adapter_config.json").is_file():
        return adapter
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in config.train.items()}
    return train_adapter(config, data, {}, {"corpus": str(train_corpus)}, out, "train")


def train_adapter(config: LocoConfig, data: dict[str, Any], model: dict[str, Any], corpus: dict[str, Any],
                  out: Path, section: str) -> Path:
    """Train one fold's LoRA adapter on the LOCO model; ``data`` is the trainer config to complete.

    Args:
        config: The LOCO run (its model is trained).
        data: Trainer config mapping (changed in place: model path, data, output, LoRA on).
        model: Extra ``model`` settings (e.g. ``init_adapter``).
        corpus: ``data`` settings naming the training corpus.
        out: The run's output folder.
        section: Config section named in errors.
    """
    from taskmill.backends.hf_load import split_gguf
    from taskmill.trainer import config_from_dict, train

    folder, gguf = split_gguf(config.model, None)
    data.setdefault("model", {}).update({"path": folder, **model, **({"gguf_file": gguf} if gguf else {})})
    data.setdefault("data", {}).update(corpus)
    data.setdefault("run", {})["output_dir"] = str(out)
    data["lora"] = {**(data.get("lora") or {}), "enabled": True}
    result = train(config_from_dict(data))
    if result.saved is None:
        raise ConfigError([f"{section}: the run saved no adapter (run.save_final must stay true)"])
    return Path(result.saved)


def run_loco(config: LocoConfig, backend_factory: Callable[[Path | None], Any] | None = None, *,
             overwrite: bool = False, progress: bool = False,
             on_unit: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every selected fold's unfinished units on ``config.executor``; write and return ``OUT/loco.json``.

    The executor is connected and checked (the cluster has what a unit asks for, every node sees and
    can write the output folder) before the fold corpora are written or any unit starts; a failed
    check leaves no output folder behind that was not there before.

    Args:
        config: The run.
        backend_factory: ``(adapter or None) -> backend``; default builds one from ``config.eval``
            (here, the base backend is built once and reused; each Ray unit builds its own).
        overwrite: Write into ``config.out`` even when it is not an earlier LOCO folder.
        progress: Show a progress bar over the units and print each one's line as it finishes.
        on_unit: Called with each unit's id and result as it finishes (not for units skipped as finished).
    """
    from taskmill.clusters.fold_corpus import load_folds
    from taskmill.executors import Session

    target = claim_output(config.out, "loco", inputs=[config.folds, config.model], overwrite=overwrite, mode="update")
    loaded = load_folds(config.folds)  # read once: folds.yaml holds every fold's removed-row list
    folds = fold_infos(config, target.path, loaded)
    plan = plan_units(config, folds, target.path)
    done = {u.id: r for u in plan if (r := finished(u)) is not None}
    # Here the base backend is built once for every unit; a Ray worker builds its own (a loaded
    # model does not travel).
    factory = backend_factory or (default_factory(config) if config.executor.kind == "local" else None)
    todo = [as_executor_unit(u, config, factory) for u in plan if u.id not in done]
    # nothing to run: no cluster to start or join
    with Session(config.executor if todo else ExecutorConfig()) as executor:
        executor.check_fits(todo)
        out = _ensure_checked(target, executor, [p for p in (config.folds, config.model) if Path(p).exists()])
        write_fold_inputs(config, folds, loaded)
        if progress:
            print(f"{len(todo)} of {len(plan)} units to run ({len(done)} finished earlier) on the "
                  f"{config.executor.kind} executor", flush=True)

        def describe(unit: Any, result: dict[str, Any]) -> str | None:
            if on_unit is not None:
                on_unit(unit.id, result)
            return result["line"] if progress else None

        executor.run(todo, done=done, describe=describe, progress=progress)
    summary = {"schema": "taskmill.orchestrate.loco/1", "model": config.model, "folds": fold_summary(config, folds)}
    if len(config.recipes) > 1:
        summary["recipes"] = list(config.recipes)
    write_json(out / "loco.json", summary)
    return summary


def _ensure_checked(target: Any, executor: Any, inputs: list[str]) -> Path:
    """Create the output folder and check that every node can write it; on failure, what this made is
    removed again (the folder, or the marker of a folder that was empty)."""
    import shutil

    from taskmill.fileio import MARKER

    existed = target.path.exists()
    was_empty = existed and not any(target.path.iterdir())
    out = target.ensure()
    try:
        executor.check_nodes([out], inputs)
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        elif was_empty:
            (out / MARKER).unlink(missing_ok=True)
        raise
    return out


def fold_infos(config: LocoConfig, out: Path, loaded: tuple[dict[str, Any], list[Any]]) -> list[FoldInfo]:
    """The selected folds, in config order (unknown names fail here, before anything is written)."""
    from taskmill.clusters.fold_corpus import find_fold

    names = list(config.fold_names) or [e.fold.name for e in loaded[1]]
    folds = []
    for name in names:
        fold = find_fold(loaded[1], name).fold
        folds.append(FoldInfo(fold.name, tuple(fold.held_out), tuple(fold.test_tasks), str(out / "folds" / slug(name))))
    return folds


def write_fold_inputs(config: LocoConfig, folds: list[FoldInfo], loaded: tuple[dict[str, Any], list[Any]]) -> None:
    """Write each fold's corpora (unless present) and ``fold.json``: done by the driver before any unit,
    since every unit of a fold reads them."""
    from taskmill.clusters.fold_corpus import find_fold, write_fold_corpora

    for info in folds:
        fold = find_fold(loaded[1], info.name).fold
        data = Path(info.dir) / "data"
        if not (data / "test" / "manifest.json").is_file():
            write_fold_corpora(config.folds, info.name, data, loaded=loaded)
        write_json(Path(info.dir) / "fold.json", {"name": fold.name, "held_out": list(fold.held_out),
                                                  "train_tasks": list(fold.train_tasks), "test_tasks": list(fold.test_tasks)})


def default_factory(config: LocoConfig) -> Callable[[Path | None], Any]:
    """``(adapter or None) -> backend`` from ``config.eval``; the base backend is built once per factory.

    With vLLM, every fold's adapter is served by the one base engine (a ``LoRARequest`` each), also
    when the first backend asked for has an adapter. ``make.release()`` shuts that engine down (it
    holds most of the GPU) before a fold is trained in this process; the next evaluation builds it
    again.
    """
    from taskmill.backends import get_backend

    ev = config.eval
    name, options = ev.get("backend", "hf"), dict(ev.get("backend_options") or {})
    base: dict[str, Any] = {}

    def make(adapter: Path | None) -> Any:
        if name == "vllm":
            if "engine" not in base:
                base["engine"] = get_backend(name, model=config.model, adapter=None, **options)
            return base["engine"].with_adapter(adapter)  # one engine, one LoRARequest per fold
        if adapter is None and "base" in base:
            return base["base"]
        backend = get_backend(name, model=config.model, adapter=str(adapter) if adapter else None, **options)
        if adapter is None:
            base["base"] = backend
        return backend

    def release() -> None:
        if "engine" in base:
            base["engine"].close()

    make.release = release  # type: ignore[attr-defined]
    return make


def release_backend(factory: Callable[..., Any]) -> None:
    """Free the GPU memory a backend factory holds (its vLLM engine) before training in this process."""
    release = getattr(factory, "release", None)
    if callable(release):
        release()


def format_loco(summary: dict[str, Any]) -> str:
    """One line per fold and held-out task: base, tuned, difference."""
    lines = [f"{'fold':24s} {'task':24s} {'format':18s} {'base':>7s} {'tuned':>7s} {'delta':>7s}"]
    for fold in summary["folds"]:
        for t in fold["tasks"]:
            tuned = f"{t['tuned']:7.2f}" if t["tuned"] is not None else "      -"
            delta = f"{t['delta']:+7.2f}" if t["delta"] is not None else "      -"
            lines.append(f"{fold['fold'][:24]:24s} {t['task'][:24]:24s} {t['format']:18s} {t['base']:7.2f} {tuned} {delta}")
    return "\n".join(lines)


def cli_loco(config_path: str, overwrite: bool = False, executor: str | None = None, address: str | None = None) -> str:
    """Run ``taskmill loco CONFIG [--executor local|ray] [--address A]`` and return the text to print."""
    from dataclasses import replace

    config = load_loco_config(config_path)
    config = replace(config, executor=config.executor.overridden(executor, address))
    summary = run_loco(config, overwrite=overwrite, progress=True)
    if len(config.recipes) > 1:
        from taskmill.orchestrate.recipes import format_recipes

        return format_recipes(summary, list(config.recipes)) + f"\nwrote {Path(config.out) / 'loco.json'}"
    return format_loco(summary) + f"\nwrote {Path(config.out) / 'loco.json'}"
