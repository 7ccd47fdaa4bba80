"""Preference pairs from labelled data, in TRL's prompt/chosen/rejected format.

For every corpus row with ``answer_choices`` and a ``target_index`` (rows of templates with
answer choices), ``chosen`` is the gold choice and ``rejected`` a wrong one:

* ``sampled`` — a wrong choice drawn with a seeded hash of (seed, row id), so the pick does not
  depend on row order or on which other rows are present;
* ``model`` — the wrong choice a model ranks highest (summed log-probability, the eval backends'
  ``loglikelihood``), i.e. its own most tempting mistake; ``rejected_source`` says ``model`` when
  that choice is also the model's top prediction (a real error) and ``model_runner_up`` otherwise.

Choices equal in text to the gold one are never rejected. ``OUT/preferences.jsonl`` holds one pair
per line: ``prompt``, ``chosen``, ``rejected`` (what TRL's ``DPOTrainer`` and ``taskmill train``
with ``objective: dpo`` read) plus provenance (``id``, ``task``, ``template_id``, ``format``,
``chosen_index``, ``rejected_index``, ``rejected_source``). ``OUT/manifest.json`` records the
input's sha256, the settings and the counts. Same input and seed: byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from taskmill.errors import ConfigError, DataError
from taskmill.fileio import OutputFolder, atomic_dir, claim_output, write_text

_NO_PAIRS = "no row with answer_choices, a target_index and a distinct wrong choice"


@dataclass(frozen=True)
class PreferenceConfig:
    """How pairs are made.

    Attributes:
        seed: Seed of the sampled wrong choices.
        rejected: ``sampled`` or ``model``.
        formats: Only rows of these formats (empty: all).
        splits: Only rows of these splits (empty: all).
        prompt_style: ``plain`` or ``chat`` context for ``model`` scoring (as ``taskmill eval``).
    """

    seed: int = 0
    rejected: Literal["sampled", "model"] = "sampled"
    formats: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    prompt_style: Literal["plain", "chat"] = "plain"


def _wrong(row: dict[str, Any]) -> list[int]:
    choices, gold = row["answer_choices"], row["target_index"]
    return [i for i, c in enumerate(choices) if i != gold and c != choices[gold]]


def usable(row: dict[str, Any], config: PreferenceConfig) -> bool:
    """A row with choices, a valid gold index and at least one distinct wrong choice."""
    choices, gold = row.get("answer_choices"), row.get("target_index")
    if not isinstance(choices, list) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        return False
    if config.formats and row.get("format") not in config.formats:
        return False
    if config.splits and row.get("split") not in config.splits:
        return False
    return bool(_wrong(row))


def sampled_wrong(row: dict[str, Any], seed: int) -> int:
    """A wrong choice index drawn by a seeded hash of the row id."""
    wrong = _wrong(row)
    digest = hashlib.sha256(f"{seed}:{row['id']}".encode()).digest()
    return wrong[int.from_bytes(digest[:8], "big") % len(wrong)]


def pair_record(row: dict[str, Any], rejected: int, source: str) -> dict[str, Any]:
    """One TRL-format pair with its provenance."""
    choices, gold = row["answer_choices"], row["target_index"]
    return {"prompt": row["prompt"], "chosen": choices[gold], "rejected": choices[rejected],
            "id": row["id"], "task": row.get("task"), "template_id": row.get("template_id"),
            "format": row.get("format"), "chosen_index": gold, "rejected_index": rejected,
            "rejected_source": source}


def model_wrong(rows: Sequence[dict[str, Any]], backend: Any, style: str) -> list[tuple[int, str]]:
    """Per row: (the wrong choice the model scores highest, ``model`` or ``model_runner_up``)."""
    from taskmill.backends.requests import LoglikelihoodRequest, PromptStyle, join_prompt

    prompt_style = PromptStyle(style)
    requests, spans = [], []
    for row in rows:
        context = join_prompt(row["prompt"], prompt_style, getattr(backend, "chat_format", None))
        spans.append((len(requests), len(row["answer_choices"])))
        requests += [LoglikelihoodRequest(context, c) for c in row["answer_choices"]]
    scores = [r.logprob for r in backend.loglikelihood(requests)]
    out = []
    for row, (start, n) in zip(rows, spans):
        logp = scores[start:start + n]
        wrong = max(_wrong(row), key=lambda i: (logp[i], -i))
        top = max(range(n), key=lambda i: (logp[i], -i))
        out.append((wrong, "model" if top == wrong else "model_runner_up"))
    return out


def make_pairs(rows: Sequence[dict[str, Any]], config: PreferenceConfig, backend: Any = None) -> list[dict[str, Any]]:
    """Preference pairs of the usable rows, in corpus order."""
    kept = [r for r in rows if usable(r, config)]
    if config.rejected == "model":
        if backend is None:
            raise ConfigError(["rejected 'model' needs a model backend (--model)"])
        picks = model_wrong(kept, backend, config.prompt_style)
    else:
        picks = [(sampled_wrong(r, config.seed), "sampled") for r in kept]
    return [pair_record(r, j, source) for r, (j, source) in zip(kept, picks)]


def build_preferences(corpus: str | Path, out: str | Path, config: PreferenceConfig = PreferenceConfig(),
                      backend: Any = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Write ``OUT/preferences.jsonl`` and ``OUT/manifest.json``; returns the manifest.

    ``overwrite`` replaces ``out`` even when it is not an earlier preferences folder.

    Raises:
        DataError: unreadable corpus, or no row with answer choices to pair.
    """
    from taskmill.fileio import corpus_file, read_jsonl

    file = corpus_file(corpus)
    target = claim_output(out, "preferences", inputs=[file], overwrite=overwrite)
    # An empty corpus gets the same report as one without a usable row: nothing to pair.
    rows = read_jsonl(file, lambda row: isinstance(row, dict), "expected a JSON object (a corpus row)",
                      missing="corpus not found (expected corpus.jsonl or a folder holding it)", empty=_NO_PAIRS)
    pairs = make_pairs(rows, config, backend)
    if not pairs:
        raise DataError(_NO_PAIRS, file=str(file))
    text = "".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in pairs)
    manifest = {
        "schema": "taskmill.preferences/1", "input": {"path": file.name, "sha256": hashlib.sha256(file.read_bytes()).hexdigest()},
        "config": {**config.__dict__, "formats": list(config.formats), "splits": list(config.splits)},
        "model": getattr(backend, "model_revision", None) if config.rejected == "model" else None,
        "pairs": len(pairs), "by_source": _count(pairs, "rejected_source"), "by_task": _count(pairs, "task"),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    _write(target, {"preferences.jsonl": text, "manifest.json": json.dumps(manifest, indent=1, sort_keys=True) + "\n"})
    return manifest


def _count(pairs: Sequence[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in pairs:
        counts[str(p[key])] = counts.get(str(p[key]), 0) + 1
    return dict(sorted(counts.items()))


def _write(out: OutputFolder, files: dict[str, str]) -> None:
    """Write the claimed folder ``out`` whole: file name -> text."""
    with atomic_dir(out.path, marker=out.write_marker) as tmp:
        for name, text in files.items():
            write_text(tmp / name, text)


def cli_preferences(corpus: Path, out: Path, seed: int, rejected: str, model: str | None,
                    formats: Sequence[str], splits: Sequence[str], overwrite: bool = False) -> str:
    """Run ``taskmill preferences`` and return the text to print."""
    if rejected not in ("sampled", "model"):
        raise ConfigError([f"--rejected: expected sampled or model, got {rejected!r}"])
    claim_output(out, "preferences", inputs=[corpus], overwrite=overwrite)  # before the model loads
    backend = None
    if rejected == "model":
        if not model:
            raise ConfigError(["--rejected model needs --model"])
        from taskmill.backends import get_backend

        backend = get_backend("hf", model=model)
    cfg = PreferenceConfig(seed=seed, rejected=rejected, formats=tuple(formats), splits=tuple(splits))  # type: ignore[arg-type]
    manifest = build_preferences(corpus, out, cfg, backend, overwrite=overwrite)
    sources = ", ".join(f"{k} {v}" for k, v in manifest["by_source"].items())
    return f"wrote {manifest['pairs']} pairs ({sources}) from {len(manifest['by_task'])} tasks to {out}/preferences.jsonl"
