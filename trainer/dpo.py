"""Direct Preference Optimisation (Rafailov et al., 2023) in the packed training loop.

Data: JSONL in TRL's preference format, one pair per line: ``prompt``, ``chosen``, ``rejected``
(strings; or the conversational form: ``prompt`` a list of messages, ``chosen``/``rejected`` lists
of assistant messages). Prompt + chosen and prompt + rejected are tokenised exactly like SFT rows
(chat template when the tokenizer has one, else ``prompt + "\\n" + answer + EOS``); the loss mask
marks the answer tokens.

Loss of a pair, with ``log pi(y|x)`` the summed log-probability of the answer tokens::

    z = beta * ((log pi(y_c|x) - log pi_ref(y_c|x)) - (log pi(y_r|x) - log pi_ref(y_r|x)))
    loss = -(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z)      (eps = dpo.label_smoothing)

averaged over the pairs of a step. Rewards are ``beta * (log pi - log pi_ref)``; the log reports
their means, the margin (chosen - rejected) and the accuracy (share of pairs with margin > 0).

The reference: for LoRA the same network with its adapters disabled (the base, or base +
``model.init_adapter`` for DPO after SFT); for full fine-tuning a frozen copy of the starting
weights (kept outside the module tree, so DDP/FSDP2 and checkpoints see only the policy). A pair's
two sequences always share a micro-batch; pairs are planned into steps and packed like documents.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from taskmill.errors import DataError
from taskmill.trainer import dist
from taskmill.fileio import corpus_file, read_jsonl
from taskmill.trainer.data import Document, make_micro_batch, to_document, tokenize_full
from taskmill.trainer.engine import _module_base, batch_inputs
from taskmill.trainer.loop import _DUMMY, StepOutput, Trainer


@dataclass(frozen=True)
class Pair:
    """A tokenised preference pair (both documents hold the same prompt)."""

    chosen: Document
    rejected: Document

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)

    @property
    def n_targets(self) -> int:
        """Answer tokens of both sequences."""
        return self.chosen.n_targets + self.rejected.n_targets


DUMMY_PAIR = Pair(_DUMMY, _DUMMY)  # no targets: keeps a rank without pairs in step with the others


def dpo_loss(pi_chosen: Any, pi_rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float,
             label_smoothing: float = 0.0) -> tuple[Any, Any, Any]:
    """Per-pair DPO losses and rewards from summed answer log-probabilities (all ``[P]``).

    Returns:
        (losses, chosen rewards, rejected rewards), each ``[P]``.
    """
    import torch.nn.functional as F

    chosen = beta * (pi_chosen - ref_chosen)
    rejected = beta * (pi_rejected - ref_rejected)
    z = chosen - rejected
    losses = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return losses, chosen.detach(), rejected.detach()


# --- data -----------------------------------------------------------------------------------------


def _answer_ok(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value))


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Read TRL-format preference rows (a JSONL file, or a folder holding ``preferences.jsonl``).

    Raises:
        DataError: missing file, bad JSON, a row without prompt/chosen/rejected, or one whose
            chosen equals its rejected.
    """
    p = Path(path)
    file = p / "preferences.jsonl" if p.is_dir() and (p / "preferences.jsonl").is_file() else corpus_file(p)
    rows = read_jsonl(
        file, _pair_ok, "expected 'prompt', 'chosen' and 'rejected' (strings, or message lists)",
        missing="preference file not found (expected JSONL or a folder with preferences.jsonl)",
        empty="no preference pairs",
    )
    same = next((i for i, r in enumerate(rows) if r["chosen"] == r["rejected"]), None)
    if same is not None:  # no preference to learn, and a sign the pairs were built wrongly
        raise DataError("'chosen' equals 'rejected' (a pair needs two different answers)", file=str(file),
                        row=f"line {_line_of(file, same)}")
    return rows


def _line_of(file: Path, index: int) -> int:
    """1-based line number of the ``index``-th non-blank line (what read_jsonl counts as rows)."""
    with file.open(encoding="utf-8") as fh:
        seen = -1
        for number, line in enumerate(fh, start=1):
            seen += bool(line.strip())
            if seen == index:
                return number
    return index + 1


def _pair_ok(row: Any) -> bool:
    return isinstance(row, dict) and all(_answer_ok(row.get(k)) for k in ("prompt", "chosen", "rejected"))


def _as_row(prompt: Any, answer: Any) -> dict[str, Any]:
    if isinstance(prompt, str) and isinstance(answer, str):
        return {"prompt": prompt, "completion": answer}
    before = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    after = [{"role": "assistant", "content": answer}] if isinstance(answer, str) else list(answer)
    return {"messages": before + after}


def tokenize_pairs(tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int) -> list[Pair]:
    """Preference rows -> :class:`Pair`s, each side tokenised like an SFT row.

    As in TRL's ``DPOTrainer``, the answers of both sides start at the shorter of the two points
    where the prompt's ids and the side's ids part (they differ when a token merges across the
    boundary), so both sides share one prompt.
    """
    chosen = tokenize_full(tokenizer, [_as_row(r["prompt"], r["chosen"]) for r in rows])
    rejected = tokenize_full(tokenizer, [_as_row(r["prompt"], r["rejected"]) for r in rows])
    pairs = []
    for (c, nc), (r, nr) in zip(chosen, rejected):
        n = min(nc, nr)
        pairs.append(Pair(to_document(c, n, max_length), to_document(r, n, max_length)))
    return pairs


# --- loss module ----------------------------------------------------------------------------------


def _chunk_logps(h: Any, w: Any, y: Any) -> Any:
    """log p(y) per row: h ``[C, H]``, w ``[V, H]``, y ``[C]`` -> ``[C]`` (float32 softmax)."""
    import torch

    logits = (h @ w.t()).float()  # [C, V]
    return logits.gather(1, y[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)


def token_logps(hidden: Any, weight: Any, targets: Any, chunk: int) -> Any:
    """Log-probabilities of ``targets`` ``[N]`` under ``hidden @ weight.T`` without keeping all logits.

    With gradients on, each chunk is recomputed in the backward pass (activation checkpointing), so
    only one ``[chunk, V]`` block of logits is alive at a time.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    parts = []
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s:s + chunk], targets[s:s + chunk]
        if torch.is_grad_enabled():
            parts.append(checkpoint(_chunk_logps, h, weight, y, use_reentrant=False))
        else:
            parts.append(_chunk_logps(h, weight, y))
    if not parts:  # no targets (a rank's filler batch): an empty result still wired to hidden and
        # weight, so its backward visits every layer like the other ranks' (FSDP2 gathers in it)
        return (hidden @ weight.t())[:, 0].float()
    return torch.cat(parts)


class DpoLoss(_module_base()):  # type: ignore[misc]
    """``forward(packed pairs) -> (scaled DPO loss sum, stats)``; what DDP / FSDP2 wrap.

    Documents in a micro-batch alternate chosen, rejected, chosen, ... (pair ``i`` is documents
    ``2i`` and ``2i + 1``). ``stats`` is ``[loss sum, chosen reward sum, rejected reward sum,
    correct pairs, pairs]`` (detached, for the log).

    Args:
        lm: The policy ``*ForCausalLM`` (LoRA layers injected when training an adapter).
        reference: A frozen ``*ForCausalLM`` copy, or None to use ``lm`` under ``disable_adapters``.
        disable_adapters: Context-manager factory turning the LoRA adapters off (LoRA runs).
        chunk: Target rows per log-probability chunk.
        amp_dtype: Autocast dtype or None.
        beta: DPO beta.
        label_smoothing: Conservative-DPO label noise.
    """

    def __init__(self, lm: Any, reference: Any | None, disable_adapters: Callable[[], Any] | None, chunk: int,
                 amp_dtype: Any | None, beta: float, label_smoothing: float) -> None:
        super().__init__()
        self.lm = lm
        self._reference = [reference]  # a list: not a submodule (no DDP sync, no optimizer, no checkpoint)
        self.disable_adapters = disable_adapters
        self.chunk, self.amp_dtype, self.beta, self.label_smoothing = chunk, amp_dtype, beta, label_smoothing

    def doc_logps(self, lm: Any, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int,
                  target_pos: Any, target_ids: Any) -> Any:
        """Summed answer log-probability of every packed document, ``[n_docs]``."""
        import torch

        with torch.autocast(input_ids.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = lm.model(input_ids=input_ids, position_ids=position_ids,
                           cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
                           max_length_q=max_seqlen, max_length_k=max_seqlen, use_cache=False)
        hidden = out.last_hidden_state[0].index_select(0, target_pos)  # [N, H]
        dtype = self.amp_dtype or hidden.dtype
        logp = token_logps(hidden.to(dtype), lm.lm_head.weight.to(dtype), target_ids, self.chunk)  # [N]
        doc = torch.searchsorted(cu_seqlens[1:].long(), target_pos, right=True)  # [N] document of each target
        n_docs = cu_seqlens.shape[0] - 1
        return torch.zeros(n_docs, dtype=torch.float32, device=logp.device).index_add(0, doc, logp)

    def reference_logps(self, **batch: Any) -> Any:
        """Document log-probabilities under the frozen reference (no gradient)."""
        import contextlib

        import torch

        ref = self._reference[0]
        ctx = self.disable_adapters() if ref is None and self.disable_adapters else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            return self.doc_logps(ref if ref is not None else self.lm, **batch)

    def forward(self, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int,
                target_pos: Any, target_ids: Any, scale: float) -> tuple[Any, Any]:
        """Scaled sum of the pairs' DPO losses, and the step statistics."""
        import torch

        batch = dict(input_ids=input_ids, position_ids=position_ids, cu_seqlens=cu_seqlens,
                     max_seqlen=max_seqlen, target_pos=target_pos, target_ids=target_ids)
        ref = self.reference_logps(**batch)
        pol = self.doc_logps(self.lm, **batch)
        losses, rc, rr = dpo_loss(pol[0::2], pol[1::2], ref[0::2], ref[1::2], self.beta, self.label_smoothing)
        stats = torch.stack([losses.detach().sum(), rc.sum(), rr.sum(), (rc > rr).float().sum(),
                             # a fill kernel, not a blocking host-to-device copy
                             torch.full((), float(losses.shape[0]), device=losses.device)])
        return losses.sum() * scale, stats


# --- the trainer ----------------------------------------------------------------------------------


class DpoTrainer(Trainer):
    """The training loop with pairs as its documents and the DPO loss as its step loss."""

    documents_name = "preference pairs"
    loss_key = "dpo_loss"  # the loss's name in :meth:`_stats` (subclasses with another loss rename it)

    def _read_documents(self, path: str) -> list[Pair]:
        return tokenize_pairs(self.tokenizer, read_pairs(path), self.cfg.data.max_length)

    def _loss_module(self) -> Any:
        reference = None
        if self.peft is None:  # full fine-tuning: freeze a copy of the starting weights
            reference = copy.deepcopy(self.lm).eval()
            reference.requires_grad_(False)
        d = self.cfg.dpo
        return DpoLoss(self.lm, reference, self.peft.disable_adapter if self.peft is not None else None,
                       self.cfg.run.loss_chunk_tokens, self.amp_dtype, d.beta, d.label_smoothing)

    def _forward(self, runner: Any, pairs: list[Pair], scale: float) -> tuple[Any, Any]:
        docs = [d for p in pairs for d in (p.chosen, p.rejected)]
        dummy = pairs == [DUMMY_PAIR]
        loss, stats = runner(**batch_inputs(make_micro_batch(docs), self.info.device), scale=0.0 if dummy else scale)
        return loss, stats * (0.0 if dummy else 1.0)

    def run_step(self, step_pairs: list[int]) -> StepOutput:
        """Queue forward/backward over this rank's pairs, clipping and the optimizer step.

        Returns:
            Device tensors: the loss slot holds ``world`` x the mean DPO loss, ``stats`` the sums
            :meth:`_stats` turns into rewards, margin and accuracy.
        """
        import torch

        scale = self.info.world / max(len(step_pairs), 1)
        # pairs packed whole; dummies keep ranks in step
        micro = self._rank_batches(self.docs, self.lengths, step_pairs, DUMMY_PAIR, self.info.mode == "fsdp2")
        totals = torch.zeros(5, dtype=torch.float64, device=self.info.device)
        self.model.train()
        for i, pairs in enumerate(micro):
            with dist.no_grad_sync(self.model, self.info, sync=i == len(micro) - 1):
                loss, stats = self._forward(self.model, pairs, scale)
                loss.backward()
            totals += stats.double()
        norm, lr = self._optimizer_step()
        totals = dist.all_reduce_(totals, self.info)
        # loss slot = world * mean, as the SFT loop's read divides by world
        mean = totals[0] / totals[4].clamp(min=1.0) * self.info.world
        return StepOutput(mean, norm, lr, totals)

    @staticmethod
    def _stats(sums: Sequence[float]) -> dict[str, float]:
        loss, chosen, rejected, correct, n = sums
        n = max(n, 1.0)
        return {"dpo_loss": loss / n, "rewards_chosen": chosen / n, "rewards_rejected": rejected / n,
                "reward_margin": (chosen - rejected) / n, "reward_accuracy": correct / n}

    def evaluate(self) -> float | None:
        """Mean DPO loss over the eval pairs (its margin and accuracy land in ``eval_stats``)."""
        import torch

        if not self.eval_docs:
            return None
        runner = self.model if self.info.mode == "fsdp2" else self.module
        totals = torch.zeros(5, dtype=torch.float64, device=self.info.device)
        self.model.eval()
        lengths = [len(p) for p in self.eval_docs]
        with torch.no_grad():
            for pairs in self._rank_batches(self.eval_docs, lengths, range(len(self.eval_docs)), DUMMY_PAIR, True):
                totals += self._forward(runner, pairs, 1.0)[1].double()
        self.eval_stats = self._stats(dist.all_reduce_sum([float(t) for t in totals], self.info))
        return self.eval_stats[self.loss_key]

    def _stats_fields(self, stats: list[float]) -> dict[str, Any]:
        return {k: v for k, v in self._stats(stats).items() if k != self.loss_key}
