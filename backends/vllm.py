"""vLLM backend: ``vllm.LLM`` with ``SamplingParams``; LoRA adapters through ``LoRARequest``.

Log-likelihoods use prompt log-probabilities: each request is sent as the token ids of context +
continuation with ``SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0)``; vLLM returns,
for every prompt position after the first, a ``{token_id: Logprob(logprob, rank, ...)}`` dict that
always holds the actual prompt token (plus the top-1). The continuation's log-probability is the sum
over its positions; it is greedy when every one of its tokens' log-probability equals the best one at
its position (lm-evaluation-harness's rule; vLLM's ``rank`` counts the tokens with a logit ``>=`` the
token's, so an argmax token tied with another has rank 2). A request longer than vLLM allows (the
prompt must be shorter than ``max_model_len``: one token is always generated) keeps its last
``max_model_len - 1`` tokens, cut from the context, as lm-evaluation-harness's vLLM model does;
generation prompts keep their last ``max_model_len - max_tokens`` tokens.

One engine serves many adapters (``enable_lora``, ``max_loras``, ``max_lora_rank``): LOCO evaluates
every fold's adapter with :meth:`VLLMBackend.with_adapter` on the same engine. Tensor parallelism is
the engine's ``tensor_parallel_size``; data parallelism runs ``data_parallel_size`` independent engine
processes, each on its own GPUs (``CUDA_VISIBLE_DEVICES``), each scoring a round-robin shard of the
requests. They are not vLLM data-parallel ranks: vLLM refuses ``VLLM_DP_SIZE > 1`` for dense models
and offsets every rank's GPU index by ``VLLM_DP_RANK_LOCAL * world_size``, so those variables are
removed from each worker's environment (what lm-evaluation-harness does too).

:meth:`VLLMBackend.close` shuts the engine down (its engine-core process and GPU memory); the next
request builds it again. LOCO closes it before training a fold in the same process.

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


def fit_pair(ctx: Sequence[int], cont: Sequence[int], max_model_len: int | None) -> tuple[list[int], list[int]]:
    """Cut ``ctx`` from the left so ``ctx + cont`` is shorter than ``max_model_len`` (vLLM's limit).

    vLLM refuses a prompt of ``max_model_len`` tokens or more (it must generate one token), so a
    scoring prompt keeps its last ``max_model_len - 1`` tokens, as lm-evaluation-harness's vLLM
    model does. The continuation is never cut.

    Raises:
        DataError: The continuation alone leaves no room for one context token.
    """
    ctx, cont = list(ctx), list(cont)
    if max_model_len is None:
        return ctx, cont
    room = max_model_len - 1 - len(cont)
    if room < 1:
        raise DataError(f"a continuation of {len(cont)} tokens leaves no room for context in vLLM's "
                        f"max_model_len {max_model_len} (it scores at most {max_model_len - 1} prompt tokens)")
    return ctx[-room:] if len(ctx) > room else ctx, cont


def fit_prompt(ids: Sequence[int], max_tokens: int, max_model_len: int | None) -> list[int]:
    """A generation prompt's last ``max_model_len - max_tokens`` tokens (at least one) when too long."""
    ids = list(ids)
    if max_model_len is None or len(ids) + max_tokens <= max_model_len:
        return ids
    return ids[-max(1, max_model_len - max_tokens):]


def shutdown_engine(engine: Any) -> None:
    """Stop a ``vllm.LLM``'s engine core (its process and GPU memory) and release cached CUDA blocks.

    ``LLM`` has no ``shutdown`` of its own; its ``llm_engine.engine_core`` client does (the
    multiprocess client stops the engine-core process). Dropping the last reference also shuts it
    down, through a finalizer, but only when the garbage collector gets to it.
    """
    core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def engine_max_model_len(engine: Any) -> int | None:
    """``max_model_len`` of a built engine (``LLM.model_config``), None when it does not say."""
    value = getattr(getattr(engine, "model_config", None), "max_model_len", None)
    return int(value) if isinstance(value, int) and value > 0 else None


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
        if token not in entry:
            raise TaskmillError(f"vLLM's prompt log-probs lack the prompt token {token} (ask for prompt_logprobs >= 0)")
        lp = float(entry[token].logprob)
        total += lp
        # not ``rank == 1``: vLLM's rank counts logits >= the token's, so a tie at the top is rank 2
        greedy = greedy and lp >= max(float(v.logprob) for v in entry.values())
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
        # one box shared with every with_adapter() copy: a close() or rebuild is seen by all of them
        self._engine_box: list[Any] = [engine if engine is not None or data_parallel_size > 1 else self._build_engine()]
        self.tokenizer = self.engine.get_tokenizer() if self.engine is not None else _load_tokenizer(self.model)
        # vLLM's own limit when the engine says it (it derives one from the model config otherwise)
        self.max_model_len = max_model_len or engine_max_model_len(self.engine) or _config_max_len(self.model)
        self.prefix = prefix_ids(self.tokenizer, add_bos)
        self.chat_format: Callable[[str], str] | None = hf_chat_formatter(self.tokenizer)

    @property
    def engine(self) -> Any:
        """The ``vllm.LLM`` (None with data parallelism, or after :meth:`close`)."""
        return self._engine_box[0]

    @engine.setter
    def engine(self, value: Any) -> None:
        self._engine_box[0] = value

    def _build_engine(self) -> Any:
        return _import_vllm().LLM(**self.engine_args)

    def _llm(self) -> Any:
        """The engine, built again after :meth:`close`."""
        if self.engine is None and self.data_parallel_size <= 1:
            self.engine = self._build_engine()
        return self.engine

    def close(self) -> None:
        """Shut the engine down and free its GPU memory; the next request builds it again.

        Backends made by :meth:`with_adapter` share the engine: closing one closes it for all, and
        the first of them to run again rebuilds it for all.
        """
        engine, self.engine = self.engine, None
        if engine is not None:
            shutdown_engine(engine)

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
        pairs = []
        for i, r in enumerate(requests):
            ctx, cont = encode_pair(self.tokenizer, r.context, r.continuation, prefix_ids=self.prefix)
            ctx = ctx or empty_context_ids(self.tokenizer)
            if not cont or not ctx:  # vLLM has no log-prob for a prompt's first token
                what = f"continuation {r.continuation!r} has no tokens" if not cont else \
                    "empty context and the tokenizer has no BOS/EOS to stand in"
                raise DataError(f"request {i}: {what}")
            pairs.append(fit_pair(ctx, cont, self.max_model_len))
        # lm-evaluation-harness's scoring request: one greedy token, the prompt's log-probs (top-1
        # plus the prompt token itself), no detokenisation
        params = _import_vllm().SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False)
        outputs = self._run(token_prompts(pairs), [params] * len(pairs))
        return [parse_prompt_logprobs(o, len(ctx), cont) for o, (ctx, cont) in zip(outputs, pairs)]

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Greedy generation with per-request stop sequences and token budgets."""
        vllm = _import_vllm()
        ids = [self.prefix + self.tokenizer.encode(r.context, add_special_tokens=False) for r in requests]
        ids = [fit_prompt(x or empty_context_ids(self.tokenizer), r.max_tokens, self.max_model_len)
               for x, r in zip(ids, requests)]
        prompts = [{"prompt_token_ids": x} for x in ids]
        params = [vllm.SamplingParams(temperature=0.0, max_tokens=r.max_tokens, stop=list(r.stop) or None) for r in requests]
        outputs = self._run(prompts, params)
        return [truncate_at_stop(o.outputs[0].text, r.stop) for o, r in zip(outputs, requests)]

    def _run(self, prompts: list, params: list) -> list[Any]:
        if self.data_parallel_size <= 1:
            return list(self._llm().generate(prompts, sampling_params=params, use_tqdm=False, lora_request=self._lora()))
        return run_data_parallel(self.engine_args, self.data_parallel_size, prompts, params, self.adapter, self.adapter_hash)


def run_data_parallel(engine_args: dict, dp: int, prompts: list, params: list, adapter: str | None, adapter_hash: str) -> list[Any]:
    """Score ``prompts`` on ``dp`` engine processes, one GPU group each, and merge in order."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    shards = shard(len(prompts), dp)
    procs = []
    results: dict[int, list] = {rank: [] for rank, idx in enumerate(shards) if not idx}  # no engine for nothing
    for rank, idx in enumerate(shards):
        if not idx:
            continue
        job = (rank, engine_args, [prompts[i] for i in idx], [params[i] for i in idx], adapter, adapter_hash)
        procs.append(ctx.Process(target=_dp_worker, args=(job, queue)))
        procs[-1].start()
    for _ in procs:
        rank, res = queue.get()
        if isinstance(res, str):
            raise TaskmillError(f"vLLM data-parallel rank {rank} failed: {res}")
        results[rank] = res
    for p in procs:
        p.join()
    return unshard(shards, [results[r] for r in range(dp)], len(prompts))


DP_VARIABLES = ("VLLM_DP_RANK", "VLLM_DP_RANK_LOCAL", "VLLM_DP_SIZE", "VLLM_DP_MASTER_IP", "VLLM_DP_MASTER_PORT")


def dp_worker_env(environ: Any, rank: int, tp: int) -> None:
    """Make ``environ`` one independent engine's: GPUs ``rank*tp .. rank*tp+tp-1``, no ``VLLM_DP_*``.

    vLLM reads ``VLLM_DP_*`` as offline data parallelism, which it refuses for dense models, and
    adds ``VLLM_DP_RANK_LOCAL * world_size`` to the worker's GPU index (out of range once
    ``CUDA_VISIBLE_DEVICES`` holds only this rank's GPUs).
    """
    visible = [g for g in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    mine = range(rank * tp, (rank + 1) * tp)
    # the parent's own CUDA_VISIBLE_DEVICES (if any) names the physical GPUs this run may use
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(visible[g] if g < len(visible) else str(g) for g in mine)
    for name in DP_VARIABLES:
        environ.pop(name, None)


def _dp_worker(job: tuple, queue: Any) -> None:
    """One data-parallel worker: its own GPUs and an independent engine."""
    import os

    rank, engine_args, prompts, params, adapter, adapter_hash = job
    dp_worker_env(os.environ, rank, engine_args["tensor_parallel_size"])
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


def _config_max_len(model: str) -> int | None:
    """The model config's ``max_position_embeddings`` (vLLM's default ``max_model_len``), None if unknown."""
    try:
        from transformers import AutoConfig

        value = getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except Exception:  # no config to read (a stand-in name, an offline hub id): no cut here
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)
