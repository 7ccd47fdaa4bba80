"""Typed training config: dataclasses, YAML loading, dotted CLI overrides and validation.

Every problem in a config is collected and raised at once as :class:`taskmill.errors.ConfigError`.
The resolved config (defaults filled in, overrides applied) is saved as ``config.yaml`` beside the
run's outputs, so a run can be repeated from that file alone.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from taskmill.backends.vllm import MAX_LORA_RANKS
from taskmill.errors import ConfigError
from taskmill.fileio import read_yaml, write_text
from taskmill.trainer.objective_config import CptConfig, DpoConfig, RewardConfig, RlhfConfig, check_objective


@dataclass
class ModelConfig:
    """Which model to train.

    Attributes:
        path: HF model folder (or a folder holding ``gguf_file``).
        gguf_file: GGUF file name inside ``path``; its weights are dequantised to float32.
        arch: Build a randomly initialised model from this HF config dict instead of loading
            weights (tests, benchmarks). Needs ``model_type`` (e.g. ``llama``, ``qwen2``).
        tokenizer: Tokenizer folder; defaults to ``path``.
        attention: ``auto`` (varlen flash on CUDA, per-document SDPA elsewhere), ``varlen`` or
            ``sdpa_per_doc``. Both keep packed documents from attending to each other.
        gradient_checkpointing: Recompute layer activations in the backward pass.
        compile: ``torch.compile`` each decoder layer when training on CUDA (ignored on CPU).
            Measured on an H200: 1.37x the eager tokens/s, 0.76x its memory.
        compile_attention: With ``compile``, trace the varlen attention op into each layer's graph
            (False: keep it eager behind a graph break, as before 2026-11-27).
        compile_loss: With ``compile``, fuse the chunked cross-entropy's softmax part with
            ``torch.compile``.
        init_adapter: A LoRA adapter merged into the loaded weights before training (e.g. DPO after
            SFT: the reference model is then the SFT model). A LoRA run saves the two adapters
            concatenated, so its adapter applies to ``path`` itself.
    """

    path: str | None = None
    gguf_file: str | None = None
    arch: dict[str, Any] | None = None
    tokenizer: str | None = None
    attention: Literal["auto", "varlen", "sdpa_per_doc"] = "auto"
    gradient_checkpointing: bool = False
    compile: bool = True
    compile_attention: bool = True
    compile_loss: bool = True
    init_adapter: str | None = None


@dataclass
class LoraConfig:
    """PEFT LoRA settings (``enabled: false`` trains every weight).

    Attributes:
        enabled: Train a LoRA adapter instead of the full model.
        r: Rank; vLLM serves ranks up to 512 (its documented ``max_lora_rank`` choices).
        alpha: Scaling numerator (``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA).
        dropout: Dropout on the LoRA input.
        target_modules: Module names, or ``all-linear`` (every linear layer but the output head).
        use_rslora: Rank-stabilised scaling.
    """

    enabled: bool = True
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    use_rslora: bool = False


@dataclass
class DataConfig:
    """Corpus and batching.

    Attributes:
        corpus: ``corpus.jsonl`` or the folder holding it (the builders' output).
        eval_corpus: Optional held-out ``corpus.jsonl`` for evaluation loss.
        max_length: Longest document in tokens; longer ones keep their last ``max_length`` tokens.
        tokens_per_step: Token budget of one optimizer step over all ranks. Documents are
            assigned to steps before micro-batching, so a step's gradient does not depend on
            ``micro_batch_tokens`` or the number of ranks.
        micro_batch_tokens: Token budget of one packed forward/backward pass.
        shuffle: Shuffle documents each epoch (seeded).
        epochs: Passes over the corpus (when ``train.max_steps`` is not set).
        no_target: A row with nothing to learn (empty completion): ``error`` stops before training
            naming the first such row; ``skip`` leaves them out and reports how many.
    """

    corpus: str | None = None
    eval_corpus: str | None = None
    max_length: int = 2048
    tokens_per_step: int = 16384
    micro_batch_tokens: int = 16384
    shuffle: bool = True
    epochs: int = 1
    no_target: Literal["error", "skip"] = "error"


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule and linear warm-up.

    Attributes:
        lr: Peak learning rate.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        warmup_steps: Linear warm-up steps.
        schedule: ``cosine`` or ``constant`` (after warm-up).
        weight_decay: Decoupled weight decay (not applied to norms and biases).
        betas: Adam betas.
        eps: Adam epsilon.
        max_grad_norm: Clip the global gradient norm to this (0 disables).
        fused: Fused AdamW kernel (CUDA and CPU): one kernel per step, step counters on the device.
    """

    lr: float = 2e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    fused: bool = True


@dataclass
class RunConfig:
    """Run-level settings.

    Attributes:
        output_dir: Where checkpoints, logs, the adapter or model and ``config.yaml`` go.
        seed: Seed for initialisation, shuffling and dropout.
        max_steps: Stop after this many optimizer steps (default: all epochs).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        precision: ``auto`` (bf16 autocast on CUDA, and on CPUs with native bf16 — AVX512-BF16 or
            AMX; fp32 on other CPUs, where bf16 is emulated), ``bf16`` or ``fp32``.
        distributed: ``auto`` (DDP under torchrun), ``none``, ``ddp`` or ``fsdp2``.
        loss_chunk_tokens: Target tokens per chunk of the fused output-head cross-entropy, so
            the vocab-sized logits never exist for all tokens at once.
        save_every: Checkpoint every N steps (0: only at the end).
        keep_checkpoints: Checkpoints kept on disk (oldest removed).
        log_every: Log every N steps.
        eval_every: Evaluate held-out loss every N steps (0: only at the end).
        peak_tflops: Accelerator peak (dense bf16) for MFU; 0 detects H100/H200/A100.
        progress: Show a progress bar when stderr is a terminal.
        progress_every_s: When stderr is not a terminal (a log file, a LOCO worker): one line every
            this many seconds and at the end (step, loss, tokens/s, ETA); 0 turns them off.
        threads: Torch intra-op threads on CPU (0: the count torch has, as an executor pinned it,
            capped at the CPUs this process may use). On a machine loaded by other work, fewer
            threads are much faster (oversubscribed threads wait on each other).
        save_final: Save the adapter or model at the end (benchmarks turn it off).
    """

    output_dir: str = "runs/train"
    seed: int = 0
    max_steps: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    distributed: Literal["auto", "none", "ddp", "fsdp2"] = "auto"
    loss_chunk_tokens: int = 4096
    save_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 1
    eval_every: int = 0
    peak_tflops: float = 0.0
    progress: bool = True
    progress_every_s: float = 30.0
    threads: int = 0
    save_final: bool = True


@dataclass
class TrainConfig:
    """The whole training config (sections ``model``, ``lora``, ``data``, ``optim``, ``run``).

    ``objective`` (``sft``, ``cpt``, ``dpo``) and its sections ``cpt`` / ``dpo``: see
    :mod:`taskmill.trainer.objective_config`.
    """

    objective: Literal["sft", "cpt", "dpo", "reward", "rlhf"] = "sft"
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    cpt: CptConfig = field(default_factory=CptConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rlhf: RlhfConfig = field(default_factory=RlhfConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-ready)."""
        return dataclasses.asdict(self)



VLLM_MAX_LORA_RANK = max(MAX_LORA_RANKS)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint (the small subset configs use)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _build(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from ``data``, appending every problem found to ``problems``."""
    if not isinstance(data, dict):
        problems.append(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - names):
        problems.append(f"{where}{key}: unknown key (expected one of {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = _yaml_float(data[f.name], hints[f.name]), hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, value, f"{where}{f.name}.", problems)
        elif _type_ok(value, hint):
            kwargs[f.name] = float(value) if hint is float else value
        else:
            problems.append(f"{where}{f.name}: expected {_hint_name(hint)}, got {value!r}")
    return cls(**kwargs)


def _yaml_float(value: Any, hint: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; accept it where a float is expected."""
    if isinstance(value, str) and float in (hint, *typing.get_args(hint)):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _hint_name(hint: Any) -> str:
    """Readable form of a type hint for error messages."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _check_values(cfg: TrainConfig, problems: list[str]) -> None:
    """Range and consistency checks that types cannot express."""
    d, o, r, lo, m = cfg.data, cfg.optim, cfg.run, cfg.lora, cfg.model
    positive = {
        "data.max_length": d.max_length, "data.tokens_per_step": d.tokens_per_step,
        "data.micro_batch_tokens": d.micro_batch_tokens, "data.epochs": d.epochs,
        "run.loss_chunk_tokens": r.loss_chunk_tokens, "run.log_every": r.log_every,
        "run.keep_checkpoints": r.keep_checkpoints,
    }
    problems.extend(f"{k}: must be > 0, got {v}" for k, v in positive.items() if v <= 0)
    if d.max_length > d.micro_batch_tokens:
        problems.append(f"data.max_length ({d.max_length}) must be <= data.micro_batch_tokens ({d.micro_batch_tokens})")
    if d.max_length > d.tokens_per_step:
        problems.append(f"data.max_length ({d.max_length}) must be <= data.tokens_per_step ({d.tokens_per_step})")
    if o.lr <= 0 or not 0 <= o.min_lr_ratio <= 1 or o.warmup_steps < 0 or o.max_grad_norm < 0:
        problems.append("optim: need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0, max_grad_norm >= 0")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        problems.append(f"optim.betas: expected two numbers in [0, 1), got {o.betas}")
    if r.max_steps is not None and r.max_steps <= 0:
        problems.append(f"run.max_steps: must be > 0, got {r.max_steps}")
    if r.progress_every_s < 0:
        problems.append(f"run.progress_every_s: must be >= 0 (0: no progress lines), got {r.progress_every_s}")
    if r.threads < 0:
        problems.append(f"run.threads: must be >= 0 (0: automatic), got {r.threads}")
    if r.save_every < 0 or r.eval_every < 0:
        problems.append("run.save_every and run.eval_every must be >= 0")
    if lo.enabled and not 0 < lo.r <= VLLM_MAX_LORA_RANK:
        problems.append(f"lora.r: must be in 1..{VLLM_MAX_LORA_RANK} (vLLM's largest max_lora_rank), got {lo.r}")
    if lo.enabled and not 0 <= lo.dropout < 1:
        problems.append(f"lora.dropout: must be in [0, 1), got {lo.dropout}")
    if isinstance(lo.target_modules, str) and lo.target_modules != "all-linear":
        problems.append(f"lora.target_modules: expected a list of module names or 'all-linear', got {lo.target_modules!r}")
    if (m.path is None) == (m.arch is None):
        problems.append("model: set exactly one of model.path (weights to load) and model.arch (random init)")
    if m.arch is not None and "model_type" not in m.arch:
        problems.append("model.arch: needs 'model_type' (e.g. llama, qwen2)")
    if m.arch is not None and m.tokenizer is None and d.corpus is not None:
        problems.append("model.tokenizer: needed to tokenise data.corpus when model.arch builds a random model")
    check_objective(cfg, problems)


def _parse_override(text: str, problems: list[str]) -> tuple[list[str], Any] | None:
    """``a.b=value`` -> (["a", "b"], YAML-parsed value)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        problems.append(f"override {text!r}: expected key.path=value")
        return None
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problems.append(f"override {text!r}: value is not valid YAML ({err.__class__.__name__})")
        return None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str], problems: list[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a nested dict (values parsed as YAML)."""
    for text in overrides:
        parsed = _parse_override(text, problems)
        if parsed is None:
            continue
        path, value = parsed
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"override {text!r}: {part} is not a section")
                break
            node = child
        else:
            node[path[-1]] = value
    return data


def config_from_dict(data: dict[str, Any], overrides: list[str] = (), *, file: str | None = None) -> TrainConfig:
    """Validate a nested dict (plus overrides) into a :class:`TrainConfig`.

    Raises:
        ConfigError: listing every problem found.
    """
    import copy

    problems: list[str] = []
    data = apply_overrides(copy.deepcopy(data or {}), list(overrides), problems)
    cfg = _build(TrainConfig, data, "", problems)
    if not problems:
        _check_values(cfg, problems)
    if problems:
        raise ConfigError(problems, file=file)
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config file and apply dotted ``key=value`` overrides.

    Raises:
        ConfigError: the file is missing, not YAML, or fails validation (all problems listed).
    """
    path = Path(path)
    data = read_yaml(path) or {}
    cfg = config_from_dict(data, overrides, file=str(path))
    _resolve_relative(cfg, path.parent)
    return cfg


def _resolve_relative(cfg: TrainConfig, base: Path) -> None:
    """Paths in a config file are relative to the file's folder (when they exist there)."""
    for section, name in (("model", "path"), ("model", "tokenizer"), ("model", "init_adapter"), ("data", "corpus"),
                          ("data", "eval_corpus"), ("rlhf", "reward_model")):
        obj = getattr(cfg, section)
        value = getattr(obj, name)
        if value and not Path(value).is_absolute() and (base / value).exists():
            setattr(obj, name, str((base / value).resolve()))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    import yaml

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
