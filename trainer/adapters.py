"""Starting a run from a LoRA adapter, and folding two stacked adapters into one.

DPO after SFT (and any run with ``model.init_adapter``) merges the first adapter into the base
weights and trains a second one on top. To keep the result usable exactly like any other adapter
(``taskmill eval --adapter``, vLLM's ``LoRARequest``, ``taskmill merge``), the two are concatenated
along the rank: with ``delta_i = s_i * B_i @ A_i`` (``s_i`` = alpha/r, or alpha/sqrt(r) for rsLoRA),

    delta_1 + delta_2 = [s_1 B_1 | s_2 B_2] @ [A_1 ; A_2]

which is a rank ``r_1 + r_2`` LoRA with scaling 1 (``lora_alpha = r``, no rsLoRA). Nothing is
approximated: base + concatenated adapter equals (base + adapter 1) + adapter 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from taskmill.errors import DataError

WEIGHTS = "adapter_model.safetensors"


def merge_init_adapter(model: Any, adapter_dir: str | Path) -> Any:
    """``model`` with the LoRA adapter at ``adapter_dir`` merged into its weights (a plain model again)."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise DataError("model.init_adapter: not a LoRA adapter folder (no adapter_config.json)", file=str(adapter_dir))
    from taskmill.trainer.model import quiet_peft

    with quiet_peft():
        return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def _scaling(cfg: dict[str, Any]) -> float:
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def _read(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise DataError("cannot concatenate an adapter with per-module rank/alpha patterns", file=str(adapter_dir))
    return cfg, load_file(str(adapter_dir / WEIGHTS))


def concat_adapters(first: str | Path, second: str | Path, out: str | Path) -> Path:
    """Write the rank-concatenation of two LoRA adapters (``first`` applied below ``second``) to ``out``.

    Both must target the same modules. ``out`` may be ``second`` (its files are replaced).
    """
    import torch
    from safetensors.torch import save_file

    first, second, out = Path(first), Path(second), Path(out)
    cfg1, w1 = _read(first)
    cfg2, w2 = _read(second)
    if sorted(w1) != sorted(w2):
        raise DataError(f"adapters target different modules ({first} vs {second}); cannot concatenate")
    s1, s2 = _scaling(cfg1), _scaling(cfg2)
    merged: dict[str, Any] = {}
    for key in sorted(w1):
        if ".lora_A." in key:  # [r, in]
            merged[key] = torch.cat([w1[key], w2[key]], 0).contiguous()
        elif ".lora_B." in key:  # [out, r]
            merged[key] = torch.cat([w1[key] * s1, w2[key] * s2], 1).contiguous()
        else:
            raise DataError(f"adapter weight {key} is not a LoRA A/B matrix; cannot concatenate", file=str(first))
    rank = cfg1["r"] + cfg2["r"]
    cfg = {**cfg2, "r": rank, "lora_alpha": rank, "use_rslora": False}
    out.mkdir(parents=True, exist_ok=True)
    save_file(merged, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return out
