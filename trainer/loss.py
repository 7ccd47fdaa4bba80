"""Fused, chunked output-head cross-entropy.

Only target positions (completion tokens) go through the output head, in chunks of
``chunk`` rows. Each chunk's logits ``[chunk, V]`` live only inside the forward pass: the gradients
with respect to the hidden states and the head weight are computed there and kept (``[N, H]`` and
``[V, H]``), so the backward pass is a copy and the ``N x V`` logits never exist at once. The loss
is ``sum(token CE) * scale`` where the caller passes ``scale = 1 / (global target count)``.
"""

from __future__ import annotations

from typing import Any


def _chunk_grads(h: Any, w: Any, y: Any, scale: float, need_h: bool, need_w: bool) -> tuple[Any, Any, Any]:
    """CE sum and its gradients for one chunk: h ``[C, H]``, w ``[V, H]``, y ``[C]``."""
    import torch

    logits = h @ w.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # [C, V]; >= fp32 for the softmax
    lse = torch.logsumexp(logits, dim=-1)  # [C]
    loss = (lse - logits.gather(1, y[:, None])[:, 0]).sum()
    if not (need_h or need_w):
        return loss, None, None
    # d(sum CE)/d logits = softmax - onehot, scaled; reuse the logits buffer
    grad = logits.sub_(lse[:, None]).exp_()
    grad[torch.arange(y.shape[0], device=y.device), y] -= 1.0
    grad = grad.mul_(scale).to(h.dtype)
    grad_h = grad @ w if need_h else None  # [C, H]
    grad_w = grad.t() @ h if need_w else None  # [V, H]
    return loss, grad_h, grad_w


class _FusedLinearCE:
    """Namespace for the autograd function (built lazily so importing needs no torch)."""

    fn: Any = None


def _make_fn() -> Any:
    import torch

    class FusedLinearCE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, scale: float, chunk: int, dtype: Any) -> Any:
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            h_all = hidden.to(dtype)
            w = weight.to(dtype)
            total = torch.zeros((), dtype=torch.promote_types(dtype, torch.float32), device=hidden.device)
            grad_h = torch.empty_like(h_all) if need_h else None
            acc = torch.promote_types(dtype, torch.float32)
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
            for s in range(0, h_all.shape[0], chunk):
                loss, gh, gw = _chunk_grads(h_all[s:s + chunk], w, targets[s:s + chunk], scale, need_h, need_w)
                total += loss
                if need_h:
                    grad_h[s:s + chunk] = gh
                if need_w:
                    grad_w += gw
            empty = torch.empty(0)
            ctx.save_for_backward(grad_h if need_h else empty, grad_w if need_w else empty)
            ctx.need_h, ctx.need_w, ctx.h_dtype, ctx.w_dtype = need_h, need_w, hidden.dtype, weight.dtype
            return total * scale

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:
            grad_h, grad_w = ctx.saved_tensors
            gh = (grad_h * grad_out).to(ctx.h_dtype) if ctx.need_h else None
            gw = (grad_w * grad_out).to(ctx.w_dtype) if ctx.need_w else None
            return gh, gw, None, None, None, None

    return FusedLinearCE


def fused_linear_cross_entropy(hidden: Any, weight: Any, targets: Any, scale: float, chunk: int,
                               dtype: Any | None = None) -> Any:
    """``scale * sum_i CE(hidden[i] @ weight.T, targets[i])`` without materialising all logits.

    Args:
        hidden: ``[N, H]`` hidden states at target positions.
        weight: ``[V, H]`` output-head weight.
        targets: ``[N]`` token ids (no ignore index: select positions first).
        scale: Multiplier (1 / global target count).
        chunk: Rows per chunk.
        dtype: Matmul dtype (defaults to ``hidden.dtype``).

    Returns:
        Scalar float32 loss; its backward returns the precomputed gradients.
    """
    if _FusedLinearCE.fn is None:
        _FusedLinearCE.fn = _make_fn()
    return _FusedLinearCE.fn.apply(hidden, weight, targets, float(scale), int(chunk), dtype or hidden.dtype)


def reference_cross_entropy(hidden: Any, weight: Any, targets: Any, scale: float) -> Any:
    """Plain (unfused) version, for tests."""
    import torch
    import torch.nn.functional as F

    logits = hidden @ weight.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, reduction="sum") * scale
