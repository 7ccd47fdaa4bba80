"""Which config changes a resumed run accepts: a setting added to taskmill after a run started
holds its default and is no difference; any real change is."""

from __future__ import annotations

from dataclasses import replace

from taskmill.trainer.config import TrainConfig
from taskmill.trainer.resume import comparable, differences


def test_a_setting_added_since_the_run_started_is_no_difference_at_its_default() -> None:
    new = comparable(TrainConfig())
    old = {k: v for k, v in new.items() if k != "rlhf.rollout_backend"}  # recorded by an older taskmill
    assert differences(old, new) == []
    changed = comparable(replace(TrainConfig(), rlhf=replace(TrainConfig().rlhf, rollout_backend="vllm")))
    assert differences(old, changed) == ["rlhf.rollout_backend: '(unset)' -> 'vllm'"]
    lr = comparable(replace(TrainConfig(), optim=replace(TrainConfig().optim, lr=0.5)))
    assert [d.split(":")[0] for d in differences(new, lr)] == ["optim.lr"]
