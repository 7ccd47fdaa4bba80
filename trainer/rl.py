"""Online policy optimisation (``objective: rlhf``) with the RLOO estimator.

Why RLOO (REINFORCE Leave-One-Out; Ahmadian et al., 2024) and not PPO: it needs no value head
and no critic training (half the models in memory, no value-loss tuning), and with ``k`` samples
per prompt the mean reward of the *other* samples is an unbiased baseline. One gradient step per
batch of fresh samples keeps it on-policy, so PPO's ratio clipping has nothing to do. On a CPU
that is the difference between a run that fits and one that does not.

A step, for its ``rlhf.prompts_per_step`` prompts (planned per epoch, seeded shuffle)::

    rollouts   k responses per prompt from the current policy (HF ``generate``, temperature T,
               ``max_new_tokens``, EOS and stop sequences end a response)
    reward     r_i: a rule on the corpus row (exact match / ROUGE-L with the completion, a user
               callable) or a reward model
    KL         kl_i = sum over response tokens of log pi(y_t) - log pi_ref(y_t)   (sampled-token
               estimate of KL(pi || pi_ref), policy and reference at temperature T)
    total      R_i = r_i - kl_coef * kl_i
    advantage  A_i = R_i - mean_{j != i, same prompt} R_j
    loss       -(1 / N) * sum_i A_i * log pi(y_i | x_i)    (N = prompts x k)

The reference is the starting policy: the base with adapters disabled for LoRA (base +
``model.init_adapter`` for RLHF after SFT), a frozen copy for full fine-tuning (as for DPO).
Rollouts seed torch from (run seed, step) before sampling, so a run resumed from a checkpoint
draws exactly the samples the uninterrupted run drew. The log records per step the mean reward,
KL, entropy of the sampling distribution over response tokens, response length and rollout
tokens/s. The run saves the adapter or model like SFT (eval reads it unchanged).

Rollouts (``rlhf.rollout_backend``): ``hf`` uses the policy's own ``generate`` on the training
process (one prompt's k samples per call, so no padding is needed); ``vllm`` asks a vLLM engine on
the same GPU, which serves the policy's current LoRA weights saved each step
(:mod:`taskmill.trainer.rollout_vllm`). Both cut responses the same way.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from taskmill.errors import ConfigError
from taskmill.trainer.data import Document, make_micro_batch, pack_micro_batches, read_corpus
from taskmill.trainer.dpo import DpoLoss, token_logps
from taskmill.trainer.engine import batch_inputs
from taskmill.trainer.loop import StepOutput, Trainer
from taskmill.trainer.model import load_tokenizer

N_STATS = 8  # loss sum, reward sum, kl sum, entropy sum, entropy tokens, response tokens, samples, rollout s


@dataclass(frozen=True)
class PromptItem:
    """A corpus row's prompt, tokenised as the policy sees it before its answer.

    Attributes:
        ids: Prompt token ids (chat template with the generation prompt, or ``prompt + "\\n"``).
        text: The row's prompt text (what rule rewards and reward models read).
        row: The corpus row (its ``completion`` is the rule rewards' target).
    """

    ids: tuple[int, ...]
    text: str
    row: dict[str, Any] = field(compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_targets(self) -> int:
        """None fixed: the step's targets are the responses it samples (logged as response_length)."""
        return 0


def prompt_items(tokenizer: Any, rows: Sequence[dict[str, Any]], max_prompt: int) -> list[PromptItem]:
    """Corpus rows -> :class:`PromptItem` (prompts longer than ``max_prompt`` keep their end)."""
    from taskmill.trainer.data import _chat_pieces, _plain_pieces

    chat = getattr(tokenizer, "chat_template", None) is not None
    out = []
    for row in rows:
        prompt, _ = (_chat_pieces if chat else _plain_pieces)(tokenizer, row)
        ids = tokenizer(prompt, add_special_tokens=not chat)["input_ids"][-max_prompt:]
        text = row["prompt"] if isinstance(row.get("prompt"), str) else row["messages"][-2]["content"]
        target = row["completion"] if isinstance(row.get("completion"), str) else row["messages"][-1]["content"]
        out.append(PromptItem(tuple(ids), text, {**row, "completion": target}))
    return out


def rloo_advantages(totals: Any, k: int) -> Any:
    """Leave-one-out advantages of ``totals`` ``[P * k]`` (k consecutive samples per prompt) -> ``[P * k]``."""
    groups = totals.reshape(-1, k)  # [P, k]
    baseline = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return (groups - baseline).reshape(-1)


def cut_response(tokens: list[int], eos: set[int], stops: Sequence[str], tokenizer: Any) -> list[int]:
    """A sampled continuation up to and including its first EOS, or the token completing a stop."""
    end = next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))
    tokens = tokens[:end]
    if stops:
        for n in range(1, len(tokens) + 1):
            if any(s in tokenizer.decode(tokens[:n], skip_special_tokens=True) for s in stops):
                return tokens[:n]
    return tokens


class PolicyLoss(DpoLoss):
    """``forward(packed samples, advantages) -> (scaled policy-gradient loss, log-probs)``.

    Reuses DPO's packed log-probabilities and reference handling; logits are divided by the
    sampling temperature so the log-probabilities are those of the distribution sampled from.
    """

    def __init__(self, lm: Any, reference: Any | None, disable_adapters: Any, chunk: int, amp_dtype: Any | None,
                 temperature: float) -> None:
        super().__init__(lm, reference, disable_adapters, chunk, amp_dtype, beta=1.0, label_smoothing=0.0)
        self.temperature = temperature

    def doc_logps(self, lm: Any, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int,
                  target_pos: Any, target_ids: Any) -> Any:
        """Summed response log-probability of every packed document at the temperature, ``[n_docs]``."""
        import torch

        with torch.autocast(input_ids.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = lm.model(input_ids=input_ids, position_ids=position_ids,
                           cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
                           max_length_q=max_seqlen, max_length_k=max_seqlen, use_cache=False)
        hidden = out.last_hidden_state[0].index_select(0, target_pos)  # [N, H]
        dtype = self.amp_dtype or hidden.dtype
        weight = lm.lm_head.weight.to(dtype) / self.temperature  # logits / T
        logp = token_logps(hidden.to(dtype), weight, target_ids, self.chunk)  # [N]
        doc = torch.searchsorted(cu_seqlens[1:].long(), target_pos, right=True)  # [N]
        return torch.zeros(cu_seqlens.shape[0] - 1, dtype=torch.float32, device=logp.device).index_add(0, doc, logp)

    def forward(self, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int,
                target_pos: Any, target_ids: Any, scale: float, advantages: Any = None) -> tuple[Any, Any]:
        """``-scale * sum(A_i * log pi(y_i))`` and the policy's per-document log-probabilities."""
        pol = self.doc_logps(self.lm, input_ids, position_ids, cu_seqlens, max_seqlen, target_pos, target_ids)
        if advantages is None:
            return pol.sum() * 0.0, pol.detach()
        return -(advantages * pol).sum() * scale, pol.detach()


class RlhfTrainer(Trainer):
    """The training loop with prompts as its documents and RLOO steps on sampled responses."""

    documents_name = "prompts"

    def _load_data(self, documents: Sequence[Any] | None, eval_documents: Sequence[Any] | None) -> None:
        super()._load_data(documents, eval_documents)
        if self.tokenizer is None:  # responses are decoded for the rewards
            self.tokenizer = load_tokenizer(self.cfg.model)

    def _read_documents(self, path: str) -> list[PromptItem]:
        c = self.cfg
        return prompt_items(self.tokenizer, read_corpus(path), max(1, c.data.max_length - c.rlhf.max_new_tokens))

    def _plan(self) -> list[list[int]]:
        n, per = len(self.lengths), self.cfg.rlhf.prompts_per_step
        steps: list[list[int]] = []
        self.step_epoch = []
        for epoch in range(self.cfg.data.epochs):
            order = list(range(n))
            if self.cfg.data.shuffle:
                random.Random(f"{self.cfg.run.seed}:{epoch}").shuffle(order)
            chunks = [order[s:s + per] for s in range(0, n, per)]
            steps.extend(chunks)
            self.step_epoch.extend([epoch] * len(chunks))
        return steps

    def _loss_module(self) -> Any:
        if self.info.world > 1:
            raise ConfigError(["objective 'rlhf' runs in one process (no DDP/FSDP2 yet)"])
        reference = None
        if self.peft is None:
            reference = copy.deepcopy(self.lm).eval()
            reference.requires_grad_(False)
        r = self.cfg.rlhf
        from taskmill.trainer.rewards import RewardFunction

        self.reward_fn = RewardFunction(r.reward, r.reward_callable, r.reward_model, self.cfg.data.max_length)
        self.vllm = None
        if r.rollout_backend == "vllm":  # fail before the first step: no CUDA, no vllm
            from taskmill.trainer.rollout_vllm import VllmRollouts, require_cuda

            require_cuda()
            self.vllm = VllmRollouts(self)
        return PolicyLoss(self.lm, reference, self.peft.disable_adapter if self.peft is not None else None,
                          self.cfg.run.loss_chunk_tokens, self.amp_dtype, r.temperature)

    def run(self, stop_after: int | None = None) -> Any:
        """The training loop; the vLLM rollout engine (if any) is shut down when it ends, or fails."""
        try:
            return super().run(stop_after)
        finally:
            if getattr(self, "vllm", None) is not None:
                self.vllm.close()

    def _resume(self) -> int:
        self._next_step = super()._resume()  # the step number seeds the rollouts
        return self._next_step

    # --- rollouts ---------------------------------------------------------------------------------

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        gen_eos = getattr(getattr(self.lm, "generation_config", None), "eos_token_id", None)
        ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        return ids

    def rollouts(self, prompts: Sequence[PromptItem], step: int) -> tuple[list[list[int]], float | None, int]:
        """k sampled responses per prompt (token ids), the summed entropy and its token count.

        The entropy is None from vLLM (no full distributions): :meth:`run_step` then estimates it.
        """
        r = self.cfg.rlhf
        if self.vllm is not None:
            eos = self._eos_ids()
            raw = self.vllm.generate([p.ids for p in prompts], step)
            return [cut_response(t, eos, r.stop, self.tokenizer) for t in raw], None, 0
        return self._hf_rollouts(prompts, step)

    def _hf_rollouts(self, prompts: Sequence[PromptItem], step: int) -> tuple[list[list[int]], float, int]:
        import torch
        from transformers import GenerationConfig

        r = self.cfg.rlhf
        eos = self._eos_ids()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos, default=0)
        gen_cfg = GenerationConfig(do_sample=True, temperature=r.temperature, top_k=0, top_p=1.0,
                                   max_new_tokens=r.max_new_tokens, pad_token_id=pad,
                                   eos_token_id=sorted(eos) or None, use_cache=True, output_scores=True,
                                   return_dict_in_generate=True)
        torch.manual_seed(self.cfg.run.seed * 1_000_003 + step)  # same samples after a resume
        responses: list[list[int]] = []
        ent_sum, ent_n = 0.0, 0
        self.lm.eval()
        with torch.no_grad():
            for p in prompts:
                ids = torch.tensor([p.ids] * r.samples_per_prompt, device=self.info.device)  # [k, P]
                out = self.lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
                new = out.sequences[:, ids.shape[1]:].tolist()  # [k, <= max_new_tokens]
                for b, tokens in enumerate(new):
                    resp = cut_response(tokens, eos, r.stop, self.tokenizer)
                    responses.append(resp)
                    for t in range(len(resp)):  # entropy of the sampling distribution at each response token
                        logp = torch.log_softmax(out.scores[t][b].float(), -1)
                        ent_sum -= float((logp.exp() * logp).sum())
                    ent_n += len(resp)
        return responses, ent_sum, ent_n

    # --- one step ---------------------------------------------------------------------------------

    def _packed(self, docs: list[Document]) -> list[list[int]]:
        return pack_micro_batches(range(len(docs)), [len(d) for d in docs], self.cfg.data.micro_batch_tokens)

    def _logps(self, docs: list[Document], bins: list[list[int]]) -> tuple[Any, Any]:
        """(policy, reference) summed response log-probabilities ``[N]``, no gradient."""
        import torch

        pol = torch.zeros(len(docs), dtype=torch.float32, device=self.info.device)
        ref = torch.zeros_like(pol)
        self.model.eval()
        with torch.no_grad():
            for b in bins:
                batch = batch_inputs(make_micro_batch([docs[i] for i in b]), self.info.device)
                idx = torch.tensor(b, device=self.info.device)
                pol[idx] = self.module(**batch, scale=0.0)[1]
                ref[idx] = self.module.reference_logps(**batch)
        return pol, ref

    def run_step(self, step_prompts: list[int]) -> StepOutput:
        """Sample, score, compute RLOO advantages, then one gradient step.

        Returns:
            The loss (``-sum(A * logp) / N``) and stats ``[loss, reward, kl, entropy sum, entropy
            tokens, response tokens, samples, rollout seconds]`` (sums) on the device.
        """
        import torch

        r, k = self.cfg.rlhf, self.cfg.rlhf.samples_per_prompt
        step, self._next_step = self._next_step, self._next_step + 1
        prompts = [self.docs[i] for i in step_prompts]
        t0 = time.perf_counter()
        responses, ent_sum, ent_n = self.rollouts(prompts, step)
        rollout_s = time.perf_counter() - t0
        items = [p for p in prompts for _ in range(k)]
        texts = [self.tokenizer.decode(t, skip_special_tokens=True) for t in responses]
        rewards = torch.tensor(self.reward_fn([p.text for p in items], texts, [p.row for p in items]),
                               dtype=torch.float32, device=self.info.device)  # [N]
        # an empty response (EOS first... cut to nothing) still needs one target: keep the EOS-less
        # sample as one pad token so every sample has a log-probability
        docs = [Document(p.ids + tuple(t or [self.tokenizer.pad_token_id]), (0,) * len(p.ids) + (1,) * max(1, len(t)))
                for p, t in zip(items, responses)]
        bins = self._packed(docs)
        pol, ref = self._logps(docs, bins)
        kl = pol - ref  # [N]
        if ent_sum is None:  # sampled-token estimate: -sum log pi(y_t) over the response tokens
            ent_sum, ent_n = -float(pol.sum()), sum(max(1, len(t)) for t in responses)
        adv = rloo_advantages(rewards - r.kl_coef * kl, k)  # [N]
        n = len(docs)
        total = torch.zeros((), dtype=torch.float64, device=self.info.device)
        self.model.train()
        for b in bins:
            batch = batch_inputs(make_micro_batch([docs[i] for i in b]), self.info.device)
            loss, _ = self.model(**batch, scale=1.0 / n, advantages=adv[torch.tensor(b, device=adv.device)])
            loss.backward()
            total += loss.detach().double()
        norm, lr = self._optimizer_step()
        stats = torch.tensor([float(total), float(rewards.sum()), float(kl.sum()), ent_sum, ent_n,
                              sum(len(t) for t in responses), n, rollout_s], dtype=torch.float64,
                             device=self.info.device)
        return StepOutput(total, norm, lr, stats)

    @staticmethod
    def _stats(sums: Sequence[float]) -> dict[str, float]:
        loss, reward, kl, ent, ent_n, resp, n, secs = sums
        n = max(n, 1.0)
        return {"reward": reward / n, "kl": kl / n, "entropy": ent / max(ent_n, 1.0), "response_length": resp / n,
                "rollout_tokens_per_s": resp / secs if secs else None}

    def _stats_fields(self, stats: list[float]) -> dict[str, Any]:
        return self._stats(stats)

    def evaluate(self) -> float | None:
        """No held-out loss for RL: score the saved policy with ``taskmill eval``."""
        return None
