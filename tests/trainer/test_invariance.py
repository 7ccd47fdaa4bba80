"""A step's update does not depend on micro-batch size / accumulation; loss goes down; resume in-process."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _run(tm, tmp_path, name, docs, steps=4, **data):
    from taskmill.trainer import config_from_dict
    from taskmill.trainer.loop import Trainer

    cfg = config_from_dict(tm.base_config(tmp_path / name, data=data, run={"max_steps": steps, "save_final": False}))
    trainer = Trainer(cfg, docs, None)
    result = trainer.run()
    return result, {k: v.detach().clone() for k, v in trainer.lm.state_dict().items()}


def test_batch_times_accumulation_invariance(tm, tmp_path):
    docs = tm.random_docs(80, seed=11)
    one, w_one = _run(tm, tmp_path, "one", docs, tokens_per_step=256, micro_batch_tokens=256)
    many, w_many = _run(tm, tmp_path, "many", docs, tokens_per_step=256, micro_batch_tokens=64)
    assert [r["docs"] for r in one.records] == [r["docs"] for r in many.records]
    for a, b in zip(one.losses, many.losses):
        assert abs(a - b) <= 1e-5 * abs(a)
    for k in w_one:
        err = ((w_one[k] - w_many[k]).norm() / w_one[k].norm()).item()
        assert err < 1e-5, (k, err)


def test_loss_decreases_on_repeated_data(tm, tmp_path):
    docs = tm.random_docs(16, seed=4)
    res, _ = _run(tm, tmp_path, "dec", docs, steps=30, tokens_per_step=4096, micro_batch_tokens=512, epochs=30)
    assert len(res.losses) == 30
    assert sum(res.losses[-3:]) / 3 < 0.8 * sum(res.losses[:3]) / 3, res.losses


def test_resume_in_process_matches_uninterrupted(tm, tmp_path):
    """Stop after 3 of 6 steps (checkpoint every 3), resume: same losses and weights."""
    from taskmill.trainer import config_from_dict
    from taskmill.trainer.loop import Trainer

    docs = tm.random_docs(60, seed=9)
    ref, w_ref = _run(tm, tmp_path, "ref", docs, steps=6)
    sections = dict(data={"tokens_per_step": 256}, run={"max_steps": 6, "save_every": 3, "save_final": False})
    cfg = config_from_dict(tm.base_config(tmp_path / "cut", **sections))
    first = Trainer(cfg, docs, None).run()
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text() == "step-000003"
    # a second run in the same folder resumes from the newest checkpoint (step 3)
    second = Trainer(cfg, docs, None)
    res = second.run()
    assert [r["step"] for r in res.records] == [4, 5, 6]
    assert res.losses == pytest.approx(ref.losses[3:], rel=1e-6)
    assert first.losses == pytest.approx(ref.losses, rel=1e-6)
    w = {k: v for k, v in second.lm.state_dict().items()}
    assert all(torch.allclose(w[k], w_ref[k], rtol=1e-6, atol=1e-7) for k in w_ref)
