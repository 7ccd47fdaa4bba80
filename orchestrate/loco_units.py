"""The units of a LOCO run, what each one does, and the record it leaves when it is finished.

Per fold F, in the config's fold order (ids as shown in progress lines and records):

- ``answers:F``: the base model's answers on the held-out tasks that F is the *first* fold to hold
  out, in ``OUT/base/<F>/`` with its own cache. Every held-out task belongs to exactly one such unit,
  so N folds that hold a task out pay one base evaluation, whatever runs where and in which order;
  a fold whose tasks were all held out before has none.
- ``base:F``: F's base results (``OUT/folds/<F>/base/``) scored from those answers alone: its
  cache is the union of the caches of the ``answers`` units covering F's tasks (its dependencies),
  and it loads no model.
- ``sft:F``: trains F's adapter (``train/``) and evaluates it on the held-out tasks (``tuned/``).
- ``sft+dpo:F``: DPO after SFT (``train_sft_dpo/``, ``tuned_sft_dpo/``); depends on ``sft:F``,
  whose adapter it starts from.

Every unit writes inside its own folders only, each file atomically, and its own cache (appends
from several processes to one file would interleave). ``OUT/units/<unit>.json`` is its record:
``state: running`` with host and pid when it starts, ``state: done`` with its key, seconds and
model calls once all its outputs are written. A unit is *finished* when its record says done with
the key the current config gives it and its results exist; a re-run dispatches only the others.
The key hashes the unit's id, the settings it depends on and its dependencies' keys, so a changed
eval setting re-runs the evaluations (answered rows still come from the unit's cache) and a
finished adapter is kept as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from taskmill.errors import DataError, TaskmillError
from taskmill.fileio import claim_output, write_json, write_jsonl

if TYPE_CHECKING:
    from taskmill.executors import Unit
    from taskmill.orchestrate.loco import LocoConfig

UNITS_DIR = "units"
ANSWERS_DIR = "base"
RECORD_SCHEMA = "taskmill.orchestrate.loco.unit/1"


def slug(name: str) -> str:
    """Folder-safe name (``cluster:news`` -> ``cluster_news``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "fold"


@dataclass(frozen=True)
class FoldInfo:
    """A fold as the units need it.

    Attributes:
        name: The fold's name (``cluster:news``).
        held_out: Its held-out clusters.
        test_tasks: Its held-out tasks, in folds.yaml order.
        dir: ``OUT/folds/<slug>`` (corpora in ``data/``, ``fold.json``).
    """

    name: str
    held_out: tuple[str, ...]
    test_tasks: tuple[str, ...]
    dir: str


@dataclass(frozen=True)
class LocoUnit:
    """One unit of a LOCO run (see the module docstring).

    Attributes:
        id: ``answers:F``, ``base:F``, ``sft:F`` or ``sft+dpo:F``.
        kind: ``answers``, ``base`` or the recipe (``sft``, ``sft+dpo``).
        fold: The fold it belongs to.
        out: The LOCO output folder.
        key: Hash of what it depends on; a finished record with another key is stale.
        deps: Ids of the units it needs first.
        tasks: ``answers``: the tasks it answers.
        answers: ``base``: the ``answers`` folders its tasks' answers are in.
    """

    id: str
    kind: str
    fold: FoldInfo
    out: str
    key: str
    deps: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()

    @property
    def record(self) -> Path:
        """``OUT/units/<id>.json``."""
        return Path(self.out) / UNITS_DIR / f"{slug(self.id)}.json"

    @property
    def folder(self) -> Path:
        """The folder holding its results (``results.json``)."""
        fold = Path(self.fold.dir)
        if self.kind == "answers":
            return Path(self.out) / ANSWERS_DIR / slug(self.fold.name)
        if self.kind == "base":
            return fold / "base"
        return fold / ("tuned" if self.kind == "sft" else f"tuned_{_recipe_slug(self.kind)}")

    def outputs(self) -> list[Path]:
        """Files that exist once it has finished (results.json is written last by eval)."""
        return [self.folder / "results.json"]


def _recipe_slug(recipe: str) -> str:
    from taskmill.orchestrate.recipes import recipe_slug

    return recipe_slug(recipe)


def _key(unit_id: str, settings: Any, deps: Sequence[str]) -> str:
    blob = json.dumps({"unit": unit_id, "settings": settings, "deps": list(deps)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _settings(config: LocoConfig, kind: str) -> dict[str, Any]:
    """The parts of the config a unit of ``kind`` depends on."""
    settings: dict[str, Any] = {"model": config.model, "eval": config.eval}
    if kind not in ("answers", "base"):
        settings["train"] = config.train
    if kind == "sft+dpo":
        settings.update(dpo=config.dpo, preference=config.preference)
    if kind == "sft+rlhf":
        settings.update(rlhf=config.rlhf)
    return settings


def plan_units(config: LocoConfig, folds: Sequence[FoldInfo], out: Path) -> list[LocoUnit]:
    """Every unit of the run, in submission order (folds in config order, dependencies first)."""
    wanted = set(config.eval.get("tasks") or ())
    owner: dict[str, LocoUnit] = {}  # held-out task -> the answers unit that answers it
    units: list[LocoUnit] = []

    def add(unit_id: str, kind: str, fold: FoldInfo, deps: Sequence[LocoUnit] = (), **extra: Any) -> LocoUnit:
        key = _key(unit_id, {**_settings(config, kind), **extra}, [d.key for d in deps])
        unit = LocoUnit(unit_id, kind, fold, str(out), key, tuple(d.id for d in deps), **extra)
        units.append(unit)
        return unit

    for fold in folds:
        new = tuple(t for t in fold.test_tasks if t not in owner and (not wanted or t in wanted))
        if new:
            answers = add(f"answers:{fold.name}", "answers", fold, tasks=new)
            owner.update(dict.fromkeys(new, answers))
        deps = list({owner[t].id: owner[t] for t in fold.test_tasks if t in owner}.values())
        add(f"base:{fold.name}", "base", fold, deps, answers=tuple(str(d.folder) for d in deps))
        sft = add(f"sft:{fold.name}", "sft", fold)
        for recipe in config.recipes[1:]:
            add(f"{recipe}:{fold.name}", recipe, fold, [sft])
    return units


def finished(unit: LocoUnit) -> dict[str, Any] | None:
    """The result a finished unit recorded, or None when it must run (again)."""
    try:
        record = json.loads(unit.record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("state") != "done" or record.get("key") != unit.key:
        return None
    if not all(p.is_file() for p in unit.outputs()):
        return None
    return record.get("result")


def as_executor_unit(unit: LocoUnit, config: LocoConfig, factory: Callable[[Path | None], Any] | None) -> Unit:
    """The executor's view of a unit: :func:`run_unit` with its arguments and resources."""
    from taskmill.executors import Resources, Unit

    ex = config.executor
    if unit.kind == "base":  # scoring from cached answers: no model, no GPU
        resources = Resources(num_cpus=1, num_gpus=0, threads=None)
    else:
        resources = Resources(num_cpus=ex.num_cpus_per_unit, num_gpus=ex.num_gpus_per_unit,
                              threads=ex.num_cpus_per_unit)
    return Unit(unit.id, run_unit, (unit, config, factory), unit.deps, resources)


def run_unit(unit: LocoUnit, config: LocoConfig, factory: Callable[[Path | None], Any] | None,
             *deps: dict[str, Any]) -> dict[str, Any]:
    """Do one unit's work and record it (what the executor calls, here or on a Ray worker).

    Args:
        unit: The unit.
        config: The LOCO run.
        factory: ``adapter or None -> backend``; None builds the default one from ``config.eval``
            (a Ray worker builds its own).
        deps: Results of the units in ``unit.deps``.

    Returns:
        ``line`` (one line for the driver to print), ``model_calls``, and ``adapter`` for training units.
    """
    from taskmill.orchestrate.loco import default_factory, release_backend

    start = time.perf_counter()
    _write_record(unit, {"state": "running"})
    work = {"answers": _answers, "base": _base, "sft": _sft}.get(unit.kind, _recipe)
    own = factory is None  # a Ray worker builds its own, and frees its engine before its next unit
    factory = default_factory(config) if factory is None else factory
    try:
        result = work(unit, config, factory, *deps)
    finally:
        if own:
            release_backend(factory)
    seconds = round(time.perf_counter() - start, 2)
    result["line"] = f"{unit.id:32s} {result['line']}  ({result['model_calls']} model calls, {seconds:.1f} s)"
    _write_record(unit, {"state": "done", "seconds": seconds, "model_calls": result["model_calls"], "result": result})
    return result


def _write_record(unit: LocoUnit, fields: dict[str, Any]) -> None:
    record = {"schema": RECORD_SCHEMA, "unit": unit.id, "key": unit.key, "host": socket.gethostname(),
              "pid": os.getpid(), **fields}
    write_json(unit.record, record, sort_keys=True)


def _evaluate(config: LocoConfig, fold: FoldInfo, out: Path, backend: Any, *, adapter: Path | None = None,
              tasks: Sequence[str] | None = None, with_fold: bool = True) -> dict[str, Any]:
    """Evaluate on the fold's held-out corpus into ``out`` (its cache: ``out/cache.jsonl``)."""
    from taskmill.eval.runner import EvalConfig, evaluate

    ev = dict(config.eval)
    if tasks is not None:
        ev["tasks"] = list(tasks)
    cfg = EvalConfig(corpus=str(Path(fold.dir) / "data" / "test"), out=str(out), model=config.model,
                     adapter=str(adapter) if adapter else None,
                     fold=str(Path(fold.dir) / "fold.json") if with_fold else None, **ev)
    return evaluate(cfg, backend=backend, progress=False)


def _scores(results: dict[str, Any]) -> str:
    per = results["per_task"]
    mean = sum(t["score"] for t in per) / len(per) if per else float("nan")
    return f"mean score {mean:.2f} over {len(per)} task x format"


def _answers(unit: LocoUnit, config: LocoConfig, factory: Callable[..., Any]) -> dict[str, Any]:
    res = _evaluate(config, unit.fold, unit.folder, factory(None), tasks=unit.tasks, with_fold=False)
    return {"line": f"base model on {', '.join(unit.tasks)}", "model_calls": res["model_calls"]}


def _base(unit: LocoUnit, config: LocoConfig, factory: Callable[..., Any], *deps: Any) -> dict[str, Any]:
    from taskmill.eval.store import ResultCache

    out = unit.folder
    claim_output(out, "eval", mode="update").ensure()  # this unit acts as `taskmill eval` in out
    entries: dict[str, Any] = {}
    for folder in unit.answers:
        entries.update(ResultCache(Path(folder) / "cache.jsonl").entries)
    write_jsonl(out / "cache.jsonl", ({"key": k, "raw": v} for k, v in entries.items()))
    backend = RecordedAnswers.of(unit.answers, unit.fold.name)
    res = _evaluate(config, unit.fold, out, backend)
    return {"line": _scores(res), "model_calls": res["model_calls"]}


def _sft(unit: LocoUnit, config: LocoConfig, factory: Callable[..., Any]) -> dict[str, Any]:
    from taskmill.orchestrate.loco import release_backend, train_fold

    fold = Path(unit.fold.dir)
    if not (fold / "train" / "adapter" / "adapter_config.json").is_file():
        release_backend(factory)  # a vLLM engine holds most of the GPU: free it for training
    adapter = train_fold(config, fold / "data" / "train", fold / "train")
    res = _evaluate(config, unit.fold, unit.folder, factory(adapter), adapter=adapter)
    return {"line": _scores(res), "model_calls": res["model_calls"], "adapter": str(adapter)}


def _recipe(unit: LocoUnit, config: LocoConfig, factory: Callable[..., Any], sft: dict[str, Any]) -> dict[str, Any]:
    from taskmill.orchestrate.loco import release_backend
    from taskmill.orchestrate.recipes import train_dpo_after_sft, train_rlhf_after_sft

    fold = Path(unit.fold.dir)
    release_backend(factory)  # a vLLM engine holds most of the GPU: free it for training
    after_sft = train_rlhf_after_sft if unit.kind == "sft+rlhf" else train_dpo_after_sft
    adapter = after_sft(config, fold / "data" / "train", Path(sft["adapter"]),
                                  fold / f"train_{_recipe_slug(unit.kind)}")
    res = _evaluate(config, unit.fold, unit.folder, factory(adapter), adapter=adapter)
    return {"line": _scores(res), "model_calls": res["model_calls"], "adapter": str(adapter)}


@dataclass(frozen=True)
class RecordedAnswers:
    """A backend that only names the base model: every answer must already be in the cache.

    ``base:F`` units evaluate through it so that scoring a fold from other units' answers loads no
    model; its identity (revision, adapter hash, prompt style) is the one the ``answers`` units
    recorded, so cache keys and results match a real evaluation's exactly.
    """

    name: str
    model_revision: str
    adapter_hash: str
    chat: bool
    fold: str

    @classmethod
    def of(cls, answers: Sequence[str], fold: str) -> RecordedAnswers:
        """The identity recorded in the first answers folder's results (a fold without any: unnamed)."""
        if not answers:
            return cls("none", "", "", False, fold)
        res = json.loads((Path(answers[0]) / "results.json").read_text(encoding="utf-8"))
        return cls(res["backend"], res["model_revision"], res["adapter_hash"], res["prompt_style"]["kind"] == "chat", fold)

    @property
    def chat_format(self) -> Callable[[str], str] | None:
        """Present exactly when the answering backend had a chat template (``prompt_style: auto``)."""
        return self._missing if self.chat else None

    def _missing(self, *_: Any) -> Any:
        raise DataError(f"fold {self.fold}: the base model's answers for some held-out rows are missing from the"
                        " answers units' caches; delete OUT/units and re-run")

    def loglikelihood(self, requests: Any) -> Any:
        """Never answers (see the class docstring)."""
        return self._missing()

    def generate(self, requests: Any) -> Any:
        """Never answers (see the class docstring)."""
        return self._missing()


def fold_summary(config: LocoConfig, folds: Sequence[FoldInfo]) -> list[dict[str, Any]]:
    """loco.json's ``folds``, read from the results on disk (so it does not depend on which units ran now)."""
    from taskmill.orchestrate.recipes import add_recipe, recipe_slug

    def read(folder: Path) -> dict[str, Any]:
        path = folder / "results.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TaskmillError(f"a finished unit's results are unreadable ({err})", file=str(path)) from None

    report = []
    for fold in folds:
        base, tuned = read(Path(fold.dir) / "base"), read(Path(fold.dir) / "tuned")
        entry = fold_report(fold.name, list(fold.held_out), base, tuned)
        for recipe in config.recipes[1:]:
            add_recipe(entry, recipe, read(Path(fold.dir) / f"tuned_{recipe_slug(recipe)}"))
        report.append(entry)
    return report


def fold_report(name: str, held_out: list[str], base: dict, tuned: dict) -> dict[str, Any]:
    """One fold's entry in loco.json: per held-out task and format, base and tuned score and delta.

    Model-call counts are not in it: they say what one invocation did (zero on a re-run, split
    between a killed run and its resumption), not what the fold scored; they are in the unit records.
    """
    tuned_by = {(t["task"], t["format"]): t for t in tuned["per_task"]}
    tasks = []
    for b in base["per_task"]:
        t = tuned_by.get((b["task"], b["format"]))
        tasks.append({"task": b["task"], "format": b["format"], "metrics": b["metrics"], "base": b["score"],
                      "tuned": t["score"] if t else None, "delta": round(t["score"] - b["score"], 4) if t else None})
    return {"fold": name, "held_out": held_out, "adapter_hash": tuned["adapter_hash"], "tasks": tasks}
