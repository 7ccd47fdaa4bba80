"""Loading Hugging Face causal LMs (folders or GGUF files) and PEFT adapters for evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskmill.errors import TaskmillError


def split_gguf(model: str | Path, gguf_file: str | None) -> tuple[str, str | None]:
    """``(folder, gguf file name)``: a path ending in ``.gguf`` names both."""
    path = Path(model)
    if gguf_file is None and path.suffix == ".gguf":
        return str(path.parent), path.name
    return str(model), gguf_file


def load_model(
    model: str | Path, *, gguf_file: str | None = None, dtype: str = "float32", device: str = "cpu"
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a folder, a hub id in the local cache, or a GGUF file.

    GGUF weights are dequantised to ``dtype`` by transformers (needs the ``gguf`` package).

    Raises:
        TaskmillError: The model cannot be found or loaded.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = split_gguf(model, gguf_file)
    extra = {"gguf_file": gguf} if gguf else {}
    if not hasattr(torch, dtype):
        raise TaskmillError(f"unknown dtype '{dtype}': expected float32, bfloat16 or float16")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), **extra)
    except (OSError, ValueError) as err:
        raise TaskmillError(f"cannot load model: {err}", file=str(model)) from None
    return lm.to(device).eval(), tokenizer


def attach_adapter(model: Any, adapter: str | Path, *, merge: bool = True) -> Any:
    """Wrap ``model`` with the PEFT adapter in ``adapter``; merged into the weights when ``merge``.

    Merging costs one pass over the adapted matrices and makes scoring as fast as the base model.
    """
    try:
        from peft import PeftModel
    except ImportError:
        raise TaskmillError("adapters need peft, which is not installed: pip install taskmill[train]") from None
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise TaskmillError("not a PEFT adapter folder (no adapter_config.json)", file=str(adapter))
    import warnings

    with warnings.catch_warnings():  # PEFT reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        wrapped = PeftModel.from_pretrained(model, str(adapter))
    return (wrapped.merge_and_unload() if merge else wrapped).eval()


def export_gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a GGUF Llama-family model and save it as a plain HF folder (fp32 safetensors).

    ``save_pretrained`` refuses a model loaded from GGUF as "quantized", so its state dict is copied
    into a fresh model built from the same config without ``quantization_config``.
    """
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_model(gguf_path)
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(model.state_dict())
    out = Path(out_dir)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
