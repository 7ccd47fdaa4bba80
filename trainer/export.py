"""Saving what a run trained, and merging an adapter into its base model (``taskmill merge``).

LoRA runs write ``OUTPUT/adapter/`` in PEFT format (``adapter_config.json`` and
``adapter_model.safetensors``, no ``modules_to_save``) which vLLM loads with ``LoRARequest``, plus
``taskmill_base.json`` naming the base model (folder and GGUF file). Full fine-tuning writes
``OUTPUT/model/`` as a plain HF folder with the tokenizer. Folders are written under a temporary
name and renamed, so a crash never leaves a half-written adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError, DataError
from taskmill.fileio import atomic_dir, claim_output, replace_dir, write_json

BASE_FILE = "taskmill_base.json"


def _full_state(trainer: Any) -> dict[str, Any] | None:
    """Gathered state dict under FSDP2 (None elsewhere: the module's own is used)."""
    if trainer.info.mode != "fsdp2":
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(trainer.lm, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _plain_config(lm: Any) -> None:
    """Saved configs name SDPA, not the training-only packed attention."""
    lm.config._attn_implementation = "sdpa"


def save_trained(trainer: Any, out: Path) -> Path:
    """Write the adapter (LoRA) or full model of a finished run; returns the folder."""
    from taskmill.trainer import dist

    state = _full_state(trainer)
    name = "adapter" if trainer.peft is not None else "model"
    final = out / name
    if trainer.info.main:
        tmp = out / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        attn = trainer.lm.config._attn_implementation
        _plain_config(trainer.lm)
        try:
            if trainer.peft is not None:
                _save_adapter(trainer, tmp, state)
            else:
                _save_model(trainer, tmp, state)
        finally:
            trainer.lm.config._attn_implementation = attn
        replace_dir(tmp, final)
    dist.barrier(trainer.info)
    return final


def save_adapter_snapshot(trainer: Any, final: Path) -> Path:
    """Write the current LoRA weights (one process, no FSDP2) to ``final`` as the run's adapter would be.

    Same files as ``OUTPUT/adapter`` (concatenated with ``model.init_adapter`` when there is one),
    written under a temporary name and swapped in. RLHF's vLLM rollouts serve these each step.
    """
    tmp = final.parent / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    attn = trainer.lm.config._attn_implementation
    _plain_config(trainer.lm)
    try:
        _save_adapter(trainer, tmp, None)
    finally:
        trainer.lm.config._attn_implementation = attn
    final.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, final)
    return final


def _save_adapter(trainer: Any, tmp: Path, state: dict[str, Any] | None) -> None:
    m = trainer.cfg.model
    peft_cfg = trainer.peft.peft_config["default"]
    peft_cfg.base_model_name_or_path = m.path
    if state is not None:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(trainer.peft, state_dict={f"base_model.model.{k}": v for k, v in state.items()})
    trainer.peft.save_pretrained(str(tmp), state_dict=state)
    stable_adapter_config(tmp / "adapter_config.json")
    if m.init_adapter:  # stacked on another adapter: save both as one, relative to the base itself
        from taskmill.trainer.adapters import concat_adapters

        concat_adapters(m.init_adapter, tmp, tmp)
    (tmp / BASE_FILE).write_text(json.dumps({"path": m.path, "gguf_file": m.gguf_file, "arch": m.arch}, indent=1))


def stable_adapter_config(path: Path) -> None:
    """Rewrite a PEFT ``adapter_config.json`` with its module lists sorted.

    PEFT keeps ``target_modules`` as a set and saves it in set order, which changes with each
    process's string-hash seed: the same training then gave different bytes (and adapter hashes,
    which key the eval cache and LOCO's results) from one process to the next.
    """
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key])
    write_json(path, cfg, sort_keys=True)  # PEFT's own layout: indent 2, sorted keys


def _save_model(trainer: Any, tmp: Path, state: dict[str, Any] | None) -> None:
    trainer.lm.save_pretrained(str(tmp), state_dict=state)
    if trainer.tokenizer is not None:
        trainer.tokenizer.save_pretrained(str(tmp))


def _load_base(base: dict[str, Any]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from taskmill.trainer.model import _drop_quantization_marks

    if not base.get("path"):
        raise ConfigError(["merge: the adapter's base model has no folder (trained from model.arch); pass --base"])
    kwargs = {"gguf_file": base["gguf_file"]} if base.get("gguf_file") else {}
    model = AutoModelForCausalLM.from_pretrained(base["path"], dtype=torch.float32, **kwargs)
    _drop_quantization_marks(model)
    return model


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_path: str | None = None,
                  gguf_file: str | None = None, *, overwrite: bool = False) -> Path:
    """Merge a LoRA adapter into its base model and save a plain HF model folder.

    Args:
        adapter_dir: A folder written by a LoRA run (``OUTPUT/adapter``).
        out_dir: Where the merged model goes (written atomically).
        base_path: Base model folder; defaults to the one recorded beside the adapter.
        gguf_file: GGUF file inside ``base_path``, if the base is GGUF.
        overwrite: Replace ``out_dir`` even when it is not an earlier merge.

    Returns:
        ``out_dir``.
    """
    from peft import PeftModel

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise DataError("not a LoRA adapter folder (no adapter_config.json)", file=str(adapter_dir))
    recorded = json.loads((adapter_dir / BASE_FILE).read_text()) if (adapter_dir / BASE_FILE).is_file() else {}
    base = {"path": base_path, "gguf_file": gguf_file} if base_path else recorded
    target = claim_output(out_dir, "merge", inputs=[adapter_dir, *([base["path"]] if base.get("path") else [])],
                          overwrite=overwrite)
    from taskmill.trainer.model import quiet_peft

    with quiet_peft():
        model = PeftModel.from_pretrained(_load_base(base), str(adapter_dir)).merge_and_unload()
    with atomic_dir(out_dir, marker=target.write_marker) as tmp:
        model.save_pretrained(str(tmp))
        _save_tokenizer(base, tmp)
    return out_dir


def _save_tokenizer(base: dict[str, Any], dest: Path) -> None:
    """Copy the base model's tokenizer beside the merged weights (when it has one)."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": base["gguf_file"]} if base.get("gguf_file") else {}
    try:
        tok = AutoTokenizer.from_pretrained(base["path"], **kwargs)
    except (OSError, ValueError):
        return
    tok.save_pretrained(str(dest))
