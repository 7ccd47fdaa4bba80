"""Tokenisation with loss masks, packing, the SFT/LoRA training loop, checkpoints and merge.

Public API::

    from taskmill.trainer import load_config, train, merge_adapter
    result = train(load_config("train.yaml", ["optim.lr=1e-4"]))

Heavy libraries (torch, transformers, peft) load only when these functions run.
"""

from __future__ import annotations

from typing import Any

from taskmill.trainer.config import TrainConfig, config_from_dict, load_config, save_config

__all__ = ["TrainConfig", "config_from_dict", "load_config", "save_config", "train", "merge_adapter"]


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`taskmill.trainer.loop.train`."""
    from taskmill.trainer.loop import train as _train

    return _train(*args, **kwargs)


def merge_adapter(*args: Any, **kwargs: Any) -> Any:
    """See :func:`taskmill.trainer.export.merge_adapter`."""
    from taskmill.trainer.export import merge_adapter as _merge

    return _merge(*args, **kwargs)
