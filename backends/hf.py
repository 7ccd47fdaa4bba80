"""transformers backend: packed prefix-sharing log-likelihoods, batched greedy generation.

Log-likelihood requests that share a context become one token trie (:mod:`taskmill.backends.packed`):
the context once, each continuation below it, continuations' common leading tokens once. Tries are
sorted by length and packed padding-free into one row per forward (``max_batch_tokens``), with
per-trie ancestor masks in attention; the language-model head runs only on the nodes whose next token
is scored. A multiple-choice row with four choices thus costs its context plus the distinct tokens of
its choices, with no padding, instead of four full padded sequences.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

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

if TYPE_CHECKING:
    from taskmill.backends.packed import Trie


class HFBackend:
    """Evaluate a transformers causal LM on CPU or GPU.

    Args:
        model: A folder, a ``.gguf`` file, or an already loaded ``PreTrainedModel``.
        tokenizer: Tokenizer (loaded from ``model`` when None).
        gguf_file: GGUF file name inside the ``model`` folder.
        adapter: PEFT adapter folder, merged into the weights.
        device: ``cpu``, ``cuda``, ``cuda:1``...
        dtype: Weight dtype when loading.
        batch_size: Contexts (tries) per scoring forward; prompts per generation batch.
        max_batch_tokens: Tokens in one packed scoring forward.
        add_bos: Put BOS before every context; None follows the tokenizer's own default.
        revision: Model revision for cache keys; a content hash of the weights when None.
        max_length: Longest sequence fed to the model; contexts are cut from the left to fit.
        head_chunk: Rows per language-model-head call when scoring ((rows, vocab) float32 logits).
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
        head_chunk: int = 256,
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
        self.head_chunk = head_chunk
        self.max_attention_cells = 1 << 24
        self.host_check_every = 16
        self._stop_tables: dict[tuple[str, ...], _StopTable] = {}
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", 2048)
        self.prefix = prefix_ids(tokenizer, add_bos)
        self.pad_id = _pad_id(tokenizer)
        self.empty_context = empty_context_ids(tokenizer)
        self.chat_format: Callable[[str], str] | None = hf_chat_formatter(tokenizer)
        self.calls = 0  # forward passes, for tests and progress
        self.context_rows = 0  # contexts run through the model: each distinct context once

    # --- log-likelihood ---------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Score every request: packed token tries, one forward per token budget."""
        import torch

        from taskmill.backends.packed import tree_attention_on

        tries = self._tries(requests)
        out: list[Loglikelihood | None] = [None] * len(requests)
        with torch.inference_mode(), tree_attention_on(self._base()):
            for batch in self._pack(tries):
                for idx, ll in self._score_packed(batch):
                    out[idx] = ll
        return [o for o in out if o is not None]

    def _tries(self, requests: Sequence[LoglikelihoodRequest]) -> list[Trie]:
        """One token trie per distinct context, longest first."""
        from taskmill.backends.packed import Trie

        by_ctx: dict[tuple[int, ...], Trie] = {}
        for i, req in enumerate(requests):
            ctx, cont = encode_pair(self.tokenizer, req.context, req.continuation, prefix_ids=self.prefix)
            if not cont:
                raise ValueError(f"request {i}: continuation {req.continuation!r} has no tokens")
            ctx = ctx or self.empty_context
            if not ctx:
                raise ValueError(f"request {i}: empty context and the tokenizer has no BOS/EOS to stand in")
            room = self.max_length - len(cont)
            ctx = ctx[-room:] if len(ctx) > room else ctx
            key = tuple(ctx)
            if key not in by_ctx:
                by_ctx[key] = Trie.from_context(ctx)
            by_ctx[key].add(i, cont)
        # Longest first: neighbours in a batch have similar lengths, so the per-trie attention
        # blocks (padded to the batch's longest trie) waste little.
        return sorted((t.finish() for t in by_ctx.values()), key=lambda t: -len(t))

    def _pack(self, tries: list[Trie]) -> list[list[Trie]]:
        """Consecutive tries up to ``max_batch_tokens`` tokens and ``batch_size`` tries per forward.

        The per-trie attention blocks are bounded too (``max_attention_cells``: at most tries x Lmax x Lmax,
        about 600 MB of fp32 scores for 9 heads), which matters for long few-shot contexts followed
        by short ones. A trie longer than the budget runs alone (it cannot be split).
        """
        batches: list[list[Trie]] = []
        cur: list[Trie] = []
        tokens = 0
        for t in tries:
            # an upper bound: attention blocks pad to their group's longest trie, at most the first (longest)
            cells = (len(cur) + 1) * len(cur[0]) ** 2 if cur else 0
            if cur and (tokens + len(t) > self.max_batch_tokens or len(cur) >= self.batch_size
                        or cells > self.max_attention_cells):
                batches.append(cur)
                cur, tokens = [], 0
            cur.append(t)
            tokens += len(t)
        if cur:
            batches.append(cur)
        return batches

    def _score_packed(self, batch: list[Trie]) -> list[tuple[int, Loglikelihood]]:
        """One forward over the packed tries; the LM head runs on scored nodes only."""
        import torch

        from taskmill.backends.packed import layout

        ids, pos, lay = layout(batch, self.device)
        hidden = self._decoder()(input_ids=ids, position_ids=pos, use_cache=False, taskmill_tree=lay)
        hidden = hidden.last_hidden_state[0]  # (T, H)
        self.calls += 1
        self.context_rows += len(batch)
        # global node index of each (request, continuation token) pair
        reqs: list[tuple[int, list[int], list[int]]] = []
        offset = 0
        for t in batch:
            for idx, pairs in t.scored:
                reqs.append((idx, [offset + n for n, _ in pairs], [tok for _, tok in pairs]))
            offset += len(t)
        nodes = sorted({n for _, ns, _ in reqs for n in ns})
        row_of = {n: r for r, n in enumerate(nodes)}
        flat_rows = torch.tensor([row_of[n] for _, ns, _ in reqs for n in ns], device=self.device)
        flat_tgts = torch.tensor([tok for _, _, toks in reqs for tok in toks], device=self.device)
        node_t = torch.tensor(nodes, device=self.device)
        picked = torch.empty(len(flat_rows), device=self.device)
        tops = torch.empty(len(nodes), dtype=torch.long, device=self.device)
        target_logit = torch.empty(len(flat_rows), device=self.device)
        # LM head in row chunks: (chunk, V) float32 logits stay small (V is ~50k-260k)
        for s in range(0, len(nodes), self.head_chunk):
            logp = torch.log_softmax(self._logits(hidden[node_t[s : s + self.head_chunk]]), -1)  # (C, V)
            tops[s : s + len(logp)] = logp.argmax(-1)
            sel = (flat_rows >= s) & (flat_rows < s + len(logp))
            target_logit[sel] = logp[flat_rows[sel] - s, flat_tgts[sel]]
        picked = target_logit.tolist()
        greedy = (tops[flat_rows] == flat_tgts).tolist()
        results = []
        k = 0
        for idx, ns, _ in reqs:
            n = len(ns)
            results.append((idx, Loglikelihood(float(sum(picked[k : k + n])), all(greedy[k : k + n]), n)))
            k += n
        return results

    def _base(self) -> Any:
        """The transformers model under a PEFT wrapper (the model itself when unwrapped)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def _decoder(self) -> Any:
        return self._base().get_decoder()

    def _logits(self, hidden: Any) -> Any:
        """(N, H) final hidden states -> (N, V) float32 logits, with the model's logit softcap."""
        import torch

        base = self._base()
        logits = base.get_output_embeddings()(hidden).float()
        cap = getattr(base.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

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
        """Greedy decoding of left-padded ``prompts`` with a static KV cache.

        Each step checks on the device whether a row emitted EOS, reached its ``max_tokens`` or
        ended with a stop sequence (:class:`_StopTable`); finished rows leave the batch (the cache
        rows are dropped), so the remaining rows run on. A row flagged by a stop sequence is
        confirmed on its decoded text before it leaves, and every ``host_check_every`` steps live
        rows' texts are checked for stops the token tables cannot see (a stop split oddly over tokens).
        """
        import torch
        from transformers import StaticCache

        dev, base = self.device, self._base()
        n_rows = len(prompts)
        width = max(len(p) for p in prompts)
        max_new = max(r.max_tokens for r in reqs)
        total = width + max_new
        lens = torch.tensor([len(p) for p in prompts], device=dev)
        ids = torch.full((n_rows, width), self.pad_id, dtype=torch.long, device=dev)
        attn = torch.zeros((n_rows, total), dtype=torch.long, device=dev)  # (B, prompt + new)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) :] = torch.tensor(p, device=dev)
            attn[b, width - len(p) : width] = 1
        # left padding: each row's first real token is position 0
        pos = (torch.arange(width, device=dev)[None] - (width - lens)[:, None]).clamp(min=0)  # (B, width)
        limit = torch.tensor([r.max_tokens for r in reqs], device=dev)
        table = self._stop_table(tuple(sorted({s for r in reqs for s in r.stop if s})))
        eos = torch.zeros(self._vocab_rows(), dtype=torch.bool, device=dev)
        eos[list(_eos_ids(self.tokenizer, self.model))] = True
        out = torch.full((n_rows, max_new), self.pad_id, dtype=torch.long, device=dev)  # new tokens
        n_new = [0] * n_rows
        live = torch.arange(n_rows, device=dev)  # original row of each batch row
        live_host = list(range(n_rows))
        cache = StaticCache(config=base.config, max_cache_len=total)
        cache_kw = {_cache_arg(base): cache}
        step_ids, step_pos = ids, pos
        for step in range(max_new):
            if step:
                attn[live, width + step - 1] = 1  # the token fed now sits at column width + step - 1
            # the mask spans the whole static cache; columns not yet written are 0
            logits = base(input_ids=step_ids, attention_mask=attn[live], position_ids=step_pos, use_cache=True,
                          logits_to_keep=1, **cache_kw).logits
            self.calls += 1
            nxt = logits[:, -1].argmax(-1)  # (B_live,)
            out[live, step] = nxt
            ended = eos[nxt] | (step + 1 >= limit[live])
            stopped = table.hit(out[live, : step + 1], nxt) if table is not None else torch.zeros_like(ended)
            for b in live_host:
                n_new[b] = step + 1
            check_all = table is not None and (step + 1) % self.host_check_every == 0
            if not bool((ended | stopped).any()) and not check_all and step + 1 < max_new:
                step_ids, step_pos = nxt[:, None], step_pos[:, -1:] + 1
                continue
            ended_h, stopped_h = ended.tolist(), stopped.tolist()
            keep = []
            for k, b in enumerate(live_host):
                if ended_h[k]:
                    continue
                if (stopped_h[k] or check_all) and reqs[b].stop and self._has_stop(out[b, : step + 1], reqs[b].stop):
                    continue
                keep.append(k)
            if not keep or step + 1 >= max_new:
                break
            if len(keep) < len(live_host):
                sel = torch.tensor(keep, device=dev)
                cache.reorder_cache(sel)  # drop finished rows from every layer's K/V
                live, live_host = live[sel], [live_host[k] for k in keep]
                nxt, step_pos = nxt[sel], step_pos[sel]
            step_ids, step_pos = nxt[:, None], step_pos[:, -1:] + 1
        eos_ids = _eos_ids(self.tokenizer, self.model)
        texts = []
        for b, r in enumerate(reqs):
            new = out[b, : min(n_new[b], r.max_tokens)].tolist()
            new = new[: next((k for k, t in enumerate(new) if t in eos_ids), len(new))]
            texts.append(truncate_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), r.stop))
        return texts

    def _has_stop(self, new_ids: Any, stops: Sequence[str]) -> bool:
        text = self.tokenizer.decode(new_ids.tolist(), skip_special_tokens=True)
        return any(s in text for s in stops if s)

    def _vocab_rows(self) -> int:
        return int(self._base().get_output_embeddings().weight.shape[0])

    def _stop_table(self, stops: tuple[str, ...]) -> "_StopTable | None":
        if not stops:
            return None
        if stops not in self._stop_tables:
            self._stop_tables[stops] = _StopTable(self.tokenizer, stops, self._vocab_rows(), self.device)
        return self._stop_tables[stops]


class _StopTable:
    """Stop sequences as device tensors, checked each decoding step without a host round trip.

    A row is flagged when its newest token's own text contains a stop (``"\n\n"`` inside a
    ``".\n\n"`` token), or when its last tokens equal a stop's own tokenisation. Flags are hints:
    the backend confirms them on the decoded text, so a flag never ends a row early.
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], vocab: int, device: Any) -> None:
        import torch

        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab, len(tokenizer)))))
        contains = torch.zeros(vocab, dtype=torch.bool)
        for i, piece in enumerate(pieces):
            if piece is not None and i not in special:
                text = tokenizer.convert_tokens_to_string([piece])
                contains[i] = any(s in text for s in stops)
        self.contains = contains.to(device)  # (V,)
        seqs = [tokenizer.encode(s, add_special_tokens=False) for s in stops]
        self.seqs = [torch.tensor(q, device=device) for q in seqs if len(q) > 1]

    def hit(self, new: Any, last: Any) -> Any:
        """(B,) bool: rows whose new tokens ``new`` (B, t) end with a stop; ``last`` (B,) the newest."""
        flag = self.contains[last]
        for seq in self.seqs:
            if new.shape[1] >= len(seq):
                flag = flag | (new[:, -len(seq) :] == seq).all(-1)
        return flag


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
