"""Training recipes compared by ``taskmill loco`` on the same folds (``recipes: [sft, sft+dpo]``).

* ``sft`` — the LoRA adapter LOCO always trains on the fold's training corpus (``tuned`` in the
  report).
* ``sft+dpo`` — DPO after SFT: preference pairs are made from the fold's training corpus
  (:mod:`taskmill.builders.preference`: gold choice vs a seeded wrong choice, rows with answer
  choices only), then a second LoRA adapter is trained with ``objective: dpo`` on top of the SFT
  adapter (``model.init_adapter``: the SFT model is both the starting point and the reference).
  The saved adapter is the rank-concatenation of both, so it is evaluated on the base model exactly
  like the SFT adapter.
* ``sft+rlhf`` — online RL (RLOO, ``objective: rlhf``) after SFT: the fold's training corpus gives
  the prompts and the rule reward's targets (``rlhf.reward``: ``rouge_l`` unless set; only training
  folds, so the leakage guard that built them covers the rewards too); a second LoRA adapter is
  trained on top of the SFT adapter (the SFT model is the start and the KL reference) and saved
  concatenated with it, as for ``sft+dpo``.

Config keys (beside the LOCO ones)::

    recipes: [sft, sft+dpo]
    dpo: {dpo: {beta: 0.1}, optim: {lr: 5.0e-5}, run: {max_steps: 50}}   # merged over `train`
    preference: {seed: 0, formats: [zero_shot]}                          # PreferenceConfig fields
    rlhf: {rlhf: {reward: rouge_l, max_new_tokens: 16}, run: {max_steps: 20}}   # merged over `train`
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence


RECIPES = ("sft", "sft+dpo", "sft+rlhf")
_PREF_FIELDS = ("seed", "formats", "splits")


def check_recipes(raw: dict[str, Any], problems: list[str]) -> None:
    """Validate ``recipes``, ``dpo`` and ``preference`` of a LOCO mapping (appends problems)."""
    recipes = raw.get("recipes", ["sft"])
    if not isinstance(recipes, list) or not recipes or any(r not in RECIPES for r in recipes):
        problems.append(f"recipes: expected a non-empty list of {', '.join(RECIPES)}, got {recipes!r}")
    elif recipes[0] != "sft":
        problems.append("recipes: must start with sft (the adapter every other recipe builds on)")
    for key in ("dpo", "rlhf"):
        if not isinstance(raw.get(key, {}) or {}, dict):
            problems.append(f"{key}: expected a trainer config mapping (merged over train)")
    pref = raw.get("preference", {}) or {}
    if not isinstance(pref, dict):
        problems.append("preference: expected a mapping")
    else:
        problems += [f"preference.{k}: unknown (expected one of {', '.join(_PREF_FIELDS)})" for k in sorted(set(pref) - set(_PREF_FIELDS))]


def adapter_ranks(train: dict[str, Any], dpo: dict[str, Any], recipes: Sequence[str],
                  rlhf: dict[str, Any] | None = None) -> dict[str, Any]:
    """LoRA rank of each recipe's saved adapter (``sft+dpo``/``sft+rlhf`` concatenate both adapters' ranks).

    A rank that is not an integer is returned as given (the trainer's config check reports it).
    """
    from taskmill.trainer.config import LoraConfig

    def rank(cfg: dict[str, Any]) -> Any:
        lora = cfg.get("lora") if isinstance(cfg.get("lora"), dict) else {}
        return lora.get("r", LoraConfig.r)

    ranks = {"sft": rank(train)}
    for recipe, over in (("sft+dpo", dpo), ("sft+rlhf", rlhf or {})):
        if recipe in recipes:
            r_second = rank(_deep_merge(train, over))
            both = (ranks["sft"], r_second)
            ranks[recipe] = sum(both) if all(isinstance(r, int) and not isinstance(r, bool) for r in both) else r_second
    return ranks


def check_serving_ranks(train: dict[str, Any], dpo: dict[str, Any], recipes: Sequence[str], ev: dict[str, Any],
                        problems: list[str], rlhf: dict[str, Any] | None = None) -> None:
    """With the vLLM backend, every recipe's adapter must fit the engine's ``max_lora_rank`` (appends problems).

    Checked before training: otherwise vLLM refuses the adapters only after every fold has trained.
    """
    if not isinstance(ev, dict) or ev.get("backend") != "vllm":
        return
    from taskmill.backends.vllm import DEFAULT_MAX_LORA_RANK, MAX_LORA_RANKS, rank_advice

    options = ev.get("backend_options") if isinstance(ev.get("backend_options"), dict) else {}
    served = options.get("max_lora_rank", DEFAULT_MAX_LORA_RANK)
    if served not in MAX_LORA_RANKS:
        problems.append(f"eval.backend_options.max_lora_rank: vLLM accepts {', '.join(map(str, MAX_LORA_RANKS))}; got {served!r}")
        return
    for recipe, rank in adapter_ranks(train, dpo, recipes, rlhf).items():
        if not isinstance(rank, int) or isinstance(rank, bool):
            problems.append(f"lora.r of the {recipe} adapters: expected an integer, got {rank!r}")
        elif rank > served:
            how = f" (sft and {recipe[4:]} adapters concatenated)" if recipe != "sft" else ""
            problems.append(f"eval.backend_options.max_lora_rank: {served} is below the {recipe} adapters' rank "
                            f"{rank}{how}; vLLM would refuse them ({rank_advice(rank)})")


def recipe_slug(recipe: str) -> str:
    """Folder-safe recipe name (``sft+dpo`` -> ``sft_dpo``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", recipe)


def recipe_results_dir(fold_dir: Path, recipe: str) -> Path:
    """Where a fold's results of ``recipe`` are (``tuned/`` for SFT, ``tuned_<slug>/`` otherwise)."""
    return fold_dir / ("tuned" if recipe == "sft" else f"tuned_{recipe_slug(recipe)}")


def report_inputs(folds_dir: Path, recipes: Sequence[str], model: str) -> list[str]:
    """Leaderboard inputs of a LOCO output folder: one row per recipe when several are compared.

    Unlabelled, every adapter run of one model revision lands in one ``tuned`` row, so the SFT,
    SFT+DPO and SFT+RLHF scores of a task would collide there. With more than one recipe each
    fold's results are given as ``LABEL=PATH``, the label ``<model name> + <recipe>``; the base
    runs stay unlabelled (the model's base row).
    """
    if list(recipes) == ["sft"]:
        return [str(folds_dir)]
    name = Path(model).name or str(model)
    inputs = []
    for fold in sorted(p for p in Path(folds_dir).iterdir() if p.is_dir()):
        if (fold / "base").is_dir():
            inputs.append(str(fold / "base"))
        inputs += [f"{name} + {recipe}={recipe_results_dir(fold, recipe)}" for recipe in recipes
                   if recipe_results_dir(fold, recipe).is_dir()]
    return inputs


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_fold_preferences(train_corpus: Path, out: Path, options: dict[str, Any]) -> Path:
    """Pairs of the fold's training corpus (kept when already written); returns the JSONL file."""
    from taskmill.builders.preference import PreferenceConfig, build_preferences

    file = out / "preferences.jsonl"
    if not file.is_file():
        cfg = PreferenceConfig(seed=int(options.get("seed", 0)), formats=tuple(options.get("formats") or ()),
                               splits=tuple(options.get("splits") or ()))
        build_preferences(train_corpus, out, cfg)
    return file


def train_dpo_after_sft(config: Any, train_corpus: Path, sft_adapter: Path, out: Path) -> Path:
    """Train (or find) the ``sft+dpo`` adapter of a fold; returns its folder."""
    adapter = out / "adapter"
    if (adapter / "adapter_config.json").is_file():
        return adapter
    from taskmill.orchestrate.loco import train_adapter

    # beside the run folder, not inside it: an output folder never holds its own inputs
    prefs = make_fold_preferences(train_corpus, out.with_name(out.name.replace("train", "preferences", 1)),
                                  config.preference)
    data = _deep_merge(config.train, config.dpo)
    data["objective"] = "dpo"
    return train_adapter(config, data, {"init_adapter": str(sft_adapter)}, {"corpus": str(prefs), "eval_corpus": None},
                         out, "dpo")


def train_rlhf_after_sft(config: Any, train_corpus: Path, sft_adapter: Path, out: Path) -> Path:
    """Train (or find) the ``sft+rlhf`` adapter of a fold; returns its folder."""
    adapter = out / "adapter"
    if (adapter / "adapter_config.json").is_file():
        return adapter
    from taskmill.orchestrate.loco import train_adapter

    data = _deep_merge(_deep_merge(config.train, {"rlhf": {"reward": "rouge_l"}}), config.rlhf)
    data["objective"] = "rlhf"
    return train_adapter(config, data, {"init_adapter": str(sft_adapter)},
                         {"corpus": str(train_corpus), "eval_corpus": None}, out, "rlhf")


def add_recipe(fold_report: dict[str, Any], recipe: str, results: dict[str, Any]) -> None:
    """Put a recipe's per-task scores (and deltas vs base) into a fold's report, in place."""
    by = {(t["task"], t["format"]): t["score"] for t in results["per_task"]}
    fold_report.setdefault("recipe_adapter_hash", {})[recipe] = results["adapter_hash"]
    for task in fold_report["tasks"]:
        score = by.get((task["task"], task["format"]))
        task.setdefault("recipes", {"sft": task["tuned"]})[recipe] = score


def format_recipes(summary: dict[str, Any], recipes: list[str]) -> str:
    """One line per fold and held-out task: base and each recipe's score, then the mean of each."""
    head = f"{'fold':22s} {'task':22s} {'format':12s} {'base':>7s}" + "".join(f" {r:>8s}" for r in recipes)
    lines, sums, n = [head], {r: 0.0 for r in ["base", *recipes]}, 0
    for fold in summary["folds"]:
        for t in fold["tasks"]:
            scores = t.get("recipes", {"sft": t["tuned"]})
            row = [t["base"], *[scores.get(r) for r in recipes]]
            cells = "".join(f" {s:8.2f}" if s is not None else "        -" for s in row[1:])
            lines.append(f"{fold['fold'][:22]:22s} {t['task'][:22]:22s} {t['format'][:12]:12s} {t['base']:7.2f}{cells}")
            if None not in row:
                n += 1
                for key, s in zip(["base", *recipes], row):
                    sums[key] += s
    if n:
        lines.append(f"{'mean':22s} {'':22s} {'':12s} {sums['base'] / n:7.2f}" + "".join(f" {sums[r] / n:8.2f}" for r in recipes))
    return "\n".join(lines)
