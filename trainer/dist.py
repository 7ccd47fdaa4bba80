"""Process-group set-up under torchrun, and DDP / FSDP2 wrapping."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from taskmill.errors import ConfigError


@dataclass
class DistInfo:
    """Where this process sits.

    Attributes:
        mode: ``none``, ``ddp`` or ``fsdp2``.
        rank: Global rank.
        world: World size.
        device: ``torch.device`` this rank computes on.
    """

    mode: str
    rank: int
    world: int
    device: Any

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the one that logs and writes shared files)."""
        return self.rank == 0


def _pick_device(requested: str, local_rank: int) -> Any:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(["run.device: 'cuda' requested but CUDA is not available"])
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(requested_mode: str, requested_device: str) -> DistInfo:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local_rank)
    if world == 1 or requested_mode == "none":
        # one process: ddp/fsdp2 in the config are no-ops, so one config serves both launches
        return DistInfo("none", 0, 1, device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    mode = "ddp" if requested_mode == "auto" else requested_mode
    return DistInfo(mode, dist.get_rank(), dist.get_world_size(), device)


def wrap(module: Any, info: DistInfo, layers: Any) -> Any:
    """DDP, or FSDP2 (``fully_shard`` per decoder layer, then the root), or nothing."""
    if info.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DDP(module, device_ids=ids)
    if info.mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in layers:
            fully_shard(layer)
        fully_shard(module)
    return module


@contextlib.contextmanager
def no_grad_sync(module: Any, info: DistInfo, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if info.mode == "ddp" and not sync:
        with module.no_sync():
            yield
        return
    if info.mode == "fsdp2":
        module.set_requires_gradient_sync(sync)
    yield


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum floats over ranks (identity on one process)."""
    if info.world == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_(t: Any, info: DistInfo) -> Any:
    """Sum a tensor over ranks in place and return it; queued on the device, no host wait."""
    if info.world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.world > 1:
        import torch.distributed as dist

        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Destroy the process group this module created."""
    if info.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
