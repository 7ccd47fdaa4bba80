"""A step only queues work: nothing is read back from the device until the next step is queued.

On CUDA every read (``.item()``, ``float(t)``, ``.tolist()``, ``if t:``) is a host wait that leaves
the GPU idle while the host catches up; these tests count such reads on the CPU, where the same
Python runs, so a read slipped into the step fails here without a GPU.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import pytest

torch = pytest.importorskip("torch")

_READS = ("item", "tolist", "__float__", "__int__", "__bool__")


@contextmanager
def _count_device_reads() -> Iterator[list[str]]:
    """Record every tensor-to-host read, except the CPU-only per-document attention fallback."""
    seen: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in _READS}

    def wrap(name, fn):
        def counted(self, *a, **kw):
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_name == "_per_doc_sdpa":  # CPU path; CUDA runs varlen_attn
                    break
                frame = frame.f_back
            else:
                caller = sys._getframe(1)
                seen.append(f"{name} at {caller.f_code.co_filename}:{caller.f_lineno}")
            return fn(self, *a, **kw)
        return counted

    for name, fn in originals.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield seen
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


# host-side by design: batches are built on CPU tensors before their non-blocking copy, and the
# per-document SDPA fallback only runs where there is no varlen kernel (CPU)
_HOST_SIDE = {"make_micro_batch", "batch_inputs", "_per_doc_sdpa"}


def _ops(keep=None):
    """A dispatch mode recording the aten ops ``keep(func, args)`` accepts (all of them by default)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if keep is None or keep(func, args):
                self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    return Recorder()


def _syncing_ops():
    """Record the aten ops that make CUDA wait for the GPU (data-dependent shapes, scalar reads)."""
    aten = torch.ops.aten
    syncing = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
               aten.repeat_interleave.Tensor, aten._unique2.default, aten.unique_consecutive.default,
               aten.equal.default, aten.is_nonzero.default}

    def keep(func, args) -> bool:
        bool_index = func is aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))
        if not (func in syncing or bool_index):
            return False
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name in _HOST_SIDE:
                return False
            frame = frame.f_back
        return True

    return _ops(keep)


def _trainer(tm, tmp_path, lora: bool):
    from taskmill.trainer import config_from_dict
    from taskmill.trainer.loop import Trainer

    sections = dict(data={"tokens_per_step": 256, "micro_batch_tokens": 64},
                    optim={"lr": 1e-3, "warmup_steps": 2, "max_grad_norm": 1.0},
                    run={"max_steps": 4, "save_final": False})
    if lora:
        sections["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
    trainer = Trainer(config_from_dict(tm.base_config(tmp_path / "run", **sections)), tm.random_docs(60, seed=3), None)
    trainer.scheduler = trainer._scheduler()
    return trainer


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_step_reads_nothing_back(tm, tmp_path, lora):
    """Forward, backward over 4 micro-batches, clipping, AdamW and the schedule: zero host reads."""
    trainer = _trainer(tm, tmp_path, lora)
    with _count_device_reads() as reads, _syncing_ops() as ops:
        out = trainer.run_step(trainer.plan[0])
        out.stage()
        trainer.run_step(trainer.plan[1]).stage()
    assert reads == [] and ops.seen == []
    loss_sum, norm, stats = out.read()  # the numbers are there once asked for
    assert loss_sum > 0 and norm is not None and norm > 0 and stats == []


def test_counters_see_reads_and_syncing_ops(tm, tmp_path):
    """The counters work: ``float`` of the clipped norm (the old step) and a boolean-mask select are caught."""
    trainer = _trainer(tm, tmp_path, lora=False)
    with _count_device_reads() as reads, _syncing_ops() as ops:
        float(torch.nn.utils.clip_grad_norm_(trainer.params, 1.0))
        x = torch.arange(6.0)
        x[x > 2].sum()
    assert len(reads) == 1 and reads[0].startswith("__float__")
    assert ops.seen == ["aten._local_scalar_dense.default", "aten.index.Tensor"]


def test_dpo_step_reads_nothing_back(tm, tmp_path):
    from taskmill.trainer import config_from_dict
    from taskmill.trainer.dpo import DpoTrainer, Pair

    docs = tm.random_docs(24, seed=5)
    pairs = [Pair(docs[i], docs[i + 1]) for i in range(0, 24, 2)]
    raw = tm.base_config(tmp_path / "dpo", data={"tokens_per_step": 512, "micro_batch_tokens": 128},
                         run={"max_steps": 2, "save_final": False})
    cfg = config_from_dict({**raw, "objective": "dpo"})
    trainer = DpoTrainer(cfg, pairs, None)
    trainer.scheduler = trainer._scheduler()
    with _count_device_reads() as reads, _syncing_ops() as ops:
        out = trainer.run_step(trainer.plan[0])
    assert reads == [] and ops.seen == []
    loss, _, stats = out.read()
    fields = trainer._stats_fields(stats)
    assert loss == pytest.approx(stats[0] / stats[4], rel=1e-12)  # one process: loss slot = mean DPO loss
    assert set(fields) == {"rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy"}


def test_records_carry_the_lr_each_step_used(tm, tmp_path):
    """Warm-up 2 steps then cosine over 4: the record of step k shows the lr step k ran with."""
    from taskmill.trainer.loop import lr_factor

    result = _trainer(tm, tmp_path, lora=False).run()
    assert [r["step"] for r in result.records] == [1, 2, 3, 4]
    expected = [1e-3 * lr_factor(k, 4, 2, "cosine", 0.1) for k in range(4)]
    assert [r["lr"] for r in result.records] == pytest.approx(expected)
    assert all(r["step_s"] > 0 and r["tokens_per_s"] > 0 for r in result.records)


def test_reading_a_staged_step_queues_no_device_work(tm, tmp_path):
    """``stage`` queues the copy behind the step; ``read`` then only looks at host memory.

    Reading device tensors at ``read`` time instead would queue the copy behind the next step
    (already queued by then) and wait for it: the GPU would idle while the host logs.
    """
    trainer = _trainer(tm, tmp_path, lora=False)
    out = trainer.run_step(trainer.plan[0])
    with _ops() as staging:
        out.stage()
    with _ops() as reading:
        loss_sum, norm, _ = out.read()
    assert "aten.cat.default" in staging.seen  # the recorder sees device work where there is some
    assert reading.seen == [] and loss_sum > 0 and norm > 0


def test_a_failing_step_keeps_the_record_of_the_step_before(tm, tmp_path):
    """Step 4 raises (say, out of memory): steps 1-3 ran to the end and are all logged."""
    import json

    trainer = _trainer(tm, tmp_path, lora=False)
    real, calls = trainer.run_step, []

    def failing(step_docs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(step_docs)

    trainer.run_step = failing
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.run()
    logged = [json.loads(x)["step"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]
