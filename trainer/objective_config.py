"""Config sections of the training objectives other than SFT (no heavy imports: read by ``config.py``).

``objective`` picks what the loop optimises:

* ``sft`` — next-token loss on completion tokens of a prompt/completion corpus (the default).
* ``cpt`` — continued pre-training: next-token loss on every token of raw text (a ``.txt`` file,
  a JSONL file's ``cpt.text_column``, or a corpus whose rows are joined as prompt + "\\n" +
  completion); all parameters train, so ``lora.enabled`` must be false.
* ``dpo`` — Direct Preference Optimisation (Rafailov et al., 2023) on prompt/chosen/rejected pairs
  (TRL's format) against a frozen reference: the base with adapters disabled for LoRA, a frozen
  copy of the starting weights for full fine-tuning.
* ``reward`` — a reward model: a scalar head on the LM trained on the same pairs with the
  Bradley–Terry loss (:mod:`taskmill.trainer.reward`); saves a ``*ForSequenceClassification`` folder.
* ``rlhf`` — online policy optimisation (RLOO) of prompts' sampled answers against a reward (a
  reward model or a rule), with a KL penalty to the reference policy (:mod:`taskmill.trainer.rl`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OBJECTIVES = ("sft", "cpt", "dpo", "reward", "rlhf")


@dataclass
class CptConfig:
    """Continued pre-training data settings.

    Attributes:
        text_column: Field holding the raw text in a JSONL file.
        add_eos: End every text with the tokenizer's EOS token (a document boundary the model learns).
    """

    text_column: str = "text"
    add_eos: bool = True


@dataclass
class DpoConfig:
    """DPO settings.

    Attributes:
        beta: Strength of the implicit KL penalty (TRL's default 0.1); rewards are
            ``beta * (log pi(y|x) - log pi_ref(y|x))``.
        label_smoothing: Conservative DPO: the probability that a pair's label is flipped (0: plain DPO).
    """

    beta: float = 0.1
    label_smoothing: float = 0.0


@dataclass
class RewardConfig:
    """Reward-model settings (``objective: reward``).

    Attributes:
        center_coefficient: Weight of the reward-centring term ``(r_chosen + r_rejected) ** 2``
            (TRL's ``center_rewards_coefficient``; 0 turns it off, TRL's docs suggest 0.01).
    """

    center_coefficient: float = 0.0


@dataclass
class RlhfConfig:
    """Online policy optimisation settings (``objective: rlhf``; the estimator is RLOO).

    Each step takes ``prompts_per_step`` corpus prompts, samples ``samples_per_prompt`` responses
    to each from the current policy, scores them (``reward``) and subtracts ``kl_coef`` x the
    sequence's KL estimate to the reference policy; a sample's advantage is its total reward
    minus the mean of the other samples of its prompt.

    Attributes:
        reward: ``exact_match`` / ``rouge_l`` (against the row's completion), ``callable`` or ``model``.
        reward_callable: ``module.path:function`` or ``file.py:function`` for ``reward: callable``.
        reward_model: Reward model folder (``OUTPUT/reward_model``) for ``reward: model``.
        samples_per_prompt: k >= 2 samples per prompt (the leave-one-out baseline needs two).
        prompts_per_step: Prompts per optimizer step.
        kl_coef: Weight of the KL penalty (TRL's RLOO default 0.05).
        temperature: Sampling temperature (log-probabilities use the same one).
        max_new_tokens: Longest sampled response.
        stop: Stop sequences (the response ends after the token that completes one).
        rollout_backend: ``hf`` (the policy's own ``generate`` in the training process) or
            ``vllm`` (a vLLM engine beside the trainer on the same GPU, serving the current LoRA
            weights saved each step; :mod:`taskmill.trainer.rollout_vllm`).
        vllm_options: Extra ``vllm.LLM`` engine arguments for ``rollout_backend: vllm`` (e.g.
            ``gpu_memory_utilization``, default 0.3, so the trainer keeps the rest of the GPU).
    """

    reward: Literal["exact_match", "rouge_l", "callable", "model"] = "exact_match"
    reward_callable: str | None = None
    reward_model: str | None = None
    samples_per_prompt: int = 4
    prompts_per_step: int = 4
    kl_coef: float = 0.05
    temperature: float = 1.0
    max_new_tokens: int = 32
    stop: list[str] = field(default_factory=list)
    rollout_backend: Literal["hf", "vllm"] = "hf"
    vllm_options: dict[str, Any] = field(default_factory=dict)


def check_objective(cfg: Any, problems: list[str]) -> None:
    """Consistency checks of ``cfg.objective`` with the other sections (appends to ``problems``)."""
    objective: Literal["sft", "cpt", "dpo", "reward", "rlhf"] = cfg.objective
    if objective == "cpt" and cfg.lora.enabled:
        problems.append("objective 'cpt' trains all parameters: set lora.enabled: false")
    if objective == "reward":
        if cfg.reward.center_coefficient < 0:
            problems.append(f"reward.center_coefficient: must be >= 0, got {cfg.reward.center_coefficient}")
        if 2 * cfg.data.max_length > cfg.data.micro_batch_tokens:
            problems.append(f"objective 'reward' packs a pair's two sequences together: data.micro_batch_tokens "
                            f"({cfg.data.micro_batch_tokens}) must be >= 2 * data.max_length ({cfg.data.max_length})")
    if objective == "rlhf":
        check_rlhf(cfg.rlhf, problems)
        check_rollout_backend(cfg, problems)
    if objective == "dpo":
        if cfg.dpo.beta <= 0:
            problems.append(f"dpo.beta: must be > 0, got {cfg.dpo.beta}")
        if not 0 <= cfg.dpo.label_smoothing < 0.5:
            problems.append(f"dpo.label_smoothing: must be in [0, 0.5), got {cfg.dpo.label_smoothing}")
        if 2 * cfg.data.max_length > cfg.data.micro_batch_tokens:
            problems.append(f"objective 'dpo' packs a pair's two sequences together: data.micro_batch_tokens "
                            f"({cfg.data.micro_batch_tokens}) must be >= 2 * data.max_length ({cfg.data.max_length})")


def check_rlhf(r: RlhfConfig, problems: list[str]) -> None:
    """Range checks of the ``rlhf`` section (appends to ``problems``)."""
    if r.samples_per_prompt < 2:
        problems.append(f"rlhf.samples_per_prompt: must be >= 2 (RLOO's baseline), got {r.samples_per_prompt}")
    if r.prompts_per_step < 1 or r.max_new_tokens < 1:
        problems.append("rlhf.prompts_per_step and rlhf.max_new_tokens must be >= 1")
    if r.kl_coef < 0:
        problems.append(f"rlhf.kl_coef: must be >= 0, got {r.kl_coef}")
    if r.temperature <= 0:
        problems.append(f"rlhf.temperature: must be > 0, got {r.temperature}")
    if any(not isinstance(x, str) or not x for x in r.stop):  # "" would end every response (and vLLM refuses it)
        problems.append(f"rlhf.stop: every stop sequence must be a non-empty string, got {r.stop!r}")
    if r.reward == "callable" and not r.reward_callable:
        problems.append("rlhf.reward_callable: needed with rlhf.reward: callable ('module:function')")
    if r.reward == "model" and not r.reward_model:
        problems.append("rlhf.reward_model: needed with rlhf.reward: model (a reward_model folder)")


# engine arguments taskmill sets itself for vLLM rollouts (the policy's model, LoRA serving, seed)
VLLM_FIXED_OPTIONS = ("model", "tokenizer", "enable_lora", "max_lora_rank", "seed")
# vllm.SamplingParams refuses temperature > 2 and raises 0 < T < 0.01 to 0.01 (vllm/sampling_params.py)
VLLM_TEMPERATURES = (0.01, 2.0)


def check_rollout_backend(cfg: Any, problems: list[str]) -> None:
    """What ``rlhf.rollout_backend: vllm`` needs from the rest of the config (appends to ``problems``).

    vLLM serves the policy as the base model plus the current LoRA adapter (a ``LoRARequest`` per
    step), so the run must train LoRA on a model folder vLLM can load, on a CUDA device.
    """
    r = cfg.rlhf
    if r.rollout_backend != "vllm":
        if r.vllm_options:
            problems.append("rlhf.vllm_options: only used with rlhf.rollout_backend: vllm")
        return
    if cfg.run.device == "cpu":
        problems.append("rlhf.rollout_backend 'vllm' needs a CUDA GPU (run.device is 'cpu'): use rollout_backend: hf")
    if not cfg.lora.enabled:
        problems.append("rlhf.rollout_backend 'vllm' serves the policy as a LoRA adapter: needs lora.enabled: true")
    if cfg.model.path is None or cfg.model.gguf_file:
        problems.append("rlhf.rollout_backend 'vllm' loads model.path as a plain HF folder (not model.arch or a GGUF file)")
    if not VLLM_TEMPERATURES[0] <= r.temperature <= VLLM_TEMPERATURES[1]:
        problems.append(f"rlhf.temperature: vLLM samples at {VLLM_TEMPERATURES[0]} to {VLLM_TEMPERATURES[1]} "
                        f"(it refuses more and raises less to {VLLM_TEMPERATURES[0]}), got {r.temperature}")
    fixed = sorted(set(r.vllm_options) & set(VLLM_FIXED_OPTIONS))
    if fixed:
        problems.append(f"rlhf.vllm_options: {', '.join(fixed)} are set by taskmill (from model, lora and run.seed)")
