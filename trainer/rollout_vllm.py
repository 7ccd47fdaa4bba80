"""RLHF rollouts through vLLM (``rlhf.rollout_backend: vllm``) with the policy's current LoRA weights.

A vLLM engine (``vllm.LLM``) runs beside the trainer on the same GPU (``gpu_memory_utilization``
0.3 unless ``rlhf.vllm_options`` says otherwise) and holds the *base* model. Each step:

1. the trainer's current LoRA weights are saved to ``OUTPUT/rollout_adapter/step-NNNNNN`` in the
   same form as the final ``OUTPUT/adapter`` (rank-concatenated with ``model.init_adapter`` when
   the run starts from SFT), and the previous step's folder is removed;
2. every prompt is one request, its token ids as a ``TokensPrompt`` (``{"prompt_token_ids": ids}``)
   with ``SamplingParams(n=k, temperature=T, top_p=1, top_k=-1, max_tokens, stop, seed)`` — no
   top-p/top-k cut, so the samples come from the distribution whose log-probabilities the loss
   uses; the seed is derived from (run seed, step, prompt index), so a resumed run asks for the
   same samples;
3. ``LLM.generate(prompts, sampling_params, lora_request=LoRARequest(name, int_id, path))``.
   vLLM caches adapters by ``lora_int_id``, so every step gets a new id (step + 1): reusing one
   would serve the previous step's weights;
4. each completion's ``token_ids`` are cut exactly like the HF path's (first EOS, or the token
   that completes a stop sequence), so rewards, KL and the loss see the same kind of response;
5. when training ends (or fails), the engine is shut down (:meth:`VllmRollouts.close`).

vLLM samples at temperatures in [0.01, 2] only (it refuses more than 2 and raises a smaller positive
one to 0.01, which would sample from another distribution than the loss's), so the config is checked
for that range. ``top_k=-1`` is "no cut" in every vLLM (0.34 also takes 0; older ones only -1).

vLLM returns no full next-token distributions, so the logged ``entropy`` is the sampled-token
estimate ``-mean log pi(y_t)`` from the trainer's own log-probabilities (the HF path logs the exact
entropy of the sampling distribution). vLLM is imported only here, only when asked for; without
it, or without CUDA, the run stops with one line before its first step.
"""

from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Any, Sequence

from taskmill.errors import TaskmillError

ADAPTER_DIR = "rollout_adapter"
DEFAULT_GPU_MEMORY_UTILIZATION = 0.3


def vllm_api() -> Any:
    """The parts of vLLM the rollouts use (``LLM``, ``SamplingParams``, ``LoRARequest``), or one clear error."""
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise TaskmillError("rlhf.rollout_backend 'vllm' needs vllm, which is not installed: "
                            "pip install taskmill[vllm] (or use rlhf.rollout_backend: hf)") from None
    return types.SimpleNamespace(LLM=vllm.LLM, SamplingParams=vllm.SamplingParams, LoRARequest=LoRARequest)


def require_cuda() -> None:
    """One clear error when no CUDA device is visible (vLLM rollouts need one)."""
    import torch

    if not torch.cuda.is_available():
        raise TaskmillError("rlhf.rollout_backend 'vllm' needs a CUDA GPU and none is visible: "
                            "use rlhf.rollout_backend: hf on this machine")


def rollout_seed(run_seed: int, step: int, index: int) -> int:
    """Per-request sampling seed from (run seed, step, prompt index), below 2**60.

    vLLM runs a request with ``n`` samples as ``n`` child requests seeded ``seed + j``
    (vllm/v1/engine/parallel_sampling.py), so consecutive seeds would give prompt ``i``'s sample
    ``j + 1`` the random stream of prompt ``i + 1``'s sample ``j``: the seeds are spread by a hash
    instead, and stay far enough below 2**63 (the engine's int64 transport) for ``+ j``.
    """
    import hashlib

    digest = hashlib.sha256(f"{run_seed}:{step}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 4


def sampling_kwargs(rlhf: Any, seed: int) -> dict[str, Any]:
    """``SamplingParams`` arguments of one prompt's request: k samples from the policy at temperature T."""
    return {"n": rlhf.samples_per_prompt, "temperature": rlhf.temperature, "top_p": 1.0, "top_k": -1,
            "max_tokens": rlhf.max_new_tokens, "stop": list(rlhf.stop) or None, "seed": seed,
            "include_stop_str_in_output": True}


def token_prompts(prompt_ids: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """vLLM ``TokensPrompt`` dicts of already tokenised prompts."""
    return [{"prompt_token_ids": list(ids)} for ids in prompt_ids]


def adapter_rank(folder: Path) -> int:
    """LoRA rank of a saved adapter (its ``r``, the largest ``rank_pattern`` value when there is one)."""
    import json

    cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return max([int(cfg["r"]), *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]])


class VllmRollouts:
    """Samples RLHF responses with vLLM from the trainer's current LoRA policy.

    Args:
        trainer: The :class:`~taskmill.trainer.rl.RlhfTrainer` (its config, output folder, PEFT model).
        api: ``LLM`` / ``SamplingParams`` / ``LoRARequest`` (vLLM's, from :func:`vllm_api`, when None).
    """

    def __init__(self, trainer: Any, api: Any = None) -> None:
        self.trainer = trainer
        self.api = api if api is not None else vllm_api()
        self.engine: Any = None
        self.folder = Path(trainer.out) / ADAPTER_DIR

    def save_adapter(self, step: int) -> Path:
        """The policy's LoRA weights now, as ``rollout_adapter/step-NNNNNN`` (older steps' folders removed)."""
        from taskmill.trainer.export import save_adapter_snapshot

        final = save_adapter_snapshot(self.trainer, self.folder / f"step-{step:06d}")
        for old in self.folder.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def lora_request(self, step: int, adapter: Path) -> Any:
        """A ``LoRARequest`` with an id of its own per step (vLLM caches adapters by id)."""
        return self.api.LoRARequest(lora_name=f"rlhf-step-{step}", lora_int_id=step + 1, lora_path=str(adapter))

    def _engine(self, adapter: Path) -> Any:
        """Build the engine on first use, sized to serve ``adapter``'s rank."""
        if self.engine is None:
            from taskmill.backends.vllm import check_adapter, rank_advice, served_ranks, serving_rank

            cfg = self.trainer.cfg
            rank = adapter_rank(adapter)
            max_rank = serving_rank(rank, served_ranks())
            if max_rank is None:
                raise TaskmillError(f"rlhf.rollout_backend 'vllm': adapter rank {rank}: {rank_advice(rank, served_ranks())}")
            check_adapter(adapter, max_rank)
            args = {"gpu_memory_utilization": DEFAULT_GPU_MEMORY_UTILIZATION, "max_model_len": cfg.data.max_length,
                    **cfg.rlhf.vllm_options,
                    "model": cfg.model.path, "tokenizer": cfg.model.tokenizer or cfg.model.path,
                    "enable_lora": True, "max_lora_rank": max_rank, "seed": cfg.run.seed}
            self.engine = self.api.LLM(**args)
        return self.engine

    def close(self) -> None:
        """Shut the engine down (its engine-core process and GPU memory), e.g. at the end of training,
        so the GPU is free for what the same process does next (LOCO evaluates or trains the next fold)."""
        from taskmill.backends.vllm import shutdown_engine

        engine, self.engine = self.engine, None
        if engine is not None:
            shutdown_engine(engine)

    def generate(self, prompt_ids: Sequence[Sequence[int]], step: int) -> list[list[int]]:
        """k sampled continuations per prompt (token ids, uncut), prompts in order, k consecutive each."""
        r, seed = self.trainer.cfg.rlhf, self.trainer.cfg.run.seed
        adapter = self.save_adapter(step)
        engine = self._engine(adapter)
        params = [self.api.SamplingParams(**sampling_kwargs(r, rollout_seed(seed, step, i)))
                  for i in range(len(prompt_ids))]
        outputs = engine.generate(token_prompts(prompt_ids), sampling_params=params, use_tqdm=False,
                                  lora_request=self.lora_request(step, adapter))
        responses: list[list[int]] = []
        for out in outputs:
            if len(out.outputs) != r.samples_per_prompt:
                raise TaskmillError(f"vLLM returned {len(out.outputs)} samples for a prompt, "
                                    f"expected rlhf.samples_per_prompt = {r.samples_per_prompt}")
            responses.extend(list(c.token_ids) for c in out.outputs)
        return responses
