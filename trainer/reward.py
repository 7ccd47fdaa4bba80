"""Reward model (``objective: reward``): a scalar head on a causal LM trained with the Bradley–Terry loss.

Data: the same prompt/chosen/rejected pairs as DPO (:func:`taskmill.trainer.dpo.read_pairs`; an
optional numeric ``margin`` field per row, as in TRL). Each side is tokenised like an SFT row and
scored at its **last non-padding token**, the token ``AutoModelForSequenceClassification`` reads
(its rule: the rightmost token that is not ``pad_token_id``). Trailing padding tokens (EOS when
the tokenizer pads with EOS) are dropped from the training documents, which under causal attention
leaves the scored hidden state unchanged, so the packed training loop scores each document at its
own last token.

Loss of a pair, with ``r = score(h_last)`` (a bias-free ``[H] -> 1`` linear head)::

    loss = -log sigmoid(r_chosen - r_rejected - margin) + c * (r_chosen + r_rejected) ** 2

averaged over the pairs of a step; ``c`` is ``reward.center_coefficient`` (TRL's
``center_rewards_coefficient``: keeps rewards centred on zero). This equals TRL's
``RewardTrainer.compute_loss`` (tested on a fixed batch).

The head lives on the causal LM as its ``score`` attribute, so checkpoints (trainable parameters
of the LM) carry it and resume is exact. The finished run writes ``OUTPUT/reward_model/``: a plain
``*ForSequenceClassification`` folder (``num_labels=1``, ``pad_token_id`` set, LoRA merged) with the
tokenizer, which ``AutoModelForSequenceClassification.from_pretrained`` loads.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from taskmill.errors import DataError
from taskmill.fileio import replace_dir
from taskmill.trainer.data import Document
from taskmill.trainer.dpo import DUMMY_PAIR, DpoTrainer, Pair, read_pairs, tokenize_pairs
from taskmill.trainer.engine import _module_base

REWARD_DIR = "reward_model"


def bradley_terry_loss(chosen: Any, rejected: Any, margin: Any = 0.0, center: float = 0.0) -> Any:
    """Per-pair Bradley–Terry losses from scalar rewards (all ``[P]``; ``margin`` a tensor or float).

    Returns:
        ``[P]``: ``-log sigmoid(chosen - rejected - margin) + center * (chosen + rejected) ** 2``.
    """
    import torch.nn.functional as F

    losses = -F.logsigmoid(chosen - rejected - margin)
    if center:
        losses = losses + center * (chosen + rejected) ** 2
    return losses


@dataclass(frozen=True)
class RewardPair(Pair):
    """A tokenised pair with its margin (0 when the row gives none)."""

    margin: float = 0.0


def strip_padding(doc: Document, pad_id: int | None) -> Document:
    """Drop trailing ``pad_id`` tokens: the document then ends at the token a HF classifier scores."""
    n = len(doc.ids)
    while pad_id is not None and n > 1 and doc.ids[n - 1] == pad_id:
        n -= 1
    return Document(doc.ids[:n], doc.loss_mask[:n])


def _margin(row: dict[str, Any], number: int, file: str) -> float:
    value = row.get("margin", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"'margin' must be a number, got {value!r}", file=file, row=f"pair {number}")
    return float(value)


def reward_pairs(tokenizer: Any, path: str | Path, max_length: int) -> list[RewardPair]:
    """Read pairs and tokenise them for the reward objective (trailing padding stripped)."""
    rows = read_pairs(path)
    margins = [_margin(r, i + 1, str(path)) for i, r in enumerate(rows)]
    pad = tokenizer.pad_token_id
    return [RewardPair(strip_padding(p.chosen, pad), strip_padding(p.rejected, pad), m)
            for p, m in zip(tokenize_pairs(tokenizer, rows, max_length), margins)]


def attach_score_head(lm: Any, seed: int) -> Any:
    """Give ``lm`` a bias-free ``score`` linear ``[H] -> 1`` (HF's init: normal(0, initializer_range))."""
    import torch

    if getattr(lm, "score", None) is None:
        gen = torch.Generator().manual_seed(seed)
        head = torch.nn.Linear(lm.config.hidden_size, 1, bias=False)
        with torch.no_grad():
            head.weight.normal_(0.0, getattr(lm.config, "initializer_range", 0.02), generator=gen)
        lm.score = head.to(lm.lm_head.weight.device)
    return lm.score


class RewardLoss(_module_base()):  # type: ignore[misc]
    """``forward(packed pairs, margins) -> (scaled loss sum, stats)``; what DDP wraps.

    Documents alternate chosen, rejected (pair ``i`` is documents ``2i`` and ``2i + 1``). ``stats``
    is ``[loss sum, chosen reward sum, rejected reward sum, correct pairs, pairs]`` like DPO's.
    """

    def __init__(self, lm: Any, amp_dtype: Any | None, center: float) -> None:
        super().__init__()
        self.lm, self.amp_dtype, self.center = lm, amp_dtype, center

    def rewards(self, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int) -> Any:
        """Scalar reward of every packed document, ``[n_docs]`` float32."""
        import torch

        with torch.autocast(input_ids.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = self.lm.model(input_ids=input_ids, position_ids=position_ids,
                                cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
                                max_length_q=max_seqlen, max_length_k=max_seqlen, use_cache=False)
            last = out.last_hidden_state[0].index_select(0, cu_seqlens[1:].long() - 1)  # [n_docs, H]
            return self.lm.score(last).float()[:, 0]

    def forward(self, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int,
                target_pos: Any, target_ids: Any, scale: float, margins: Any = None) -> tuple[Any, Any]:
        """Scaled sum of the pairs' Bradley–Terry losses, and the step statistics."""
        import torch

        r = self.rewards(input_ids, position_ids, cu_seqlens, max_seqlen)
        rc, rr = r[0::2], r[1::2]
        losses = bradley_terry_loss(rc, rr, 0.0 if margins is None else margins, self.center)
        stats = torch.stack([losses.detach().sum(), rc.detach().sum(), rr.detach().sum(),
                             (rc > rr).float().sum(), torch.full((), float(losses.shape[0]), device=r.device)])
        return losses.sum() * scale, stats


class RewardTrainer(DpoTrainer):
    """The DPO loop's pair planning with a score head and the Bradley–Terry loss."""

    loss_key = "reward_loss"

    def _read_documents(self, path: str) -> list[RewardPair]:
        return reward_pairs(self.tokenizer, path, self.cfg.data.max_length)

    def _loss_module(self) -> Any:
        attach_score_head(self.lm, self.cfg.run.seed)
        return RewardLoss(self.lm, self.amp_dtype, self.cfg.reward.center_coefficient)

    def _forward(self, runner: Any, pairs: list[Pair], scale: float) -> tuple[Any, Any]:
        import torch

        from taskmill.trainer.data import make_micro_batch
        from taskmill.trainer.engine import batch_inputs

        docs = [d for p in pairs for d in (p.chosen, p.rejected)]
        dummy = pairs == [DUMMY_PAIR]
        margins = torch.tensor([getattr(p, "margin", 0.0) for p in pairs], dtype=torch.float32,
                               device=self.info.device)
        loss, stats = runner(**batch_inputs(make_micro_batch(docs), self.info.device),
                             scale=0.0 if dummy else scale, margins=margins)
        return loss, stats * (0.0 if dummy else 1.0)

    @staticmethod
    def _stats(sums: Sequence[float]) -> dict[str, float]:
        loss, chosen, rejected, correct, n = sums
        n = max(n, 1.0)
        return {"reward_loss": loss / n, "rewards_chosen": chosen / n, "rewards_rejected": rejected / n,
                "reward_margin": (chosen - rejected) / n, "reward_accuracy": correct / n}

    def save_final(self) -> Path:
        """Write ``OUTPUT/reward_model/`` (a ``*ForSequenceClassification`` folder, LoRA merged)."""
        from taskmill.trainer import dist

        final = self.out / REWARD_DIR
        if self.info.main:
            tmp = self.out / f".tmp-{REWARD_DIR}"
            shutil.rmtree(tmp, ignore_errors=True)
            save_classifier(self.peft if self.peft is not None else self.lm, self.tokenizer, tmp)
            replace_dir(tmp, final)
        dist.barrier(self.info)
        return final


def save_classifier(model: Any, tokenizer: Any, dest: Path) -> None:
    """Save a causal LM carrying a ``score`` head (PEFT-wrapped or plain) as a sequence classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification

    lm = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    cfg = copy.deepcopy(lm.config)
    cfg.num_labels, cfg.architectures, cfg.use_cache = 1, None, True
    cfg._attn_implementation = "sdpa"  # not the training-only packed attention
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    cfg.pad_token_id = pad if pad is not None else (cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id)
    seq = AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32)
    base = getattr(seq, seq.base_model_prefix)
    with torch.no_grad():
        base.load_state_dict(lm.model.state_dict())
        seq.score.weight.copy_(lm.score.weight)
    seq.save_pretrained(str(dest))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(dest))


# --- reward-eval ----------------------------------------------------------------------------------


def load_reward_model(folder: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """(sequence classifier in eval mode, tokenizer) from a ``reward_model`` folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DataError("not a reward model folder (no config.json)", file=str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
    if model.config.num_labels != 1:
        raise DataError(f"a reward model has num_labels=1, this one {model.config.num_labels}", file=str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def score_documents(model: Any, docs: Sequence[Document], pad_id: int, batch_size: int = 16) -> list[float]:
    """Rewards of tokenised documents, right-padded batches through the HF classifier."""
    import torch

    out: list[float] = []
    device = next(model.parameters()).device
    for s in range(0, len(docs), batch_size):
        chunk = docs[s:s + batch_size]
        width = max(len(d) for d in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, d in enumerate(chunk):
            ids[i, :len(d)] = torch.tensor(d.ids)
            mask[i, :len(d)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [B, 1]
        out.extend(float(x) for x in logits[:, 0].float())
    return out


def bootstrap_interval(values: Sequence[float], resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded resampling of the pairs)."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * (resamples - 1))]
    hi = means[int(round((1 + level) / 2 * (resamples - 1)))]
    return lo, hi


def reward_eval(pairs: str | Path, model_dir: str | Path, max_length: int = 2048, resamples: int = 1000,
                seed: int = 0, batch_size: int = 16) -> dict[str, Any]:
    """Pairwise accuracy and mean margin (chosen - rejected reward) of a reward model on pairs.

    Returns:
        ``{"pairs", "accuracy", "accuracy_ci", "mean_margin", "margin_ci", "model", "file"}``; the
        intervals are 95% percentile bootstraps over pairs.
    """
    model, tok = load_reward_model(model_dir)
    rows = read_pairs(pairs)
    tokenized = tokenize_pairs(tok, rows, max_length)
    chosen = score_documents(model, [p.chosen for p in tokenized], tok.pad_token_id, batch_size)
    rejected = score_documents(model, [p.rejected for p in tokenized], tok.pad_token_id, batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    correct = [1.0 if m > 0 else 0.0 for m in margins]
    return {
        "pairs": len(margins), "accuracy": sum(correct) / len(correct),
        "accuracy_ci": list(bootstrap_interval(correct, resamples, seed)),
        "mean_margin": sum(margins) / len(margins), "margin_ci": list(bootstrap_interval(margins, resamples, seed)),
        "model": str(model_dir), "file": str(pairs),
    }


def cli_reward_eval(pairs: Path, model: Path, max_length: int, resamples: int, seed: int, out: Path | None) -> str:
    """Run ``taskmill reward-eval``; writes ``out`` (JSON) when given and returns the text to print."""
    from taskmill.errors import ConfigError
    from taskmill.fileio import write_text

    problems = [f"--{k}: must be > 0, got {v}" for k, v in (("max-length", max_length), ("resamples", resamples)) if v <= 0]
    if problems:
        raise ConfigError(problems)
    result = reward_eval(pairs, model, max_length, resamples, seed)
    text = json.dumps(result, indent=1, sort_keys=True)
    if out is not None:
        write_text(out, text + "\n")
    lo, hi = result["accuracy_ci"]
    return (f"{result['pairs']} pairs: accuracy {result['accuracy']:.3f} [{lo:.3f}, {hi:.3f}], "
            f"mean margin {result['mean_margin']:.4f} [{result['margin_ci'][0]:.4f}, {result['margin_ci'][1]:.4f}]")
