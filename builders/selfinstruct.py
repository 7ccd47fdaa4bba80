"""Model-written instructions, Self-Instruct style (Wang et al., 2023), through any eval backend.

Seed instructions (the hand-written format of :mod:`taskmill.builders.handwritten`) start a pool.
Each round, ``per_round`` prompts each show ``demos`` tasks drawn from the pool (mostly seeds, up to
``machine_demos`` model-written ones, as Self-Instruct mixes them) and ask for one more; the
backend's ``generate`` continues the prompt after ``Instruction:``. A candidate joins the pool when it
passes the rules, checked in this order (the first failing one is its recorded reason):

* ``unparsable`` — no instruction or no output could be read;
* ``length`` — the instruction has fewer than ``min_words`` or more than ``max_words`` words;
* ``blocked_word`` — it asks for something a text model cannot give (image, graph, file, ...);
* ``bad_start`` — it starts with punctuation or a non-ASCII character, or with "Write a program";
* ``bad_output`` — the output is empty or repeats the instruction;
* ``similar`` — ROUGE-L F1 (``rouge-score``, no stemming) with some pool instruction is at least
  ``rouge_threshold`` (0.7, Self-Instruct's value).

Outputs in ``OUT/``: ``instructions.jsonl`` (kept tasks: ``instruction``, ``input``, ``output``,
``id``, ``provenance`` = backend, model revision, the full prompt and its sha256, round, the
demonstration ids, the closest pool instruction and its ROUGE-L), usable as a collection task's
``instructions:`` file; ``candidates.jsonl`` (every candidate with its verdict);
``manifest.json`` (settings, prompt template, model, counts by verdict). Greedy decoding and a
seeded demonstration draw make a run repeatable for a deterministic backend.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from taskmill.errors import ConfigError

HEADER = ("Below are example tasks. Each has an instruction, an optional input, and the output a helpful "
          "assistant would give. Write one new task that is different from all of them.\n\n")
NO_INPUT = "<noinput>"
BLOCKED = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
           "draw", "plot", "go to", "video", "audio", "flowchart", "diagram")
_FIELD = re.compile(r"^(Instruction|Input|Output):[ \t]*", re.M)


@dataclass(frozen=True)
class SelfInstructConfig:
    """Settings of a self-instruct run (see the module docstring)."""

    target: int = 50
    rounds: int = 10
    per_round: int = 8
    demos: int = 3
    machine_demos: int = 1
    rouge_threshold: float = 0.7
    min_words: int = 3
    max_words: int = 150
    max_new_tokens: int = 192
    prompt_style: str = "plain"
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every problem."""
        problems = [f"{k}: must be >= 1" for k in ("target", "rounds", "per_round", "demos", "max_new_tokens")
                    if getattr(self, k) < 1]
        if not 0 <= self.machine_demos <= self.demos:
            problems.append("machine_demos: must be in 0..demos")
        if not 0 < self.rouge_threshold <= 1:
            problems.append("rouge_threshold: must be in (0, 1]")
        if self.prompt_style not in ("plain", "chat"):
            problems.append("prompt_style: plain or chat")
        if problems:
            raise ConfigError(problems)


def render_task(number: int, task: dict[str, str]) -> str:
    """One demonstration block."""
    return (f"Task {number}\nInstruction: {task['instruction'].strip()}\n"
            f"Input: {task['input'].strip() or NO_INPUT}\nOutput: {task['output'].strip()}\n\n")


def build_prompt(demos: Sequence[dict[str, str]]) -> str:
    """The prompt for one new task after ``demos``; the model continues after ``Instruction:``."""
    body = "".join(render_task(i + 1, d) for i, d in enumerate(demos))
    return f"{HEADER}{body}Task {len(demos) + 1}\nInstruction:"


def parse_generation(text: str) -> dict[str, str] | None:
    """``{instruction, input, output}`` from a continuation of :func:`build_prompt`, or None."""
    text = "Instruction: " + text.split("\nTask ")[0]
    parts = _FIELD.split(text)  # ['', 'Instruction', '...', 'Input', '...', 'Output', '...']
    fields: dict[str, str] = {}
    for name, value in zip(parts[1::2], parts[2::2]):
        fields.setdefault(name.lower(), value.strip())
    if not fields.get("instruction") or "output" not in fields:
        return None
    inp = fields.get("input", "")
    return {"instruction": fields["instruction"], "input": "" if inp == NO_INPUT else inp, "output": fields["output"]}


def rule_verdict(task: dict[str, str] | None, config: SelfInstructConfig) -> str | None:
    """The first quality rule ``task`` breaks, or None (ROUGE novelty is checked separately)."""
    if task is None:
        return "unparsable"
    words = task["instruction"].split()
    if not config.min_words <= len(words) <= config.max_words:
        return "length"
    lower = f" {task['instruction'].lower()} "
    if any(re.search(rf"\b{re.escape(w)}\b", lower) for w in BLOCKED):
        return "blocked_word"
    first = task["instruction"][0]
    if not first.isascii() or not first.isalnum() or lower.strip().startswith("write a program"):
        return "bad_start"
    out = task["output"].strip()
    if not out or out.lower() == task["instruction"].strip().lower():
        return "bad_output"
    return None


class NoveltyFilter:
    """ROUGE-L F1 of a new instruction against every instruction of the pool."""

    def __init__(self, pool: Sequence[str]) -> None:
        from rouge_score import rouge_scorer

        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.pool = list(pool)

    def closest(self, instruction: str) -> tuple[float, str | None]:
        """(highest ROUGE-L F1, that pool instruction)."""
        best, which = 0.0, None
        for other in self.pool:
            f = self.scorer.score(other, instruction)["rougeL"].fmeasure
            if f > best:
                best, which = f, other
        return best, which

    def add(self, instruction: str) -> None:
        """Put a kept instruction into the pool."""
        self.pool.append(instruction)


def _draw_demos(rng: random.Random, seeds: list[dict], machine: list[dict], config: SelfInstructConfig) -> list[dict]:
    n_machine = min(config.machine_demos, len(machine))
    picked = rng.sample(machine, n_machine) + rng.sample(seeds, min(len(seeds), config.demos - n_machine))
    rng.shuffle(picked)
    return picked


def _context(prompt: str, backend: Any, style: str) -> str:
    if style == "chat":
        fmt = getattr(backend, "chat_format", None)
        if fmt is None:
            raise ConfigError(["prompt_style chat: the model has no chat template"])
        return fmt(prompt)
    return prompt


def generate_instructions(seeds: Sequence[dict[str, str]], backend: Any, config: SelfInstructConfig) -> tuple[list[dict], list[dict]]:
    """Run the rounds; returns (kept tasks with provenance, every candidate with its verdict)."""
    from taskmill.backends.requests import GenerateRequest

    config.validate()
    seeds = [{**s, "id": s.get("id") or f"seed-{i}"} for i, s in enumerate(seeds)]
    rng = random.Random(config.seed)
    novelty = NoveltyFilter([s["instruction"] for s in seeds])
    kept: list[dict] = []
    candidates: list[dict] = []
    for round_no in range(config.rounds):
        if len(kept) >= config.target:
            break
        demo_sets = [_draw_demos(rng, seeds, kept, config) for _ in range(config.per_round)]
        prompts = [build_prompt(d) for d in demo_sets]
        requests = [GenerateRequest(_context(p, backend, config.prompt_style), ("\nTask ",), config.max_new_tokens) for p in prompts]
        for prompt, demos, text in zip(prompts, demo_sets, backend.generate(requests)):
            task = parse_generation(text)
            verdict = rule_verdict(task, config)
            score, similar = novelty.closest(task["instruction"]) if task and verdict is None else (None, None)
            if verdict is None and score >= config.rouge_threshold:
                verdict = "similar"
            cand = {"round": round_no, "generation": text, "parsed": task, "verdict": verdict or "kept",
                    "max_rouge_l": score, "most_similar": similar}
            candidates.append(cand)
            if verdict is None and len(kept) < config.target:
                novelty.add(task["instruction"])
                kept.append(_with_provenance(task, len(kept), prompt, demos, round_no, score, similar, backend))
    return kept, candidates


def _with_provenance(task: dict, index: int, prompt: str, demos: list[dict], round_no: int, score: float,
                     similar: str | None, backend: Any) -> dict[str, Any]:
    return {**task, "id": f"self-instruct-{index}", "provenance": {
        "method": "self-instruct", "backend": getattr(backend, "name", type(backend).__name__),
        "model": getattr(backend, "model_revision", None), "prompt": prompt,
        "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(), "round": round_no,
        "demonstrations": [d["id"] for d in demos], "max_rouge_l": round(score, 4), "most_similar": similar}}


def self_instruct(seeds_file: str | Path, backend: Any, out: str | Path,
                  config: SelfInstructConfig = SelfInstructConfig(), *, overwrite: bool = False) -> dict[str, Any]:
    """Generate instructions from a seed file with ``backend`` and write ``OUT/``; returns the manifest.

    ``overwrite`` replaces ``out`` even when it is not an earlier self-instruct folder.
    """
    from taskmill.builders.handwritten import read_instructions
    from taskmill.builders.preference import _count, _write
    from taskmill.fileio import claim_output

    seeds_file = Path(seeds_file)
    target = claim_output(out, "self-instruct", inputs=[seeds_file], overwrite=overwrite)
    seeds = read_instructions(seeds_file)
    kept, candidates = generate_instructions(seeds, backend, config)
    manifest = {
        "schema": "taskmill.self_instruct/1", "config": asdict(config),
        "seeds": {"path": seeds_file.name, "sha256": hashlib.sha256(seeds_file.read_bytes()).hexdigest(), "n": len(seeds)},
        "backend": getattr(backend, "name", type(backend).__name__), "model": getattr(backend, "model_revision", None),
        "prompt_template": build_prompt([{"instruction": "{instruction}", "input": "{input}", "output": "{output}"}]),
        "kept": len(kept), "candidates": len(candidates), "verdicts": _count(candidates, "verdict"),
    }
    _write(target, {
        "instructions.jsonl": "".join(json.dumps(k, ensure_ascii=False, sort_keys=True) + "\n" for k in kept),
        "candidates.jsonl": "".join(json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n" for c in candidates),
        "manifest.json": json.dumps(manifest, indent=1, sort_keys=True) + "\n",
    })
    return manifest


def cli_self_instruct(seeds: Path, model: str, out: Path, backend_name: str, config: SelfInstructConfig,
                      base_url: str | None = None, overwrite: bool = False) -> str:
    """Run ``taskmill self-instruct`` and return the text to print."""
    from taskmill.backends import get_backend
    from taskmill.fileio import claim_output

    claim_output(out, "self-instruct", inputs=[seeds], overwrite=overwrite)  # before the model loads
    options = {"base_url": base_url} if base_url else {}
    backend = get_backend(backend_name, model=model, **options)
    manifest = self_instruct(seeds, backend, out, config, overwrite=overwrite)
    verdicts = ", ".join(f"{k} {v}" for k, v in manifest["verdicts"].items())
    return f"kept {manifest['kept']} of {manifest['candidates']} candidates ({verdicts}); wrote {out}/instructions.jsonl"
