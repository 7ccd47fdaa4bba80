"""From corpus rows to backend requests, and from backend answers to per-example scores.

A row with ``answer_choices`` and a ``target_index`` is scored by rank classification: every choice
is a continuation of the prompt and the best-scoring choice is the prediction, by

- ``acc``: summed log-probability (T0's rank classification);
- ``acc_norm``: log-probability divided by the choice's length in characters (lm-evaluation-
  harness's ``acc_norm``);
- ``acc_calibrated``: log-probability minus the choice's log-probability after a content-free
  prompt (Zhao et al. 2021's "N/A" input), only when calibration is on.

Any other row is generated greedily and scored against its completion with the metrics its
template's metadata names (see :func:`taskmill.eval.metrics.metrics_for`). For corpus-level metrics
(BLEU, chrF) a row also keeps its sacreBLEU segment statistics (``stats``), from which aggregation
computes the corpus score; its ``scores`` entry is the sentence score, for inspection.

What the backend answered for a row (its *raw* record, which the cache stores) is kept apart from
the scores computed from it, so re-scoring never needs the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from taskmill.eval.metrics import (
    DEFAULT_SQUAD,
    GENERATION_METRICS,
    metric_level,
    metrics_for,
    segment_stats,
    sentence_from_stats,
    squad_f1,
)
from taskmill.backends.requests import GenerateRequest, LoglikelihoodRequest, PromptStyle, continuation_lead, join_prompt
from taskmill.records import Row


@dataclass(frozen=True)
class ScoringOptions:
    """How rows become requests (part of every cache key through :func:`request_hash`).

    Attributes:
        style: Prompt/continuation joining.
        calibrate: Also score each choice after ``content_free`` to compute ``acc_calibrated``.
        content_free: The content-free prompt (rendered through the same style).
        max_new_tokens: Generation budget for open-ended rows.
        stop: Stop sequences for generation.
    """

    style: PromptStyle = PromptStyle()
    calibrate: bool = False
    content_free: str = "N/A"
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ("\n\n",)


def is_choice_row(row: Row) -> bool:
    """True when the row is scored by rank classification."""
    return bool(row.answer_choices) and row.target_index is not None


def request_hash(row: Row, options: ScoringOptions) -> str:
    """Hash of everything that decides what the model is asked for this row (16 hex digits)."""
    payload = {
        "prompt": row.prompt,
        "choices": list(row.answer_choices) if is_choice_row(row) else None,
        "style": [options.style.kind, options.style.separator],
    }
    if is_choice_row(row):
        payload["calibrate"] = options.content_free if options.calibrate else None
    else:
        payload["gen"] = [options.max_new_tokens, list(options.stop)]
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def loglikelihood_requests(
    row: Row, options: ScoringOptions, chat: Callable[[str], str] | None
) -> list[LoglikelihoodRequest]:
    """Choice requests of a rank-classification row: its choices, then (calibrating) the same
    choices after the content-free prompt."""
    assert row.answer_choices is not None
    context = join_prompt(row.prompt, options.style, chat)
    lead = continuation_lead(options.style)  # lm-eval style: (prompt, target_delimiter + choice)
    reqs = [LoglikelihoodRequest(context, lead + choice) for choice in row.answer_choices]
    if options.calibrate:
        free = join_prompt(options.content_free, options.style, chat)
        reqs += [LoglikelihoodRequest(free, lead + choice) for choice in row.answer_choices]
    return reqs


def generate_request(row: Row, options: ScoringOptions, chat: Callable[[str], str] | None) -> GenerateRequest:
    """The generation request of an open-ended row."""
    return GenerateRequest(join_prompt(row.prompt, options.style, chat), options.stop, options.max_new_tokens)


def choice_raw(row: Row, answers: Sequence[Any], calibrate: bool) -> dict[str, Any]:
    """The raw record of a choice row from its :class:`Loglikelihood` answers (request order)."""
    n = len(row.answer_choices or ())
    raw: dict[str, Any] = {
        "kind": "choice",
        "logprobs": [a.logprob for a in answers[:n]],
        "greedy": [a.is_greedy for a in answers[:n]],
        "n_tokens": [a.n_tokens for a in answers[:n]],
    }
    if calibrate:
        raw["calib_logprobs"] = [a.logprob for a in answers[n : 2 * n]]
    return raw


def _argmax(values: Sequence[float]) -> int:
    # First maximum, as numpy's argmax (ties go to the earlier choice, as in lm-eval).
    return max(range(len(values)), key=lambda i: (values[i], -i))


def score_choice(row: Row, raw: dict[str, Any]) -> dict[str, Any]:
    """Predictions and 0/100 scores of a rank-classification row."""
    choices = row.answer_choices or ()
    lps = raw["logprobs"]
    preds = {
        "acc": _argmax(lps),
        "acc_norm": _argmax([lp / max(len(c), 1) for lp, c in zip(lps, choices)]),
    }
    if raw.get("calib_logprobs") is not None:
        preds["acc_calibrated"] = _argmax([lp - cf for lp, cf in zip(lps, raw["calib_logprobs"])])
    scores = {name: 100.0 * (pred == row.target_index) for name, pred in preds.items()}
    return {"primary": "acc", "prediction": preds["acc"], "predictions": preds, "scores": scores, "stats": {}}


def score_generation(row: Row, raw: dict[str, Any], squad: str = DEFAULT_SQUAD) -> dict[str, Any]:
    """Scores of an open-ended row by the metrics its template names.

    Args:
        row: The corpus row (its completion is the one reference).
        raw: Its raw record (``{"kind": "generate", "prediction": ...}``).
        squad: SQuAD F1's empty-answer rule, ``squad_v1`` or ``squad_v2``.
    """
    names = metrics_for(row.metrics)
    pred, refs = raw["prediction"], [row.completion]
    scores: dict[str, float] = {}
    stats: dict[str, list[int]] = {}
    for name in names:
        if metric_level(name) == "corpus":
            stats[name] = segment_stats(name, pred, refs)
            scores[name] = sentence_from_stats(name, stats[name])
        elif name == "squad_f1":
            scores[name] = squad_f1(pred, refs, version=squad)
        else:
            scores[name] = GENERATION_METRICS[name](pred, refs)
    return {"primary": names[0], "prediction": pred, "predictions": {}, "scores": scores, "stats": stats}


def score_row(row: Row, raw: dict[str, Any], squad: str = DEFAULT_SQUAD) -> dict[str, Any]:
    """Scores (and corpus-metric statistics) of one row from its raw record."""
    return score_choice(row, raw) if raw["kind"] == "choice" else score_generation(row, raw, squad)
