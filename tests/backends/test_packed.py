"""Packed prefix-sharing scoring equals the unpacked per-request computation; fast greedy generation
equals the simple reference loop (tiny random models with the real SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest

from taskmill.backends.hf import HFBackend, reference_loglikelihood
from taskmill.backends.packed import Trie
from taskmill.backends.requests import GenerateRequest, LoglikelihoodRequest, encode_pair


def test_trie_shares_context_and_common_continuation_tokens():
    trie = Trie.from_context([5, 6, 7])
    trie.add(0, [1, 2, 3])
    trie.add(1, [1, 2, 4, 9])
    trie.add(2, [8])
    trie.finish()
    # context 3 + shared [1, 2] + [4] (the last token of each continuation is only a target)
    assert len(trie) == 6
    for i in range(len(trie)):
        ancestors = set()
        node = i
        while node >= 0:
            ancestors.add(node)
            node = trie.parent[node]
        # pre-order: j is an ancestor-or-self of i exactly when j <= i < end[j]
        assert ancestors == {j for j in range(len(trie)) if j <= i < trie.end[j]}
        assert trie.depth[i] == len(ancestors) - 1
    by_req = dict(trie.scored)
    assert [t for _, t in by_req[1]] == [1, 2, 4, 9]
    assert by_req[0][0][0] == by_req[1][0][0] == by_req[2][0][0] == trie.ctx_last
    assert by_req[0][1][0] == by_req[1][1][0]  # both predict their 2nd token from the shared node "1"


def test_layout_groups_tries_of_similar_length():
    """Attention blocks are padded per group of similar-length tries, and the groups' real slots
    give back every packed-row position once, in order."""
    import torch

    from taskmill.backends.packed import GROUP_RATIO, _group_bounds, layout

    assert _group_bounds([300, 280, 100, 90, 20]) == [(0, 2), (2, 4), (4, 5)]
    assert _group_bounds([5, 5, 5]) == [(0, 3)]
    tries = []
    for n in (40, 35, 9, 8, 2):
        t = Trie.from_context(list(range(1, n)))
        t.add(0, [7, 8])
        tries.append(t.finish())
    ids, pos, lay = layout(tries, "cpu")
    assert ids.shape == pos.shape == (1, sum(len(t) for t in tries))
    assert [g.gather.shape for g in lay.groups] == [(2, 40), (2, 9), (1, 2)]
    flat = torch.cat([g.gather[g.take[0], g.take[1]] for g in lay.groups])
    assert flat.tolist() == list(range(ids.shape[1]))
    for g in lay.groups:  # padding slots stay under 1 - GROUP_RATIO of a group's slots
        assert g.take.shape[1] >= GROUP_RATIO * g.gather.numel()


# continuations that share leading tokens, one that is a prefix of another, single-token ones
SHARED = [" the cat", " the cat sat on the mat", " the dog", " a", " the cat sat", "\n\nNo"]
CONTEXTS = ["Question: where is the cat?\nAnswer:", "Once", "Long context with many words " * 9, ""]


@pytest.mark.parametrize(("budget", "cells"), [(8, 1 << 24), (64, 1 << 24), (4096, 1 << 24), (4096, 2000)])
def test_packed_equals_unpacked_reference(tiny_model, smol_tokenizer, budget, cells):
    reqs = [LoglikelihoodRequest(c, k) for c in CONTEXTS for k in SHARED]
    backend = HFBackend(tiny_model, smol_tokenizer, batch_size=64, max_batch_tokens=budget, head_chunk=7)
    backend.max_attention_cells = cells
    got = backend.loglikelihood(reqs)
    import torch

    for req, res in zip(reqs, got):
        ctx, cont = encode_pair(smol_tokenizer, req.context, req.continuation)
        ctx = ctx or [smol_tokenizer.bos_token_id]
        ids = torch.tensor([ctx + cont])
        with torch.inference_mode():
            logp = torch.log_softmax(tiny_model(input_ids=ids).logits[0].float(), -1)[len(ctx) - 1 : -1]
        ref = float(logp.gather(1, torch.tensor(cont)[:, None]).sum())
        assert res.logprob == pytest.approx(ref, abs=1e-4), req
        assert res.is_greedy == bool((logp.argmax(-1) == torch.tensor(cont)).all()), req
        assert res.n_tokens == len(cont)
    # one trie per distinct context, whatever the budget
    assert backend.context_rows == len(CONTEXTS)
    if budget == 4096:
        # everything in one forward unless the attention-block bound cuts the batch
        assert backend.calls == (1 if cells > 2000 else 2)


def test_sliding_window_and_softcap_models(smol_tokenizer):
    """Per-layer sliding windows and attention logit soft-capping (a tiny Gemma 2) follow the model."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=5,
                       max_position_embeddings=256, attn_logit_softcapping=5.0, final_logit_softcapping=3.0)
    model = Gemma2ForCausalLM(cfg).eval()
    reqs = [LoglikelihoodRequest("A fairly long context so that the window matters here", k) for k in SHARED[:3]]
    got = HFBackend(model, smol_tokenizer).loglikelihood(reqs)
    for req, res in zip(reqs, got):
        assert res.logprob == pytest.approx(reference_loglikelihood(model, smol_tokenizer, req), abs=1e-4)


def _reference_generate(model, tokenizer, req: GenerateRequest) -> str:
    """The simple loop: one full forward per new token, no cache, no batching."""
    import torch

    from taskmill.backends.base import truncate_at_stop

    ids = tokenizer.encode(req.context, add_special_tokens=False)
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(req.max_tokens):
            nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            new.append(nxt)
    return truncate_at_stop(tokenizer.decode(new, skip_special_tokens=True), req.stop)


def test_generation_with_stops_and_early_exit_equals_reference_loop(tiny_model, smol_tokenizer):
    prompts = ["Once upon a time", "Q: colour of the sky?\nA:", "x", "The list: 1, 2, 3,"]
    backend = HFBackend(tiny_model, smol_tokenizer, batch_size=4)
    free = backend.generate([GenerateRequest(p, (), 12) for p in prompts])
    # stops taken from the model's own output (a random model says nothing predictable), so rows
    # really stop early, at different steps; one row has none, one a stop it never produces
    stops = [(free[0][2:5],), (free[1][-3:], "zzqq"), (), ("zzqq",)]
    reqs = [GenerateRequest(p, tuple(s for s in st if s), n) for p, st, n in zip(prompts, stops, (12, 12, 5, 12))]
    backend.calls = 0
    got = backend.generate(reqs)
    for req, text in zip(reqs, got):
        assert text == _reference_generate(tiny_model, smol_tokenizer, req), req
    # per-row exit: the batch ran no longer than its longest-running row (12 new tokens)
    assert backend.calls <= 12
    # a batch whose rows all stop early ends early (one forward per new token)
    backend.calls = 0
    [cut] = backend.generate([reqs[0]])
    assert cut == free[0][: free[0].find(reqs[0].stop[0])]
    assert backend.calls < 12
