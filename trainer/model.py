"""Loading the model and tokenizer, wrapping LoRA, and reaching the parts the loop drives."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator

from taskmill.errors import ConfigError
from taskmill.trainer.config import LoraConfig, ModelConfig


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The tokenizer from ``model.tokenizer`` (or ``model.path``, with its GGUF file)."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or cfg.path
    if source is None:
        raise ConfigError(["model.tokenizer: no tokenizer given"])
    gguf = cfg.gguf_file if source == cfg.path else None
    if gguf is None and cfg.gguf_file and (Path(source) / cfg.gguf_file).exists():
        gguf = cfg.gguf_file
    kwargs = {"gguf_file": gguf} if gguf else {}
    key = "model.tokenizer" if cfg.tokenizer else "model.path"
    with load_errors(key, source):
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(cfg: ModelConfig, attn_name: str, seed: int) -> Any:
    """Load weights (HF folder or GGUF, dequantised to fp32) or build a seeded random model.

    Parameters stay float32 (master weights); bf16 comes from autocast on CUDA.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.arch is not None:
        arch = dict(cfg.arch)
        model_type = arch.pop("model_type")
        hf_cfg = AutoConfig.for_model(model_type, **arch)
        hf_cfg._attn_implementation = attn_name
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32, attn_implementation=attn_name)
    else:
        kwargs = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
        with load_errors("model.path", cfg.path):
            model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=torch.float32,
                                                         attn_implementation=attn_name, **kwargs)
        _drop_quantization_marks(model)
    if cfg.init_adapter:  # e.g. DPO after SFT: start from (and refer to) base + the SFT adapter
        from taskmill.trainer.adapters import merge_init_adapter

        model = merge_init_adapter(model, cfg.init_adapter)
    model.config.use_cache = False
    return model


@contextlib.contextmanager
def load_errors(key: str, source: str | None) -> Iterator[None]:
    """Turn a failed ``from_pretrained`` (missing folder, no weights, bad JSON...) into one line.

    Raises:
        ConfigError: naming the config key, the path and the loader's first line.
    """
    try:
        yield
    except (OSError, ValueError, KeyError) as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ConfigError([f"{key}: cannot load {source!r}: {first[:300]}"]) from None


def _drop_quantization_marks(model: Any) -> None:
    """GGUF loads leave a ``quantization_config`` although the weights are plain fp32 by now."""
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    for attr in ("hf_quantizer", "is_quantized", "quantization_method"):
        if hasattr(model, attr):
            try:
                setattr(model, attr, None if attr != "is_quantized" else False)
            except AttributeError:
                pass


def apply_lora(model: Any, cfg: LoraConfig) -> Any:
    """Wrap ``model`` with a PEFT LoRA adapter (no ``modules_to_save``, so vLLM can load it)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = linear_names(model) if cfg.target_modules == "all-linear" else list(cfg.target_modules)
    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=targets, use_rslora=cfg.use_rslora,
        bias="none", task_type="CAUSAL_LM",
    )
    with quiet_peft():
        return get_peft_model(model, peft_cfg)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT reads transformers' deprecated ``is_gradient_checkpointing`` (a FutureWarning per wrap)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def linear_names(model: Any) -> list[str]:
    """Short names of the linear layers inside the decoder blocks (``all-linear``: no output head).

    Short names (``q_proj``...) keep ``adapter_config.json`` in the form vLLM and PEFT examples use.
    """
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in causal_lm(model).model.layers.named_modules()
             if isinstance(m, torch.nn.Linear)}
    return sorted(names)


def causal_lm(model: Any) -> Any:
    """The ``*ForCausalLM`` module under PEFT / DDP / compile wrappers."""
    m = model
    for _ in range(8):
        if hasattr(m, "get_base_model"):  # PEFT (its __getattr__ also forwards lm_head, so test first)
            m = m.get_base_model()
        elif type(m).__name__ in ("DistributedDataParallel", "PackedLoss"):
            m = m.module if hasattr(m, "module") else m.lm
        else:
            break
    return m


def decoder_layers(model: Any) -> Any:
    """The list of transformer blocks (Llama/Qwen2 style: ``model.model.layers``)."""
    return causal_lm(model).model.layers


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in backward (non-reentrant, so LoRA and frozen inputs work)."""
    lm = causal_lm(model)
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


def compile_layers(model: Any, attention_in_graph: bool = True) -> None:
    """``torch.compile`` each decoder layer in place.

    Args:
        model: The model (any wrapper :func:`causal_lm` sees through).
        attention_in_graph: Trace the varlen attention op into each layer's graph; False keeps it
            eager behind a graph break (two graphs per layer, its casts and copies unfused).
    """
    from taskmill.trainer import attention

    attention.register_for_compile(attention._MODE["mode"], attention_in_graph)
    for layer in decoder_layers(model):
        layer.compile(dynamic=True)
