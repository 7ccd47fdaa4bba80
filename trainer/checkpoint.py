"""Checkpoints for exact resume: trainable weights, optimizer, scheduler, RNG states, data position.

Layout: ``OUTPUT/checkpoints/step-000010/`` holding ``trainable.pt`` (only parameters that train:
the adapter for LoRA, everything for full fine-tuning), ``optim.pt``, ``sched.pt``,
``rng-rank{r}.pt`` and ``state.json`` (step, epoch plan position). A checkpoint is written to a
temporary folder and renamed, and ``checkpoints/latest`` names the newest complete one, so a run
killed at any moment resumes from a whole checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from taskmill.fileio import replace_dir, write_text
from taskmill.trainer.dist import DistInfo, barrier


def rng_state() -> dict[str, Any]:
    """Python, torch CPU and CUDA generator states."""
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(lm: Any) -> dict[str, Any]:
    """Parameters that train, by name (full tensors; FSDP2 shards are gathered)."""
    out = {}
    for name, p in lm.named_parameters():
        if p.requires_grad:
            t = p.full_tensor() if hasattr(p, "full_tensor") else p
            out[name] = t.detach().cpu().clone()
    return out


def load_trainable(lm: Any, state: dict[str, Any]) -> None:
    """Copy saved trainable parameters back in place."""
    import torch

    params = dict(lm.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            p = params[name]
            if hasattr(p, "full_tensor"):
                from torch.distributed.tensor import distribute_tensor

                value = distribute_tensor(value.to(p.device), p.device_mesh, p.placements)
                p.copy_(value)
            else:
                p.copy_(value.to(p.device))


def _optim_state(optimizer: Any, model: Any, info: DistInfo) -> Any:
    if info.mode == "fsdp2":
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, StateDictOptions

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def save(root: Path, step: int, lm: Any, model: Any, optimizer: Any, scheduler: Any,
         info: DistInfo, extra: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` (every rank writes its RNG; rank 0 the rest)."""
    import torch

    ckdir = root / "checkpoints"
    final = ckdir / f"step-{step:06d}"
    tmp = ckdir / f".tmp-step-{step:06d}"
    weights = trainable_state(lm)
    optim = _optim_state(optimizer, model, info)
    if info.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(info)
    torch.save(rng_state(), tmp / f"rng-rank{info.rank}.pt")
    if info.main:
        torch.save(weights, tmp / "trainable.pt")
        torch.save(optim, tmp / "optim.pt")
        torch.save(scheduler.state_dict(), tmp / "sched.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "world": info.world, **extra}))
    barrier(info)
    if info.main:
        replace_dir(tmp, final)
        _write_latest(ckdir, final.name)
        _prune(ckdir, keep)
    barrier(info)
    return final


def _write_latest(ckdir: Path, name: str) -> None:
    write_text(ckdir / "latest", name)


def _prune(ckdir: Path, keep: int) -> None:
    done = sorted(p for p in ckdir.glob("step-*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    pointer = root / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = root / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json`` (step, world, total steps, the config that wrote it)."""
    return json.loads((path / "state.json").read_text())


def load(path: Path, lm: Any, model: Any, optimizer: Any, scheduler: Any, info: DistInfo) -> dict[str, Any]:
    """Restore a checkpoint in place; returns its ``state.json``."""
    import torch

    state = json.loads((path / "state.json").read_text())
    if state["world"] != info.world:
        from taskmill.errors import ConfigError

        raise ConfigError([f"checkpoint {path} was written by {state['world']} ranks; this run has {info.world}"])
    load_trainable(lm, torch.load(path / "trainable.pt", map_location="cpu", weights_only=True))
    optim = torch.load(path / "optim.pt", map_location="cpu", weights_only=False)
    if info.mode == "fsdp2":
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict, StateDictOptions

        set_optimizer_state_dict(model, optimizer, optim, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(optim)
    scheduler.load_state_dict(torch.load(path / "sched.pt", weights_only=False))
    set_rng_state(torch.load(path / f"rng-rank{info.rank}.pt", weights_only=False))
    return state
