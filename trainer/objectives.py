"""Which :class:`~taskmill.trainer.loop.Trainer` runs each ``objective`` (sft, cpt, dpo).

SFT is the loop itself. Continued pre-training only changes where documents come from (raw text,
every token a target: :mod:`taskmill.trainer.pretrain_data`), so it keeps the loop's packing,
loss normalisation, checkpoints and resume unchanged. DPO replaces the step's loss
(:mod:`taskmill.trainer.dpo`).
"""

from __future__ import annotations

from typing import Any, Sequence

from taskmill.trainer.config import TrainConfig
from taskmill.trainer.data import Document
from taskmill.trainer.loop import Trainer


class CptTrainer(Trainer):
    """Continued pre-training: next-token loss on every token of raw text."""

    def _load_data(self, documents: Sequence[Document] | None, eval_documents: Sequence[Document] | None) -> None:
        from taskmill.errors import ConfigError
        from taskmill.trainer.model import load_tokenizer
        from taskmill.trainer.pretrain_data import load_text_documents

        cfg = self.cfg
        self.tokenizer = None
        if documents is None or (eval_documents is None and cfg.data.eval_corpus):
            self.tokenizer = load_tokenizer(cfg.model)

        def load(path: str) -> list[Document]:
            return load_text_documents(self.tokenizer, path, cfg.data.max_length, cfg.cpt.text_column, cfg.cpt.add_eos)

        if documents is None:
            if not cfg.data.corpus:
                raise ConfigError(["data.corpus: no text given"])
            documents = load(cfg.data.corpus)
        if eval_documents is None and cfg.data.eval_corpus:
            eval_documents = load(cfg.data.eval_corpus)
        self.docs = list(documents)
        self.eval_docs = list(eval_documents or [])
        self.lengths = [len(d) for d in self.docs]


def trainer_class(cfg: TrainConfig) -> type[Any]:
    """The trainer of ``cfg.objective``."""
    if cfg.objective == "cpt":
        return CptTrainer
    if cfg.objective == "dpo":
        from taskmill.trainer.dpo import DpoTrainer

        return DpoTrainer
    return Trainer
