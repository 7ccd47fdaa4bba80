"""Per-document causal attention for packed batches, plugged into HF models by name.

The function is registered in transformers' ``AttentionInterface`` as ``taskmill_varlen`` and is
not registered as a mask function, so the model builds no attention mask (no ``T x T`` tensor for
a packed row). Document boundaries reach it as the flash-attention keyword arguments
``cu_seq_lens_q`` / ``max_length_q`` that HF models pass through to their attention functions.

On CUDA it calls ``torch.nn.attention.varlen.varlen_attn`` (flash kernel inside torch); its keyword
set differs between torch versions (``window_size=(-1, 0)`` vs ``is_causal``; ``enable_gqa`` or
not), so it is inspected once, in :func:`register`. Elsewhere each document runs through causal SDPA.

``varlen_attn`` is a torch custom op with a fake (shape) implementation and a registered backward,
so ``torch.compile`` can trace the varlen path into each decoder layer's graph: the RoPE output's
cast to bf16, the ``[1, H, T, D] -> [T, H, D]`` copies and the KV-head repeat then fuse with the
surrounding kernels instead of running eagerly around a graph break. Nothing on the traced path
may call ``inspect`` or ``functools.lru_cache`` functions, hence the flags in ``_MODE``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

ATTN_NAME = "taskmill_varlen"
# resolved by register(), outside any traced code
_MODE: dict[str, Any] = {"mode": "auto", "has_varlen": False, "gqa_flag": False, "window_flag": False}


@functools.lru_cache(maxsize=1)
def varlen_signature() -> frozenset[str] | None:
    """Keyword names of torch's ``varlen_attn``, or None when this torch lacks it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return frozenset(inspect.signature(varlen_attn).parameters)


def _repeat_kv(x: Any, groups: int) -> Any:
    """``[T, Hkv, D]`` -> ``[T, Hkv * groups, D]`` (each KV head serves ``groups`` query heads)."""
    if groups == 1:
        return x
    t, h, d = x.shape
    return x[:, :, None, :].expand(t, h, groups, d).reshape(t, h * groups, d)


def _varlen(q: Any, k: Any, v: Any, cu: Any, max_len: int, scale: float) -> Any:
    """Causal varlen flash attention on ``[T, H, D]`` tensors."""
    from torch.nn.attention.varlen import varlen_attn

    import torch

    # under autocast RoPE returns fp32 q/k (fp32 cos/sin), and the flash kernel takes fp16/bf16 only
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    kw: dict[str, Any] = {"scale": scale}
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and _MODE["gqa_flag"]:
        kw["enable_gqa"] = True
    else:
        k, v = _repeat_kv(k, groups), _repeat_kv(v, groups)
    if _MODE["window_flag"]:
        kw["window_size"] = (-1, 0)
    else:
        kw["is_causal"] = True
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)


def _per_doc_sdpa(q: Any, k: Any, v: Any, cu: Any, scale: float) -> Any:
    """Causal SDPA document by document on ``[T, H, D]`` tensors (exact; for CPU and checks).

    On CUDA (only without the varlen kernel: torch < 2.9, or ``attention: sdpa_per_doc``) reading
    the boundaries back is a host wait in every layer; the varlen path has none.
    """
    import torch
    import torch.nn.functional as F

    groups = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        # [1, H, L, D] per document
        qd = q[s:e].transpose(0, 1)[None]
        kd = _repeat_kv(k[s:e], groups).transpose(0, 1)[None]
        vd = _repeat_kv(v[s:e], groups).transpose(0, 1)[None]
        out[s:e] = F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, scale=scale)[0].transpose(0, 1)
    return out


def use_varlen(device_type: str, mode: str) -> bool:
    """Whether packed attention runs through the varlen flash kernel."""
    if mode == "sdpa_per_doc":
        return False
    ok = device_type == "cuda" and _MODE["has_varlen"]
    if mode == "varlen" and not ok:
        from taskmill.errors import ConfigError

        raise ConfigError(["model.attention: 'varlen' needs CUDA and torch.nn.attention.varlen (torch >= 2.9)"])
    return ok


def packed_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """HF attention function: ``[B, H, T, D]`` q/k/v in, ``[B, T, H, D]`` out.

    With ``cu_seq_lens_q`` (packed training, ``B == 1``) attention stays within each document.
    Without it (generation, plain batches) it defers to HF's SDPA function.
    """
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    if query.shape[0] != 1 or dropout:
        raise ValueError("packed attention expects one packed row (batch 1) and no attention dropout")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    # [1, H, T, D] -> [T, H, D]
    q, k, v = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))
    if use_varlen(q.device.type, _MODE["mode"]):
        out = _varlen(q, k, v, cu, int(kwargs["max_length_q"]), scale)
    else:
        out = _per_doc_sdpa(q, k, v, cu, scale)
    return out[None], None


def register(mode: str = "auto") -> str:
    """Register :func:`packed_attention` with transformers; returns its ``attn_implementation`` name."""
    from transformers import AttentionInterface

    params = varlen_signature()
    _MODE.update(mode=mode, has_varlen=params is not None, gqa_flag="enable_gqa" in (params or ()),
                 window_flag="window_size" in (params or ()))
    AttentionInterface.register(ATTN_NAME, packed_attention)
    return ATTN_NAME


def register_for_compile(mode: str, in_graph: bool) -> str:
    """Register for ``torch.compile``d layers: traced into the graph, or eager behind a graph break.

    Only the varlen path is traced (``in_graph``); per-document SDPA loops over ``cu.tolist()``,
    which would make every batch's boundaries part of the graph, so it always stays eager.
    """
    import torch
    from transformers import AttentionInterface

    name = register(mode)
    if not in_graph or mode == "sdpa_per_doc":
        AttentionInterface.register(ATTN_NAME, torch.compiler.disable(packed_attention))
    return name
