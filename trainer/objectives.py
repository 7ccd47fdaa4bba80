"""Which :class:`~taskmill.trainer.loop.Trainer` runs each ``objective`` (sft, cpt, dpo).

SFT is the loop itself. Continued pre-training only changes where documents come from (raw text,
every token a target: :mod:`taskmill.trainer.pretrain_data`), so it keeps the loop's packing,
loss normalisation, checkpoints and resume unchanged. DPO replaces the step's loss
(:mod:`taskmill.trainer.dpo`).
"""

from __future__ import annotations

from typing import Any

from taskmill.trainer.config import TrainConfig
from taskmill.trainer.data import Document
from taskmill.trainer.loop import Trainer


class CptTrainer(Trainer):
    """Continued pre-training: next-token loss on every token of raw text."""

    documents_name = "text"

    def _read_documents(self, path: str) -> list[Document]:
        from taskmill.trainer.pretrain_data import load_text_documents

        c = self.cfg
        return load_text_documents(self.tokenizer, path, c.data.max_length, c.cpt.text_column, c.cpt.add_eos)


def trainer_class(cfg: TrainConfig) -> type[Any]:
    """The trainer of ``cfg.objective``."""
    if cfg.objective == "cpt":
        return CptTrainer
    if cfg.objective == "dpo":
        from taskmill.trainer.dpo import DpoTrainer

        return DpoTrainer
    if cfg.objective == "reward":
        from taskmill.trainer.reward import RewardTrainer

        return RewardTrainer
    if cfg.objective == "rlhf":
        from taskmill.trainer.rl import RlhfTrainer

        return RlhfTrainer
    return Trainer
