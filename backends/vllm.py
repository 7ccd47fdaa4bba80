"""vLLM backend: ``vllm.LLM`` with ``SamplingParams``; LoRA adapters through ``LoRARequest``.

Log-likelihoods use prompt log-probabilities: each request is sent as the token ids of context +
continuation with ``SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0)``; vLLM returns,
for every prompt position after the first, a ``{token_id: Logprob(logprob, rank, ...)}`` dict that
always holds the actual prompt token (plus the top-1). The continuation's log-probability is the sum
over its positions; it is greedy when every one of its tokens has ``rank == 1``.

One engine serves many adapters (``enable_lora``, ``max_loras``, ``max_lora_rank``): LOCO evaluates
every fold's adapter with :meth:`VLLMBackend.with_adapter` on the same engine. Tensor parallelism is
the engine's ``tensor_parallel_size``; data parallelism runs ``data_parallel_size`` engine processes,
each on its own GPUs (``CUDA_VISIBLE_DEVICES``) with vLLM's ``VLLM_DP_*`` variables, each scoring a
round-robin shard of the requests.

Adapters are checked before any engine work against what vLLM's loader refuses (its
``PEFTHelper.validate_legal``): ``modules_to_save``, DoRA, bias, a rank (``r`` or any
``rank_pattern`` value) above the engine's ``max_lora_rank``, which itself must be one of vLLM's
``MaxLoRARanks``. A refused adapter is one clear line here instead of an engine error after load.

vLLM is imported lazily (``pip install taskmill[vllm]``); it needs CUDA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from taskmill.errors import ConfigError, DataError, TaskmillError
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


# vLLM's LoRAConfig.max_lora_rank accepts exactly these (``MaxLoRARanks`` in vllm/config/lora.py);
# an installed vLLM's own list wins when the engine is built (:func:`served_ranks`)
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_MAX_LORA_RANK = 64
# PEFT init schemes that change the base weights (vLLM's loader refuses them)
_REWEIGHTING_INITS = ("pissa", "olora", "corda", "loftq", "eva")


def served_ranks() -> tuple[int, ...]:
    """The ``max_lora_rank`` values of the installed vLLM (:data:`MAX_LORA_RANKS` when unknown)."""
    try:
        import typing

        from vllm.config.lora import MaxLoRARanks
    except Exception:  # no vLLM, or an older one without the Literal
        return MAX_LORA_RANKS
    return tuple(sorted(typing.get_args(MaxLoRARanks))) or MAX_LORA_RANKS


def serving_rank(rank: int, ranks: Sequence[int] = MAX_LORA_RANKS) -> int | None:
    """The smallest ``max_lora_rank`` vLLM accepts that serves an adapter of ``rank`` (None: none does)."""
    return next((m for m in ranks if m >= rank), None)


def rank_advice(rank: int, ranks: Sequence[int] = MAX_LORA_RANKS) -> str:
    """What to set so rank ``rank`` is served: a ``max_lora_rank`` value, or lowering the rank."""
    fit = serving_rank(rank, ranks)
    if fit is None:
        return f"no vLLM max_lora_rank serves rank {rank} (largest {max(ranks)}): lower lora.r"
    return f"use max_lora_rank: {fit}"


def adapter_problems(adapter: str | Path, max_lora_rank: int) -> list[str]:
    """What vLLM's LoRA loader would refuse in a PEFT adapter folder (empty when it loads).

    Args:
        adapter: Folder with ``adapter_config.json`` and the adapter weights.
        max_lora_rank: The engine's ``max_lora_rank``.
    """
    import json

    folder = Path(adapter)
    try:
        cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"no readable adapter_config.json ({type(err).__name__})"]
    if not isinstance(cfg, dict):
        return ["adapter_config.json is not a JSON object"]
    problems = [f"adapter_config.json lacks {key}" for key in ("r", "lora_alpha", "target_modules") if key not in cfg]
    if not any((folder / f"adapter_model.{ext}").is_file() for ext in ("safetensors", "bin", "pt")):
        problems.append("no adapter_model.safetensors, .bin or .pt")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save {cfg['modules_to_save']} (vLLM serves LoRA matrices only)")
    if cfg.get("use_dora"):
        problems.append("DoRA (vLLM does not serve it)")
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        problems.append(f"bias {cfg.get('bias')!r}, lora_bias {cfg.get('lora_bias')!r} (vLLM needs none)")
    init = cfg.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_REWEIGHTING_INITS):
        problems.append(f"init_lora_weights {init!r} changes the base weights (vLLM cannot apply it)")
    if cfg.get("layer_replication"):
        problems.append("layer_replication (vLLM does not serve it)")
    try:
        ranks = [int(cfg.get("r", 1)), *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]]
    except (TypeError, ValueError):
        return problems + [f"r / rank_pattern are not integers ({cfg.get('r')!r})"]
    if min(ranks) <= 0:
        problems.append(f"rank {min(ranks)} (must be >= 1)")
    if max(ranks) > max_lora_rank:
        problems.append(f"rank {max(ranks)} > the engine's max_lora_rank {max_lora_rank} ({rank_advice(max(ranks))})")
    return problems


def check_adapter(adapter: str | Path, max_lora_rank: int) -> None:
    """Raise one :class:`DataError` line listing what vLLM would refuse in ``adapter``."""
    problems = adapter_problems(adapter, max_lora_rank)
    if problems:
        raise DataError("vLLM cannot serve this adapter: " + "; ".join(problems), file=str(adapter))


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise TaskmillError("backend 'vllm' needs vllm, which is not installed: pip install taskmill[vllm]") from None
    return vllm


def lora_request(adapter: str | Path, adapter_hash: str) -> Any:
    """A ``vllm.lora.request.LoRARequest`` whose int id is stable for the adapter's content."""
    from vllm.lora.request import LoRARequest

    return LoRARequest(lora_name=f"adapter-{adapter_hash}", lora_int_id=lora_int_id(adapter_hash), lora_path=str(adapter))


def lora_int_id(adapter_hash: str) -> int:
    """Positive id (vLLM requires >= 1) derived from the adapter's content hash."""
    return int(adapter_hash[:7], 16) + 1


def token_prompts(pairs: Sequence[tuple[list[int], list[int]]]) -> list[dict[str, list[int]]]:
    """``TokensPrompt`` dicts (``{"prompt_token_ids": ctx + cont}``) for scoring pairs."""
    return [{"prompt_token_ids": list(ctx) + list(cont)} for ctx, cont in pairs]


def parse_prompt_logprobs(output: Any, n_ctx: int, cont: Sequence[int]) -> Loglikelihood:
    """Sum the continuation's prompt log-probs from one ``RequestOutput``.

    Args:
        output: Has ``prompt_logprobs``: a list, one entry per prompt token (the first is None),
            each ``{token_id: Logprob}`` with ``.logprob`` and ``.rank`` (1 = argmax).
        n_ctx: Number of context tokens (the continuation starts at this position).
        cont: Continuation token ids.
    """
    entries = output.prompt_logprobs[n_ctx : n_ctx + len(cont)]
    if len(entries) != len(cont) or any(e is None for e in entries):
        raise TaskmillError(f"vLLM returned {len(entries)} prompt log-probs for {len(cont)} continuation tokens")
    total, greedy = 0.0, True
    for token, entry in zip(cont, entries):
        lp = entry[token]
        total += float(lp.logprob)
        rank = getattr(lp, "rank", None)
        best = max(float(v.logprob) for v in entry.values())
        greedy = greedy and (rank == 1 if rank is not None else float(lp.logprob) >= best)
    return Loglikelihood(total, greedy, len(cont))


def shard(n: int, parts: int) -> list[list[int]]:
    """Round-robin index shards for data parallelism (similar lengths land on different ranks)."""
    return [list(range(k, n, parts)) for k in range(parts)]


def unshard(shards: Sequence[Sequence[int]], results: Sequence[Sequence[Any]], n: int) -> list[Any]:
    """Put per-shard results back in request order."""
    out: list[Any] = [None] * n
    for idx, res in zip(shards, results):
        for i, r in zip(idx, res):
            out[i] = r
    return out


class VLLMBackend:
    """Evaluate with vLLM.

    Args:
        model: Hub id or folder.
        adapter: PEFT LoRA adapter folder, or None.
        tensor_parallel_size: GPUs per engine.
        data_parallel_size: Engine processes (each with ``tensor_parallel_size`` GPUs).
        max_loras: Adapters resident at once.
        max_lora_rank: Largest LoRA rank served (one of :data:`MAX_LORA_RANKS`).
        dtype: ``auto``, ``float16``, ``bfloat16``, ``float32``.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take.
        max_model_len: Context length cap (None: the model's).
        seed: Engine seed.
        revision: Model revision for cache keys (default: hash of a local folder, else the id).
        engine: An already built ``vllm.LLM`` (or a stand-in with the same methods) to reuse.
        add_bos: Put BOS before every context; None follows the tokenizer's default.
        enable_lora: Build the engine able to serve adapters (LOCO evaluates every fold's adapter
            on the base engine); always on when ``adapter`` is given.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        adapter: str | Path | None = None,
        *,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        max_loras: int = 4,
        max_lora_rank: int = DEFAULT_MAX_LORA_RANK,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        revision: str | None = None,
        engine: Any = None,
        add_bos: bool | None = None,
        enable_lora: bool = True,
    ) -> None:
        self.model = str(model)
        ranks = served_ranks() if engine is None else MAX_LORA_RANKS
        if enable_lora or adapter is not None:
            if max_lora_rank not in ranks:
                raise ConfigError([f"max_lora_rank: vLLM accepts {', '.join(map(str, ranks))}; got {max_lora_rank}"])
        self.max_lora_rank = max_lora_rank
        if adapter:
            check_adapter(adapter, max_lora_rank)
        self.engine_args = {
            "model": self.model, "tensor_parallel_size": tensor_parallel_size, "dtype": dtype, "seed": seed,
            "gpu_memory_utilization": gpu_memory_utilization, "enable_lora": enable_lora or adapter is not None,
        }
        if self.engine_args["enable_lora"]:
            self.engine_args.update(max_loras=max_loras, max_lora_rank=max_lora_rank)
        if max_model_len:
            self.engine_args["max_model_len"] = max_model_len
        self.data_parallel_size = data_parallel_size
        self.model_revision = revision or (hash_files(model, WEIGHT_PATTERNS) if Path(model).exists() else self.model)
        self.adapter = str(adapter) if adapter else None
        self.adapter_hash = hash_files(adapter, ADAPTER_PATTERNS) if adapter else ""
        self.engine = engine if engine is not None or data_parallel_size > 1 else self._build_engine()
        self.tokenizer = self.engine.get_tokenizer() if self.engine is not None else _load_tokenizer(self.model)
        self.prefix = prefix_ids(self.tokenizer, add_bos)
        self.chat_format: Callable[[str], str] | None = hf_chat_formatter(self.tokenizer)

    def _build_engine(self) -> Any:
        return _import_vllm().LLM(**self.engine_args)

    def with_adapter(self, adapter: str | Path | None) -> VLLMBackend:
        """The same engine serving another adapter (or the base model with None)."""
        if adapter:
            check_adapter(adapter, self.max_lora_rank)
        clone = object.__new__(VLLMBackend)
        clone.__dict__.update(self.__dict__)
        clone.adapter = str(adapter) if adapter else None
        clone.adapter_hash = hash_files(adapter, ADAPTER_PATTERNS) if adapter else ""
        return clone

    def _lora(self) -> Any:
        return lora_request(self.adapter, self.adapter_hash) if self.adapter else None

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Prompt log-probs of context + continuation for every request."""
        pairs = [encode_pair(self.tokenizer, r.context, r.continuation, prefix_ids=self.prefix) for r in requests]
        pairs = [(ctx or empty_context_ids(self.tokenizer), cont) for ctx, cont in pairs]
        params = _import_vllm().SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False)
        outputs = self._run(token_prompts(pairs), [params] * len(pairs))
        return [parse_prompt_logprobs(o, len(ctx), cont) for o, (ctx, cont) in zip(outputs, pairs)]

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Greedy generation with per-request stop sequences and token budgets."""
        vllm = _import_vllm()
        ids = [self.prefix + self.tokenizer.encode(r.context, add_special_tokens=False) for r in requests]
        prompts = [{"prompt_token_ids": x or empty_context_ids(self.tokenizer)} for x in ids]
        params = [vllm.SamplingParams(temperature=0.0, max_tokens=r.max_tokens, stop=list(r.stop) or None) for r in requests]
        outputs = self._run(prompts, params)
        return [truncate_at_stop(o.outputs[0].text, r.stop) for o, r in zip(outputs, requests)]

    def _run(self, prompts: list, params: list) -> list[Any]:
        if self.data_parallel_size <= 1:
            return list(self.engine.generate(prompts, sampling_params=params, use_tqdm=False, lora_request=self._lora()))
        return run_data_parallel(self.engine_args, self.data_parallel_size, prompts, params, self.adapter, self.adapter_hash)


def run_data_parallel(engine_args: dict, dp: int, prompts: list, params: list, adapter: str | None, adapter_hash: str) -> list[Any]:
    """Score ``prompts`` on ``dp`` engine processes, one GPU group each, and merge in order."""
    import multiprocessing as mp
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    shards = shard(len(prompts), dp)
    procs = []
    for rank, idx in enumerate(shards):
        job = (rank, dp, port, engine_args, [prompts[i] for i in idx], [params[i] for i in idx], adapter, adapter_hash)
        procs.append(ctx.Process(target=_dp_worker, args=(job, queue)))
        procs[-1].start()
    results: dict[int, list] = {}
    for _ in procs:
        rank, res = queue.get()
        if isinstance(res, str):
            raise TaskmillError(f"vLLM data-parallel rank {rank} failed: {res}")
        results[rank] = res
    for p in procs:
        p.join()
    return unshard(shards, [results[r] for r in range(dp)], len(prompts))


def _dp_worker(job: tuple, queue: Any) -> None:
    """One data-parallel rank: its own GPUs and engine (vLLM's offline data-parallel recipe)."""
    import os

    rank, dp, port, engine_args, prompts, params, adapter, adapter_hash = job
    tp = engine_args["tensor_parallel_size"]
    os.environ.update({
        "VLLM_DP_RANK": str(rank), "VLLM_DP_RANK_LOCAL": str(rank), "VLLM_DP_SIZE": str(dp),
        "VLLM_DP_MASTER_IP": "127.0.0.1", "VLLM_DP_MASTER_PORT": str(port),
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(rank * tp, (rank + 1) * tp)),
    })
    try:
        llm = _import_vllm().LLM(**engine_args)
        lora = lora_request(adapter, adapter_hash) if adapter else None
        outs = llm.generate(prompts, sampling_params=params, use_tqdm=False, lora_request=lora)
        queue.put((rank, [_Portable.of(o) for o in outs]))
    except Exception as err:  # reported to the parent as one line
        queue.put((rank, f"{type(err).__name__}: {err}"))


class _Portable:
    """The parts of a ``RequestOutput`` the parser reads, in a picklable form."""

    def __init__(self, prompt_logprobs: Any, texts: list[str]) -> None:
        self.prompt_logprobs = prompt_logprobs
        self.outputs = [type("Completion", (), {"text": t})() for t in texts]

    @classmethod
    def of(cls, out: Any) -> _Portable:
        return cls(out.prompt_logprobs, [c.text for c in out.outputs])

    def __reduce__(self) -> tuple:
        return (_Portable, (self.prompt_logprobs, [c.text for c in self.outputs]))


def _load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)
