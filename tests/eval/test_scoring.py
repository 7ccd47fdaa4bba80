"""Rank classification (acc, acc_norm, calibrated), request building and aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from taskmill.eval.aggregate import aggregate
from taskmill.backends.requests import Loglikelihood, PromptStyle
from taskmill.eval.scoring import (
    ScoringOptions,
    choice_raw,
    loglikelihood_requests,
    request_hash,
    score_choice,
    score_generation,
)
from taskmill.records import Row


def make_row(i=0, choices=("yes", "no"), target=0, prompt="Is it?", task="t", template="tp", metrics=("Accuracy",), completion=None):
    completion = completion if completion is not None else (choices[target] if choices else "answer")
    return Row(
        id=f"{task}-{template}-{i}", task=task, dataset="d", split="validation", row_index=i, template_id=template,
        template_name=template, format="zero_shot", prompt=prompt, completion=completion,
        messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}),
        answer_choices=tuple(choices) if choices else None, target_index=target if choices else None, metrics=metrics,
    )


def test_acc_and_acc_norm_disagree_as_lm_eval_defines_them():
    row = make_row(choices=("a", "a much longer choice"), target=1)
    # summed: choice 0 wins (-2 > -6); per character: -2/1 = -2 < -6/20 = -0.3 -> choice 1
    raw = choice_raw(row, [Loglikelihood(-2.0, False, 1), Loglikelihood(-6.0, False, 5)], calibrate=False)
    s = score_choice(row, raw)
    assert s["predictions"] == {"acc": 0, "acc_norm": 1}
    assert s["scores"] == {"acc": 0.0, "acc_norm": 100.0}


def test_calibration_subtracts_content_free_logprob():
    row = make_row(choices=("yes", "no"), target=1)
    answers = [Loglikelihood(-1.0, True, 1), Loglikelihood(-1.5, False, 1), Loglikelihood(-0.2, True, 1), Loglikelihood(-3.0, False, 1)]
    s = score_choice(row, choice_raw(row, answers, calibrate=True))
    # raw prefers "yes"; calibrated: -1.0-(-0.2) = -0.8 vs -1.5-(-3.0) = 1.5 -> "no"
    assert s["predictions"]["acc"] == 0 and s["predictions"]["acc_calibrated"] == 1
    assert s["scores"]["acc_calibrated"] == 100.0


def test_requests_use_style_and_content_free_prompt():
    row = make_row(choices=("yes", "no"))
    reqs = loglikelihood_requests(row, ScoringOptions(style=PromptStyle("plain", " "), calibrate=True), None)
    assert [(r.context, r.continuation) for r in reqs] == [
        ("Is it? ", "yes"), ("Is it? ", "no"), ("N/A ", "yes"), ("N/A ", "no")]
    chat = loglikelihood_requests(row, ScoringOptions(style=PromptStyle("chat")), lambda p: f"<u>{p}</u><a>")
    assert chat[0].context == "<u>Is it?</u><a>"
    with pytest.raises(ValueError):
        loglikelihood_requests(row, ScoringOptions(style=PromptStyle("chat")), None)


def test_request_hash_changes_with_prompt_and_options_only():
    row = make_row()
    base = request_hash(row, ScoringOptions())
    assert base == request_hash(make_row(), ScoringOptions())
    assert base != request_hash(make_row(prompt="Other?"), ScoringOptions())
    assert base != request_hash(row, ScoringOptions(style=PromptStyle("plain", " ")))
    assert base != request_hash(row, ScoringOptions(calibrate=True))


def test_generation_scored_by_template_metrics():
    row = make_row(choices=None, metrics=("Squad",), completion="the Eiffel Tower")
    s = score_generation(row, {"kind": "generate", "prediction": "Eiffel tower"})
    assert s["primary"] == "squad_f1" and s["scores"]["squad_f1"] == 100.0 and s["scores"]["squad_em"] == 100.0


def _examples(scores_by_template):
    out = []
    for (task, tpl), scores in scores_by_template.items():
        for i, v in enumerate(scores):
            out.append({"task": task, "template_id": tpl, "template_name": tpl, "format": "zero_shot",
                        "primary": "acc", "scores": {"acc": v}})
    return out


def test_aggregate_median_spread_and_seeded_intervals():
    ex = _examples({("t1", "a"): [100, 0, 100, 100], ("t1", "b"): [0, 0, 100, 0], ("t1", "c"): [100] * 4,
                    ("t2", "a"): [0, 100]})
    agg = aggregate(ex, clusters={"t1": "c1", "t2": "c1"}, n_boot=500, seed=3)
    t1 = next(t for t in agg["per_task"] if t["task"] == "t1")
    assert t1["score"] == 75.0 and t1["n_templates"] == 3  # median of 75, 25, 100
    assert t1["spread"]["min"] == 25.0 and t1["spread"]["max"] == 100.0
    lo, hi = t1["ci95"]
    assert lo <= 75.0 <= hi
    cluster = agg["per_cluster"][0]
    assert cluster["score"] == pytest.approx((75.0 + 50.0) / 2) and cluster["tasks"] == ["t1", "t2"]
    assert aggregate(ex, n_boot=500, seed=3) == aggregate(ex, n_boot=500, seed=3)
    tpl_c = next(t for t in agg["per_template"] if t["template_id"] == "c")
    assert tpl_c["ci95"] == [100.0, 100.0]  # no variance, no width


def test_bootstrap_interval_covers_binomial_spread():
    rng = np.random.default_rng(0)
    ex = _examples({("t", "a"): list(100.0 * (rng.random(400) < 0.6))})
    [tpl] = aggregate(ex, n_boot=2000, seed=0)["per_template"]
    lo, hi = tpl["ci95"]
    half = 1.96 * np.sqrt(0.6 * 0.4 / 400) * 100  # normal approximation, ~4.8 points
    assert abs((hi - lo) / 2 - half) < 1.5
