"""Parity with lm-evaluation-harness on the real SmolLM2-135M (slow: loads the 135M model).

The same (context, continuation) pairs from hellaswag validation rows go through taskmill's ``hf``
backend and lm-eval's ``HFLM`` (its ``hf`` model type) holding the same in-memory weights; the
per-request log-likelihoods must agree to 1e-4 and so must acc / acc_norm.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

N_ROWS = 8


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    from taskmill.backends.hf_load import load_model

    return load_model(smollm2_gguf)


def _rows(shared):
    path = shared / "data" / "hellaswag" / "validation.jsonl"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    rows = [json.loads(line) for _, line in zip(range(N_ROWS), path.open(encoding="utf-8"))]
    return [(f"{r['activity_label']}: {r['ctx']}", r["endings"], int(r["label"])) for r in rows]


def test_loglikelihoods_and_accuracy_match_lm_eval(smollm2, shared_dir):
    lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    from taskmill.backends.hf import HFBackend
    from taskmill.backends.requests import LoglikelihoodRequest

    model, tok = smollm2
    rows = _rows(shared_dir)
    pairs = [(prompt, " " + ending) for prompt, endings, _ in rows for ending in endings]
    ours = HFBackend(model, tok, batch_size=8).loglikelihood([LoglikelihoodRequest(c, k) for c, k in pairs])
    lm = lm_eval_hf.HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    insts = [Instance("loglikelihood", {}, (c, k), i) for i, (c, k) in enumerate(pairs)]
    theirs = lm.loglikelihood(insts, disable_tqdm=True)
    ours_lp = np.array([o.logprob for o in ours])
    theirs_lp = np.array([t[0] for t in theirs])
    assert np.max(np.abs(ours_lp - theirs_lp)) < 1e-4
    assert [o.is_greedy for o in ours] == [bool(t[1]) for t in theirs]
    acc = lambda lp: [int(np.argmax(lp.reshape(len(rows), 4)[i])) == rows[i][2] for i in range(len(rows))]
    norm = lambda lp: [int(np.argmax(lp.reshape(len(rows), 4)[i] / [len(e) for e in rows[i][1]])) == rows[i][2] for i in range(len(rows))]
    assert acc(ours_lp) == acc(theirs_lp) and norm(ours_lp) == norm(theirs_lp)
