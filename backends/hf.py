"""transformers backend: batched log-likelihoods with shared-prefix KV-cache reuse, batched generation.

Log-likelihood requests are grouped by their context tokens. Each context is run through the decoder
once (right-padded batches sorted by length); its KV cache is then repeated once per continuation and
all continuations of the batch run in one more forward. The language-model head is applied only to
the positions whose next token is scored, not to every position. A multiple-choice row with four
choices thus costs one context pass plus four short continuation passes instead of four full passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from taskmill.backends.base import ADAPTER_PATTERNS, WEIGHT_PATTERNS, hash_files, truncate_at_stop
from taskmill.backends.requests import (
    GenerateRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    empty_context_ids,
    encode_pair,
    hf_chat_formatter,
    prefix_ids,
)


@dataclass
class _Group:
    """One context and the continuations scored after it."""

    ctx: list[int]
    conts: list[tuple[int, list[int]]]  # (request index, continuation ids)

    @property
    def cost(self) -> int:
        return len(self.ctx) + sum(len(c) for _, c in self.conts)


class HFBackend:
    """Evaluate a transformers causal LM on CPU or GPU.

    Args:
        model: A folder, a ``.gguf`` file, or an already loaded ``PreTrainedModel``.
        tokenizer: Tokenizer (loaded from ``model`` when None).
        gguf_file: GGUF file name inside the ``model`` folder.
        adapter: PEFT adapter folder, merged into the weights.
        device: ``cpu``, ``cuda``, ``cuda:1``...
        dtype: Weight dtype when loading.
        batch_size: Contexts per forward pass.
        max_batch_tokens: Upper bound on tokens in one continuation pass (memory guard).
        add_bos: Put BOS before every context; None follows the tokenizer's own default.
        revision: Model revision for cache keys; a content hash of the weights when None.
        max_length: Longest sequence fed to the model; contexts are cut from the left to fit.
        forward_cost_tokens: Fixed cost of one forward pass in padded-token equivalents (streaming
            the weights, launching kernels); batches are cut where padding would cost more.
    """

    name = "hf"

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        gguf_file: str | None = None,
        adapter: str | Path | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 32,
        max_batch_tokens: int = 8192,
        add_bos: bool | None = None,
        revision: str | None = None,
        max_length: int | None = None,
        forward_cost_tokens: int = 64,
    ) -> None:
        from taskmill.backends.hf_load import attach_adapter, load_model, split_gguf

        if isinstance(model, (str, Path)):
            folder, gguf = split_gguf(model, gguf_file)
            revision = revision or hash_files(Path(folder) / gguf if gguf else folder, WEIGHT_PATTERNS)
            model, loaded_tok = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
            tokenizer = tokenizer or loaded_tok
        self.adapter_hash = ""
        if adapter is not None:
            self.adapter_hash = hash_files(adapter, ADAPTER_PATTERNS)
            model = attach_adapter(model, adapter)
        if tokenizer is None:
            raise ValueError("HFBackend needs a tokenizer with an in-memory model")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.model_revision = revision or _param_hash(model)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.forward_cost_tokens = forward_cost_tokens
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", 2048)
        self.prefix = prefix_ids(tokenizer, add_bos)
        self.pad_id = _pad_id(tokenizer)
        self.empty_context = empty_context_ids(tokenizer)
        self.chat_format: Callable[[str], str] | None = hf_chat_formatter(tokenizer)
        self.calls = 0  # forward passes, for tests and progress
        self.context_rows = 0  # contexts run through the model: each distinct context once

    # --- log-likelihood ---------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Score every request; batched, one context pass per distinct context."""
        groups = self._group(requests)
        out: list[Loglikelihood | None] = [None] * len(requests)
        for batch in self._batches(groups):
            for idx, ll in self._score_batch(batch):
                out[idx] = ll
        return [o for o in out if o is not None]

    def _group(self, requests: Sequence[LoglikelihoodRequest]) -> list[_Group]:
        by_ctx: dict[tuple[int, ...], _Group] = {}
        for i, req in enumerate(requests):
            ctx, cont = encode_pair(self.tokenizer, req.context, req.continuation, prefix_ids=self.prefix)
            if not cont:
                raise ValueError(f"request {i}: continuation {req.continuation!r} has no tokens")
            ctx = ctx or self.empty_context
            if not ctx:
                raise ValueError(f"request {i}: empty context and the tokenizer has no BOS/EOS to stand in")
            room = self.max_length - len(cont)
            ctx = ctx[-room:] if len(ctx) > room else ctx
            by_ctx.setdefault(tuple(ctx), _Group(list(ctx), [])).conts.append((i, cont))
        # Longest first: the most memory-hungry batch runs first, and neighbours pad little.
        return sorted(by_ctx.values(), key=lambda g: (-len(g.ctx), -g.cost))

    def _batches(self, groups: list[_Group]) -> list[list[_Group]]:
        """Split the (longest-first) groups into context batches; see :func:`split_sorted`."""
        cuts = split_sorted(
            [len(g.ctx) for g in groups], self.batch_size, self.forward_cost_tokens,
            extra=[(len(g.conts), max(len(c) for _, c in g.conts)) for g in groups], max_tokens=self.max_batch_tokens,
        )
        return [[groups[i] for i in chunk] for chunk in cuts]

    def _score_batch(self, batch: list[_Group]) -> list[tuple[int, Loglikelihood]]:
        import torch

        with torch.inference_mode():
            first_logp, cache, ctx_mask, ctx_lens = self._context_pass(batch)
            rows = [(b, idx, cont) for b, g in enumerate(batch) for idx, cont in g.conts]
            rest = self._continuation_pass(rows, cache, ctx_mask, ctx_lens)
        results = []
        for r, (b, idx, cont) in enumerate(rows):
            lp0 = first_logp[b]  # (V,) log-probs of the first continuation token
            total = float(lp0[cont[0]])
            greedy = int(lp0.argmax()) == cont[0]
            for t, (lp, top) in enumerate(rest.get(r, ()), start=1):
                total += lp
                greedy = greedy and top == cont[t]
            results.append((idx, Loglikelihood(total, greedy, len(cont))))
        return results

    def _context_pass(self, batch: list[_Group]) -> tuple[Any, Any, Any, Any]:
        """Run the contexts; return first-token log-probs (B, V), the cache, mask (B, Lc), lengths (B,)."""
        import torch

        lens = torch.tensor([len(g.ctx) for g in batch], device=self.device)
        width = int(lens.max())
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(batch), width), dtype=torch.long, device=self.device)
        for b, g in enumerate(batch):
            ids[b, : len(g.ctx)] = torch.tensor(g.ctx, device=self.device)
            mask[b, : len(g.ctx)] = 1
        # Right padding: pad positions only ever attend to real tokens before them (no NaN rows).
        pos = torch.arange(width, device=self.device).expand(len(batch), width)
        out = self._decoder()(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        last = out.last_hidden_state[torch.arange(len(batch), device=self.device), lens - 1]  # (B, H)
        self.calls += 1
        self.context_rows += len(batch)
        cache = out["cache"] if "cache" in out else out["past_key_values"]
        return self._log_probs(last), cache, mask, lens

    def _continuation_pass(self, rows: list, cache: Any, ctx_mask: Any, ctx_lens: Any) -> dict:
        """Feed every continuation but its last token after its context's cache.

        Rows are sorted by length and cut into sub-batches where the padding saved outweighs the
        cost of one more forward pass (:func:`split_sorted`).

        Returns ``row -> [(log-prob of token t, argmax id at t) for t >= 1]``.
        """
        order = sorted((r for r in range(len(rows)) if len(rows[r][2]) > 1), key=lambda r: -len(rows[r][2]))
        out: dict[int, list[tuple[float, int]]] = {}
        widths = [len(rows[r][2]) - 1 for r in order]
        max_rows = max(1, self.max_batch_tokens // max(widths, default=1))
        for chunk in split_sorted(widths, max_rows, self.forward_cost_tokens):
            out.update(self._continuation_sub([order[i] for i in chunk], rows, cache, ctx_mask, ctx_lens))
        return out

    def _continuation_sub(self, sub: list[int], rows: list, cache: Any, ctx_mask: Any, ctx_lens: Any) -> dict:
        import copy

        import torch

        owner = torch.tensor([rows[r][0] for r in sub], device=self.device)
        # A shallow copy whose layers get re-indexed tensors: the shared context cache stays intact
        # for the next sub-batch. (S, heads, Lc, d) per layer after the selection.
        sub_cache = copy.copy(cache)
        sub_cache.layers = [copy.copy(layer) for layer in cache.layers]
        sub_cache.reorder_cache(owner)
        conts = [rows[r][2] for r in sub]
        width = max(len(c) for c in conts) - 1
        ids = torch.full((len(sub), width), self.pad_id, dtype=torch.long, device=self.device)
        cmask = torch.zeros((len(sub), width), dtype=torch.long, device=self.device)
        for k, cont in enumerate(conts):
            ids[k, : len(cont) - 1] = torch.tensor(cont[:-1], device=self.device)
            cmask[k, : len(cont) - 1] = 1
        mask = torch.cat([ctx_mask[owner], cmask], dim=1)  # (S, Lc + Lk)
        pos = ctx_lens[owner, None] + torch.arange(width, device=self.device)  # (S, Lk)
        decoder = self._decoder()
        hidden = decoder(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **{_cache_arg(decoder): sub_cache}
        ).last_hidden_state  # (S, Lk, H)
        self.calls += 1
        where = [(k, t) for k, cont in enumerate(conts) for t in range(len(cont) - 1)]
        sel = hidden[[k for k, _ in where], [t for _, t in where]]  # (N, H): only scored positions
        logp = self._log_probs(sel)
        targets = torch.tensor([conts[k][t + 1] for k, t in where], device=self.device)
        picked = logp.gather(1, targets[:, None])[:, 0].tolist()
        tops = logp.argmax(-1).tolist()
        out: dict[int, list[tuple[float, int]]] = {}
        for j, (k, _) in enumerate(where):
            out.setdefault(sub[k], []).append((picked[j], tops[j]))
        return out

    def _base(self) -> Any:
        """The transformers model under a PEFT wrapper (the model itself when unwrapped)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def _decoder(self) -> Any:
        return self._base().get_decoder()

    def _log_probs(self, hidden: Any) -> Any:
        """(N, H) final hidden states -> (N, V) float32 log-probs, with the model's logit softcap."""
        import torch

        base = self._base()
        logits = base.get_output_embeddings()(hidden).float()
        cap = getattr(base.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return torch.log_softmax(logits, dim=-1)

    # --- generation -------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Greedy generation, left-padded batches sorted by prompt length."""
        encoded = [self.prefix + self.tokenizer.encode(r.context, add_special_tokens=False) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(encoded[i]))
        out = [""] * len(requests)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            texts = self._generate_batch([encoded[i] for i in chunk], [requests[i] for i in chunk])
            for i, text in zip(chunk, texts):
                out[i] = text
        return out

    def _generate_batch(self, prompts: list[list[int]], reqs: list[GenerateRequest]) -> list[str]:
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) :] = torch.tensor(p, device=self.device)
            mask[b, width - len(p) :] = 1
        stops = sorted({s for r in reqs for s in r.stop if s})
        extra = {"stopping_criteria": [_StopOnText(self.tokenizer, stops, width)]} if stops else {}
        with torch.inference_mode():
            gen = self.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max(r.max_tokens for r in reqs),
                pad_token_id=self.pad_id, **extra,
            )
        self.calls += 1
        eos = _eos_ids(self.tokenizer, self.model)
        texts = []
        for b, r in enumerate(reqs):
            new = gen[b, width : width + r.max_tokens].tolist()
            new = new[: next((k for k, t in enumerate(new) if t in eos), len(new))]
            texts.append(truncate_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), r.stop))
        return texts


def split_sorted(
    lengths: list[int], max_rows: int, forward_cost: int, *, extra: list[tuple[int, int]] | None = None,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Cut items sorted by length (longest first) into consecutive padded batches.

    A batch is padded to its first (longest) item. A new batch starts at item ``i`` when the batch
    is full (``max_rows``; or ``extra`` rows x width over ``max_tokens``), or when restarting there
    saves more padding than one forward pass costs: the ``(width - lengths[i])`` pad tokens saved on
    each of the items that would follow in the new batch exceed ``forward_cost``.

    Returns:
        Index lists, in order.
    """
    out: list[list[int]] = []
    cur: list[int] = []
    rows = longest = 0
    for i, n in enumerate(lengths):
        r, w = extra[i] if extra else (1, 0)
        if cur:
            width = lengths[cur[0]]
            following = min(max_rows, len(lengths) - i)
            full = len(cur) >= max_rows or (max_tokens is not None and extra is not None
                                            and (rows + r) * max(longest, w) > max_tokens)
            if full or (width - n) * following > forward_cost:
                out.append(cur)
                cur, rows, longest = [], 0, 0
        cur.append(i)
        rows, longest = rows + r, max(longest, w)
    if cur:
        out.append(cur)
    return out


class _StopOnText:
    """Stop a row once its decoded new text holds a stop sequence.

    transformers' own ``stop_strings`` precomputes tables over the whole vocabulary (seconds for a
    50k-token vocabulary); decoding the few new tokens per step is cheaper at evaluation batch sizes.
    """

    def __init__(self, tokenizer: Any, stops: list[str], prompt_width: int) -> None:
        self.tokenizer, self.stops, self.width = tokenizer, stops, prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = [
            any(s in self.tokenizer.decode(row[self.width :].tolist(), skip_special_tokens=True) for s in self.stops)
            for row in input_ids
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def reference_loglikelihood(model: Any, tokenizer: Any, request: LoglikelihoodRequest, prefix: Sequence[int] = ()) -> float:
    """Unbatched, uncached log-likelihood: one full forward of context + continuation (for tests)."""
    import torch

    ctx, cont = encode_pair(tokenizer, request.context, request.continuation, prefix_ids=prefix)
    ids = torch.tensor([ctx + cont])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()  # (L, V)
    logp = torch.log_softmax(logits, -1)[len(ctx) - 1 : -1]  # rows predicting each continuation token
    return float(logp.gather(1, torch.tensor(cont)[:, None]).sum())


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos) if isinstance(gen_eos, list) else ({gen_eos} if gen_eos is not None else set())
    return ids


def _cache_arg(decoder: Any) -> str:
    """Name of the KV-cache argument: ``cache`` from transformers 5.2x, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _param_hash(model: Any) -> str:
    """Content hash of an in-memory model's parameters (its revision when it has no folder)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
