"""``taskmill loco CONFIG``: leave-one-cluster-out runs over the folds of a cluster manifest.

For every fold: write its train and held-out corpora (``taskmill.clusters``), train a LoRA adapter on
the train corpus (``taskmill.trainer``), evaluate the base model and the adapter on the held-out
corpus (this package), and record both. Steps already done are skipped: a fold's corpora, a finished
adapter, and every evaluated example (one cache shared by all folds, so the base model's answers on a
task are computed once however many folds hold it out).

Config (YAML)::

    folds: runs/folds            # written by `taskmill folds make`
    model: models/base           # HF folder or .gguf file; trained and evaluated
    out: runs/loco
    fold_names: []               # default: every fold
    train: {lora: {r: 8}, run: {max_steps: 100}}   # trainer config (mapping or YAML path);
                                 # model.path, data.corpus, run.output_dir are set per fold
    eval: {backend: hf, formats: [zero_shot], limit: 200}   # EvalConfig fields
    recipes: [sft, sft+dpo]      # optional: also DPO after SFT (see taskmill.orchestrate.recipes)

Output: ``OUT/folds/<fold>/{data,train,base,tuned}`` and ``OUT/loco.json`` (per fold and task:
base score, tuned score, difference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError
from taskmill.eval.runner import EvalConfig, evaluate
from taskmill.fileio import claim_output, write_json

_EVAL_FIELDS = {f.name for f in fields(EvalConfig)} - {"corpus", "out", "model", "adapter", "fold"}


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

    @classmethod
    def from_mapping(cls, raw: Any, file: str | None = None) -> LocoConfig:
        """Validate a parsed YAML mapping, listing every problem at once."""
        problems: list[str] = []
        if not isinstance(raw, dict):
            raise ConfigError(["expected a mapping with folds, model, out, train, eval"], file=file)
        for key in ("folds", "model", "out"):
            if not isinstance(raw.get(key), str):
                problems.append(f"{key}: required, a path")
        unknown = set(raw) - {"folds", "model", "out", "fold_names", "train", "eval", "recipes", "dpo", "preference"}
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
        bad = sorted(set(ev) - _EVAL_FIELDS) if isinstance(ev, dict) else ["(not a mapping)"]
        problems += [f"eval.{k}: not an eval setting (one of {', '.join(sorted(_EVAL_FIELDS))})" for k in bad]
        if isinstance(train, dict) and isinstance(raw.get("dpo") or {}, dict):
            from taskmill.orchestrate.recipes import check_serving_ranks

            check_serving_ranks(train, raw.get("dpo") or {}, raw.get("recipes") or ["sft"], ev, problems)
        if problems:
            raise ConfigError(problems, file=file)
        return cls(raw["folds"], raw["model"], raw["out"], tuple(raw.get("fold_names") or ()), train, dict(ev),
                   tuple(raw.get("recipes") or ("sft",)), dict(raw.get("dpo") or {}), dict(raw.get("preference") or {}))


def load_loco_config(path: str | Path) -> LocoConfig:
    """Read and validate a LOCO YAML file."""
    from taskmill.fileio import read_yaml

    return LocoConfig.from_mapping(read_yaml(Path(path)), file=str(path))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "fold"


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


def _eval(config: LocoConfig, corpus: Path, out: Path, adapter: Path | None, fold_file: str, backend: Any) -> dict:
    ev = {**config.eval, "cache": config.eval.get("cache") or str(Path(config.out) / "cache.jsonl")}
    cfg = EvalConfig(corpus=str(corpus), out=str(out), model=config.model,
                     adapter=str(adapter) if adapter else None, fold=fold_file, **ev)
    return evaluate(cfg, backend=backend, progress=False)


def run_loco(config: LocoConfig, backend_factory: Any = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Run every selected fold; write and return ``OUT/loco.json``'s content.

    Args:
        config: The run.
        backend_factory: ``(adapter or None) -> backend``; default builds one from ``config.eval``
            (the base backend is built once and reused for every fold).
        overwrite: Write into ``config.out`` even when it is not an earlier LOCO folder.
    """
    from taskmill.clusters.fold_corpus import find_fold, load_folds, write_fold_corpora

    out = claim_output(config.out, "loco", inputs=[config.folds, config.model], overwrite=overwrite,
                       mode="update").ensure()
    folds = load_folds(config.folds)  # read once: folds.yaml holds every fold's removed-row list
    entries = folds[1]
    names = list(config.fold_names) or [e.fold.name for e in entries]
    factory = backend_factory or _default_factory(config)
    base_backend = factory(None)
    report = []
    for name in names:
        fold_dir = out / "folds" / _slug(name)
        data = fold_dir / "data"
        if not (data / "test" / "manifest.json").is_file():
            write_fold_corpora(config.folds, name, data, loaded=folds)
        fold_file = fold_dir / "fold.json"
        entry = find_fold(entries, name)
        write_json(fold_file, {"name": entry.fold.name, "held_out": list(entry.fold.held_out),
                               "train_tasks": list(entry.fold.train_tasks), "test_tasks": list(entry.fold.test_tasks)})
        adapter = train_fold(config, data / "train", fold_dir / "train")
        base = _eval(config, data / "test", fold_dir / "base", None, str(fold_file), base_backend)
        tuned = _eval(config, data / "test", fold_dir / "tuned", adapter, str(fold_file), factory(adapter))
        report.append(_fold_report(entry.fold.name, list(entry.fold.held_out), base, tuned))
        for recipe in config.recipes[1:]:  # DPO after SFT (taskmill.orchestrate.recipes)
            from taskmill.orchestrate.recipes import add_recipe, recipe_slug, train_dpo_after_sft

            extra = train_dpo_after_sft(config, data / "train", adapter, fold_dir / f"train_{recipe_slug(recipe)}")
            res = _eval(config, data / "test", fold_dir / f"tuned_{recipe_slug(recipe)}", extra, str(fold_file), factory(extra))
            add_recipe(report[-1], recipe, res)
    summary = {"schema": "taskmill.orchestrate.loco/1", "model": config.model, "folds": report}
    if len(config.recipes) > 1:
        summary["recipes"] = list(config.recipes)
    write_json(out / "loco.json", summary)
    return summary


def _default_factory(config: LocoConfig) -> Any:
    from taskmill.backends import get_backend

    ev = config.eval
    name, options = ev.get("backend", "hf"), dict(ev.get("backend_options") or {})
    base: dict[str, Any] = {}

    def make(adapter: Path | None) -> Any:
        if name == "vllm" and "engine" in base:
            return base["engine"].with_adapter(adapter)  # one engine, one LoRARequest per fold
        backend = get_backend(name, model=config.model, adapter=str(adapter) if adapter else None, **options)
        if name == "vllm" and adapter is None:
            base["engine"] = backend
        return backend

    return make


def _fold_report(name: str, held_out: list[str], base: dict, tuned: dict) -> dict[str, Any]:
    tuned_by = {(t["task"], t["format"]): t for t in tuned["per_task"]}
    tasks = []
    for b in base["per_task"]:
        t = tuned_by.get((b["task"], b["format"]))
        tasks.append({"task": b["task"], "format": b["format"], "metrics": b["metrics"], "base": b["score"],
                      "tuned": t["score"] if t else None, "delta": round(t["score"] - b["score"], 4) if t else None})
    return {"fold": name, "held_out": held_out, "base_model_calls": base["model_calls"],
            "tuned_model_calls": tuned["model_calls"], "adapter_hash": tuned["adapter_hash"], "tasks": tasks}


def format_loco(summary: dict[str, Any]) -> str:
    """One line per fold and held-out task: base, tuned, difference."""
    lines = [f"{'fold':24s} {'task':24s} {'format':18s} {'base':>7s} {'tuned':>7s} {'delta':>7s}"]
    for fold in summary["folds"]:
        for t in fold["tasks"]:
            tuned = f"{t['tuned']:7.2f}" if t["tuned"] is not None else "      -"
            delta = f"{t['delta']:+7.2f}" if t["delta"] is not None else "      -"
            lines.append(f"{fold['fold'][:24]:24s} {t['task'][:24]:24s} {t['format']:18s} {t['base']:7.2f} {tuned} {delta}")
    return "\n".join(lines)


def cli_loco(config_path: str, overwrite: bool = False) -> str:
    """Run ``taskmill loco CONFIG`` and return the text to print."""
    config = load_loco_config(config_path)
    summary = run_loco(config, overwrite=overwrite)
    if len(config.recipes) > 1:
        from taskmill.orchestrate.recipes import format_recipes

        return format_recipes(summary, list(config.recipes)) + f"\nwrote {Path(config.out) / 'loco.json'}"
    return format_loco(summary) + f"\nwrote {Path(config.out) / 'loco.json'}"
