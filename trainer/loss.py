"""Fused, chunked output-head cross-entropy.

Only target positions (completion tokens) go through the output head, in chunks of
``chunk`` rows. Each chunk's logits ``[chunk, V]`` live only inside the forward pass: the gradients
with respect to the hidden states and the head weight are computed there and kept (``[N, H]`` and
``[V, H]``), so the backward pass is a copy and the ``N x V`` logits never exist at once. The loss
is ``sum(token CE) * scale`` where the caller passes ``scale = 1 / (global target count)``.

With ``compiled=True`` the softmax part of each chunk (upcast, log-sum-exp, ``softmax - onehot``,
scale, downcast) is one ``torch.compile``d function, so the ``[chunk, V]`` logits are read a few
times by fused kernels instead of going through about seven full fp32 passes (a 4096-row chunk of
a 152k vocabulary is 2.5 GB in fp32). The math is the same; only the kernels differ.
"""

from __future__ import annotations

from typing import Any


def softmax_grad(logits: Any, y: Any, scale: Any) -> tuple[Any, Any]:
    """CE sum and ``(softmax - onehot) * scale`` of one chunk (the part worth compiling).

    Args:
        logits: ``[C, V]`` output-head logits (bf16 on CUDA).
        y: ``[C]`` target ids.
        scale: 0-dim float tensor (a tensor, so a new step's scale is no recompile).

    Returns:
        (CE sum as a >= fp32 scalar, ``[C, V]`` gradient of ``scale * CE sum`` in ``logits.dtype``).
    """
    import torch

    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    lse = torch.logsumexp(x, dim=-1)  # [C]
    loss = (lse - x.gather(1, y[:, None])[:, 0]).sum()
    hit = torch.arange(x.shape[1], device=x.device)[None, :] == y[:, None]  # [C, V] onehot, never stored
    grad = (torch.exp(x - lse[:, None]) - hit.to(x.dtype)) * scale
    return loss, grad.to(logits.dtype)


_COMPILED: dict[str, Any] = {}


def compiled_softmax_grad() -> Any:
    """:func:`softmax_grad` through ``torch.compile`` (dynamic chunk rows), built once per process."""
    if "fn" not in _COMPILED:
        import torch

        _COMPILED["fn"] = torch.compile(softmax_grad, dynamic=True)
    return _COMPILED["fn"]


def _chunk_grads(h: Any, w: Any, y: Any, scale: float, need_h: bool, need_w: bool,
                 scale_t: Any = None) -> tuple[Any, Any, Any]:
    """CE sum and its gradients for one chunk: h ``[C, H]``, w ``[V, H]``, y ``[C]``.

    ``scale_t`` (0-dim tensor holding ``scale``) selects the compiled softmax part.
    """
    import torch

    logits = h @ w.t()
    if scale_t is not None and (need_h or need_w):
        loss, grad = compiled_softmax_grad()(logits, y, scale_t)
        grad = grad.to(h.dtype)
        return loss, (grad @ w if need_h else None), (grad.t() @ h if need_w else None)
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
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, scale: float, chunk: int, dtype: Any,
                    compiled: bool) -> Any:
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            # torch.full launches a fill kernel: no host-to-device copy, no sync
            acc = torch.promote_types(dtype, torch.float32)
            scale_t = torch.full((), scale, dtype=acc, device=hidden.device) if compiled else None
            h_all = hidden.to(dtype)
            w = weight.to(dtype)
            total = torch.zeros((), dtype=torch.promote_types(dtype, torch.float32), device=hidden.device)
            grad_h = torch.empty_like(h_all) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
            for s in range(0, h_all.shape[0], chunk):
                loss, gh, gw = _chunk_grads(h_all[s:s + chunk], w, targets[s:s + chunk], scale, need_h, need_w,
                                            scale_t)
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
            return gh, gw, None, None, None, None, None

    return FusedLinearCE


def fused_linear_cross_entropy(hidden: Any, weight: Any, targets: Any, scale: float, chunk: int,
                               dtype: Any | None = None, compiled: bool = False) -> Any:
    """``scale * sum_i CE(hidden[i] @ weight.T, targets[i])`` without materialising all logits.

    Args:
        hidden: ``[N, H]`` hidden states at target positions.
        weight: ``[V, H]`` output-head weight.
        targets: ``[N]`` token ids (no ignore index: select positions first).
        scale: Multiplier (1 / global target count).
        chunk: Rows per chunk.
        dtype: Matmul dtype (defaults to ``hidden.dtype``).
        compiled: Run each chunk's softmax part through ``torch.compile`` (CUDA training).

    Returns:
        Scalar float32 loss; its backward returns the precomputed gradients.
    """
    if _FusedLinearCE.fn is None:
        _FusedLinearCE.fn = _make_fn()
    return _FusedLinearCE.fn.apply(hidden, weight, targets, float(scale), int(chunk), dtype or hidden.dtype,
                                    bool(compiled))


def reference_cross_entropy(hidden: Any, weight: Any, targets: Any, scale: float) -> Any:
    """Plain (unfused) version, for tests."""
    import torch
    import torch.nn.functional as F

    logits = hidden @ weight.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, reduction="sum") * scale
