"""The CUDA compile paths, checked on the CPU: the compiled cross-entropy part computes the eager
math, and the varlen attention path traces into a decoder layer's graph without a graph break.

The varlen flash kernel runs only on CUDA; for the tracing test a per-document SDPA kernel is
registered as the custom op's CPU implementation (a stand-in, named so). Dynamo traces with the
op's fake implementation either way, so graph breaks show up the same as on CUDA.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_compiled_softmax_part_matches_eager(monkeypatch):
    from taskmill.trainer import loss as L

    # aot_eager: the same dynamo + AOTAutograd tracing as inductor, without a C++ build in the test
    monkeypatch.setitem(L._COMPILED, "fn", torch.compile(L.softmax_grad, backend="aot_eager", dynamic=True))
    torch.manual_seed(0)
    n, h, v = 300, 32, 1000
    hid = torch.randn(n, h, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, h, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, v, (n,))
    ref = L.reference_cross_entropy(hid, w, y, 1 / 7)
    gh, gw = torch.autograd.grad(ref * 3, (hid, w))
    for chunk in (128, 300):  # ragged last chunk, then one chunk: dynamic rows, no recompile needed
        out = L.fused_linear_cross_entropy(hid, w, y, 1 / 7, chunk, compiled=True)
        a, b = torch.autograd.grad(out * 3, (hid, w))
        assert float((out - ref).detach().abs() / ref.detach().abs()) < 1e-12
        assert float((a - gh).norm() / gh.norm()) < 1e-12
        assert float((b - gw).norm() / gw.norm()) < 1e-12


def _cpu_stand_in_kernel() -> None:
    from torch.nn.attention.varlen import _varlen_attn

    from taskmill.trainer import attention

    @_varlen_attn.register_kernel("cpu")
    def _per_doc(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, scale=None,
                 window_size=None, *args, **kwargs):
        out = attention._per_doc_sdpa(query, key.to(query.dtype), value.to(query.dtype), cu_seq_q, scale)
        return out, torch.zeros(query.shape[1], query.shape[0]), torch.zeros(2, dtype=torch.uint64)


@pytest.mark.parametrize("model_type,gqa_flag", [("qwen2", False), ("llama", True)])
def test_varlen_attention_traces_without_graph_break(tm, monkeypatch, model_type, gqa_flag):
    pytest.importorskip("torch.nn.attention.varlen")
    from taskmill.trainer import attention
    from taskmill.trainer.config import ModelConfig
    from taskmill.trainer.data import make_micro_batch
    from taskmill.trainer.engine import batch_inputs
    from taskmill.trainer.model import build_model, decoder_layers

    _cpu_stand_in_kernel()
    name = attention.register_for_compile("auto", in_graph=True)
    monkeypatch.setitem(attention._MODE, "gqa_flag", gqa_flag)  # torch 2.11 has no enable_gqa: repeat KV
    monkeypatch.setattr(attention, "use_varlen", lambda device_type, mode: True)
    lm = build_model(ModelConfig(arch=tm.tiny_arch(200, model_type=model_type)), name, 0)
    inp = batch_inputs(make_micro_batch(tm.random_docs(3, vocab=200, seed=1)), torch.device("cpu"))
    emb = lm.model.embed_tokens(inp["input_ids"])
    kw = dict(position_embeddings=lm.model.rotary_emb(emb, inp["position_ids"]), position_ids=inp["position_ids"],
              cu_seq_lens_q=inp["cu_seqlens"], cu_seq_lens_k=inp["cu_seqlens"], max_length_q=inp["max_seqlen"],
              max_length_k=inp["max_seqlen"], attention_mask=None, use_cache=False)
    layer = decoder_layers(lm)[0]
    torch._dynamo.reset()
    explained = torch._dynamo.explain(layer)(emb, **kw)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
    attention.register("auto")
