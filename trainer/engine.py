"""The packed forward pass (decoder + fused loss) as one module, and FLOP accounting for MFU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskmill.trainer.data import MicroBatch


def _module_base() -> type:
    import torch

    return torch.nn.Module


class PackedLoss(_module_base()):  # type: ignore[misc]
    """``forward(batch tensors) -> scaled loss``; this is what DDP / FSDP2 wrap.

    Args:
        lm: The ``*ForCausalLM`` module (LoRA layers already injected when training an adapter).
        chunk: Target rows per fused cross-entropy chunk.
        amp_dtype: Autocast dtype (``torch.bfloat16``) or None for full precision.
        compile_loss: Run the cross-entropy's softmax part through ``torch.compile`` (CUDA).
    """

    def __init__(self, lm: Any, chunk: int, amp_dtype: Any | None, compile_loss: bool = False) -> None:
        super().__init__()
        self.lm = lm
        self.chunk = chunk
        self.amp_dtype = amp_dtype
        self.compile_loss = compile_loss

    def forward(self, input_ids: Any, position_ids: Any, cu_seqlens: Any, max_seqlen: int,
                target_pos: Any, target_ids: Any, scale: float) -> Any:
        """Loss of one packed row, ``sum(CE over targets) * scale``.

        Shapes: ``input_ids``/``position_ids`` ``[1, T]``, ``cu_seqlens`` ``[n_docs + 1]``,
        ``target_pos``/``target_ids`` ``[N]`` (positions whose next token is a target).
        """
        import torch

        from taskmill.trainer.loss import fused_linear_cross_entropy

        device_type = input_ids.device.type
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.lm.model(input_ids=input_ids, position_ids=position_ids,
                                cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens,
                                max_length_q=max_seqlen, max_length_k=max_seqlen, use_cache=False)
        hidden = out.last_hidden_state[0].index_select(0, target_pos)  # [N, H]
        dtype = self.amp_dtype or hidden.dtype
        return fused_linear_cross_entropy(hidden, self.lm.lm_head.weight, target_ids, scale, self.chunk, dtype,
                                          compiled=self.compile_loss and torch.is_grad_enabled())


def batch_inputs(mb: MicroBatch, device: Any) -> dict[str, Any]:
    """Keyword arguments of :meth:`PackedLoss.forward` for one micro-batch (``scale`` added later)."""
    import torch

    tgt = mb.targets
    pos = torch.nonzero(tgt != -100, as_tuple=True)[0]
    cuda = device.type == "cuda"

    def send(t: Any) -> Any:
        # page-locked source: the copy is queued behind the running step and the host moves on
        return t.pin_memory().to(device, non_blocking=True) if cuda else t

    return {
        "input_ids": send(mb.input_ids),
        "position_ids": send(mb.position_ids),
        "cu_seqlens": send(mb.cu_seqlens),
        "max_seqlen": mb.max_seqlen,
        "target_pos": send(pos),
        "target_ids": send(tgt[pos]),
    }


@dataclass
class FlopModel:
    """FLOPs of one training step from the model's shape.

    Attributes:
        layer_matmul_params: Weights of the linear layers inside the decoder blocks.
        head_params: Output-head weight (``V x H``).
        attn_width: Query heads x head dim.
        n_layers: Decoder blocks.
        lora_params: LoRA weights (0 for full fine-tuning).
        full: Whether base weights get gradients (full fine-tuning).
    """

    layer_matmul_params: int
    head_params: int
    attn_width: int
    n_layers: int
    lora_params: int
    full: bool

    def step_flops(self, doc_lengths: list[int], n_targets: int) -> float:
        """FLOPs the step needs: decoder on every token, head on target tokens only.

        Full fine-tuning counts 6 per weight per token (forward 2, backward 4); LoRA 4 per frozen
        weight (no weight gradient) and 6 per adapter weight. Causal attention counts
        ``2 * L^2 * width`` forward per document and layer, three times that for training.
        """
        tokens = sum(doc_lengths)
        per_weight = 6 if self.full else 4
        dense = per_weight * self.layer_matmul_params * tokens + 6 * self.lora_params * tokens
        head = per_weight * self.head_params * n_targets
        attn = 6 * self.n_layers * self.attn_width * sum(L * L for L in doc_lengths)
        return float(dense + head + attn)

    def step_flops_6n(self, doc_lengths: list[int]) -> float:
        """The common convention: 6 x (decoder + head weights) per token, plus causal attention."""
        tokens = sum(doc_lengths)
        attn = 6 * self.n_layers * self.attn_width * sum(L * L for L in doc_lengths)
        return float(6 * (self.layer_matmul_params + self.head_params) * tokens + attn)


def flop_model(lm: Any, lora: bool) -> FlopModel:
    """Count the matmul weights of a (possibly LoRA-wrapped) ``*ForCausalLM``."""
    import torch

    base, adapters = 0, 0
    for name, mod in lm.model.layers.named_modules():
        if isinstance(mod, torch.nn.Linear):
            if "lora_" in name:
                adapters += mod.weight.numel()
            else:
                base += mod.weight.numel()
    cfg = lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return FlopModel(base, lm.lm_head.weight.numel(), cfg.num_attention_heads * head_dim,
                     cfg.num_hidden_layers, adapters, full=not lora)


def detect_peak_flops(device: Any, configured_tflops: float) -> float | None:
    """Dense bf16 peak of the accelerator in FLOP/s (None when unknown, e.g. on CPU)."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    for key, tflops in (("H200", 989.5), ("H100", 989.5), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0)):
        if key in name:
            return tflops * 1e12
    return None
