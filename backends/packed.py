"""Padding-free, prefix-sharing packed scoring: token tries, their batch layout, tree attention.

All log-likelihood requests that share a context become one token trie: the context is a chain of
nodes, each continuation (minus its last token, which is only a target) hangs below the context's
last node, and continuations that start with the same tokens share those nodes. Every node is
computed once; a node's key/value depends only on its ancestors' tokens and its depth, so scoring on
the trie equals scoring each ``context + continuation`` sequence on its own.

Tries are laid out in depth-first pre-order, so node ``j`` is an ancestor-or-self of node ``i``
exactly when ``j <= i < end[j]`` (``end[j]``: one past ``j``'s last descendant). A batch is the
tries of many requests concatenated into one row of ``T`` tokens (no padding in the linear layers);
position ids are node depths. Attention runs per trie: the batch's (length-sorted) tries are cut
into groups of similar length; per group, q/k/v are gathered into ``[G, H, L, D]`` (``G`` tries,
``L`` the group's longest) and one SDPA call applies the ancestor masks ``[G, 1, L, L]``.

:func:`tree_attention` is registered with transformers' ``AttentionInterface`` as
``taskmill_tree`` and not as a mask function, so the model builds no ``T x T`` mask; the layout
reaches it as the ``taskmill_tree`` keyword argument that HF decoders pass through to attention.
Without that argument (generation, plain batches) it defers to HF's SDPA function.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

ATTN_NAME = "taskmill_tree"


@dataclass
class Trie:
    """One context and the continuations scored after it, as a token trie.

    Attributes:
        tokens: Node token ids in depth-first pre-order; the context chain comes first.
        parent: Parent node of each node (-1 for the root).
        depth: Depth of each node (its position id).
        end: One past each node's last descendant (filled by :meth:`finish`).
        scored: ``(request index, [(node, target token), ...])``: the node whose output predicts
            each continuation token.
    """

    tokens: list[int]
    parent: list[int]
    depth: list[int]
    end: list[int] = field(default_factory=list)
    scored: list[tuple[int, list[tuple[int, int]]]] = field(default_factory=list)
    ctx_last: int = -1
    _children: list[dict[int, int]] = field(default_factory=list, repr=False)

    @classmethod
    def from_context(cls, ctx: Sequence[int]) -> "Trie":
        """A trie holding the (non-empty) context ``ctx`` as a chain."""
        n = len(ctx)
        children = [{ctx[i + 1]: i + 1} for i in range(n - 1)] + [{}]
        return cls(list(ctx), list(range(-1, n - 1)), list(range(n)), ctx_last=n - 1, _children=children)

    def add(self, request: int, cont: Sequence[int]) -> None:
        """Hang ``cont`` below the context; its last token is a target only, never a node."""
        node = self.ctx_last
        pairs = [(node, cont[0])]
        for tok, target in zip(cont[:-1], cont[1:]):
            child = self._children[node].get(tok)
            if child is None:
                child = len(self.tokens)
                self.tokens.append(tok)
                self.parent.append(node)
                self.depth.append(self.depth[node] + 1)
                self._children.append({})
                self._children[node][tok] = child
            node = child
            pairs.append((node, target))
        self.scored.append((request, pairs))

    def finish(self) -> "Trie":
        """Renumber the nodes in depth-first pre-order and compute ``end``."""
        order: list[int] = []
        stack = [0]
        while stack:
            node = stack.pop()
            order.append(node)
            # reversed, so the first-inserted child is visited first
            stack.extend(reversed(list(self._children[node].values())))
        new = {old: i for i, old in enumerate(order)}
        self.tokens = [self.tokens[o] for o in order]
        self.depth = [self.depth[o] for o in order]
        self.parent = [new[self.parent[o]] if self.parent[o] >= 0 else -1 for o in order]
        self.scored = [(r, [(new[n], t) for n, t in pairs]) for r, pairs in self.scored]
        self.ctx_last = new[self.ctx_last]
        size = [1] * len(order)
        for i in range(len(order) - 1, 0, -1):  # children come after parents in pre-order
            size[self.parent[i]] += size[i]
        self.end = [i + size[i] for i in range(len(order))]
        self._children = []
        return self

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TrieGroup:
    """Tries of similar length whose attention runs as one SDPA call.

    Attributes:
        gather: ``(G, L)`` packed-row index of each trie slot (0 on padding slots); ``L`` is the
            group's longest trie.
        mask: ``(G, 1, L, L)`` bool, query slot may attend to key slot.
        depth: ``(G, L)`` node depths, for sliding-window models.
        take: ``(2, n)`` (trie, slot) of the group's real nodes in packed-row order.
    """

    gather: Any
    mask: Any
    depth: Any
    take: Any
    _windowed: dict[int, Any] = field(default_factory=dict)

    def window_mask(self, window: int | None) -> Any:
        """The mask, also limited to keys less than ``window`` positions back."""
        if not window:
            return self.mask
        if window not in self._windowed:
            near = (self.depth[:, :, None] - self.depth[:, None, :]) < window  # (G, L, L)
            self._windowed[window] = self.mask & near[:, None]
        return self._windowed[window]


@dataclass
class TreeLayout:
    """Where a batch of tries sits in the packed row, as tensors for :func:`tree_attention`.

    The batch's tries are cut into runs of similar length (:data:`GROUP_RATIO`), one
    :class:`TrieGroup` each, so that attention blocks are padded to their own run's longest trie
    and not to the batch's: attention costs about ``sum(len(trie) ** 2)`` and not
    ``tries * longest ** 2`` (HellaSwag-like batches mix 300-node tries with 20-node ones).
    """

    groups: list[TrieGroup]


# A trie joins the current group while it is at least this fraction of the group's longest trie
# (tries arrive longest first), so padding is at most 1 - GROUP_RATIO ** 2 of a group's cells.
GROUP_RATIO = 0.8


def _group_bounds(lens: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of consecutive tries whose lengths are within :data:`GROUP_RATIO`."""
    bounds: list[tuple[int, int]] = []
    start, lo, hi = 0, lens[0], lens[0]
    for k in range(1, len(lens)):
        n = lens[k]
        if min(lo, n) < GROUP_RATIO * max(hi, n):
            bounds.append((start, k))
            start, lo, hi = k, n, n
        else:
            lo, hi = min(lo, n), max(hi, n)
    bounds.append((start, len(lens)))
    return bounds


def _group(tries: Sequence[Trie], offsets: Sequence[int], device: Any) -> TrieGroup:
    """One :class:`TrieGroup` of ``tries`` that start at ``offsets`` in the packed row."""
    import torch

    lens = [len(t) for t in tries]
    width = max(lens)
    g = len(tries)
    lens_t = torch.tensor(lens)
    slot = torch.arange(width)
    valid = slot[None, :] < lens_t[:, None]  # (G, L)
    gather = torch.where(valid, torch.tensor(offsets)[:, None] + slot[None, :], torch.zeros((), dtype=torch.long))
    end = torch.zeros((g, width), dtype=torch.long)
    depth = torch.zeros((g, width), dtype=torch.long)
    for k, t in enumerate(tries):
        end[k, : lens[k]] = torch.tensor(t.end)
        depth[k, : lens[k]] = torch.tensor(t.depth)
    i = slot[None, :, None]
    j = slot[None, None, :]
    # key j is an ancestor-or-self of query i: j <= i < end[j]; padding queries see themselves only
    ancestor = (j <= i) & (i < end[:, None, :]) & valid[:, None, :]
    mask = ancestor | (torch.eye(width, dtype=torch.bool)[None] & ~valid[:, :, None])
    take = valid.nonzero().T  # (2, n): row-major, so trie by trie, slot by slot = packed-row order
    return TrieGroup(gather.to(device), mask[:, None].to(device), depth.to(device), take.to(device))


def layout(tries: Sequence[Trie], device: Any) -> tuple[Any, Any, TreeLayout]:
    """``(input_ids (1, T), position_ids (1, T), layout)`` of ``tries`` packed into one row."""
    import torch

    ids = torch.tensor([tok for t in tries for tok in t.tokens], dtype=torch.long)
    pos = torch.tensor([d for t in tries for d in t.depth], dtype=torch.long)
    offsets = [0]
    for t in tries:
        offsets.append(offsets[-1] + len(t))
    groups = [_group(tries[a:b], offsets[a:b], device) for a, b in _group_bounds([len(t) for t in tries])]
    return ids[None].to(device), pos[None].to(device), TreeLayout(groups)


def tree_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                   scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """HF attention function: ``[1, H, T, D]`` q / ``[1, Hkv, T, D]`` k, v in; ``[1, T, H, D]`` out."""
    lay: TreeLayout | None = kwargs.get("taskmill_tree")
    if lay is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    import torch
    import torch.nn.functional as F

    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    rep = query.shape[1] // key.shape[1]  # query heads per key/value head (GQA)
    softcap = kwargs.get("softcap")
    outs = []
    for grp in lay.groups:
        mask = grp.window_mask(kwargs.get("sliding_window"))
        # [1, H, T, D] -> [H, G, L, D] -> [G, H, L, D]
        q, k, v = (x[0][:, grp.gather].transpose(0, 1) for x in (query, key, value))
        if softcap:
            # logit soft-capping (Gemma 2) is outside SDPA: explicit attention
            k, v = (x.repeat_interleave(rep, dim=1) for x in (k, v))
            scores = torch.tanh(q @ k.transpose(-1, -2) * scale / softcap) * softcap
            scores = scores.masked_fill(~mask, float("-inf"))
            out = torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=rep > 1)
        # [G, H, L, D] -> [G, L, H, D] -> the group's real slots [n, H, D], in packed-row order
        outs.append(out.transpose(1, 2)[grp.take[0], grp.take[1]])
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out[None], None


@contextlib.contextmanager
def tree_attention_on(model: Any) -> Iterator[None]:
    """Run ``model`` (a transformers model) with :func:`tree_attention` inside the block."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, tree_attention)
    configs = [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]
    configs = list({id(c): c for c in configs}.values())
    saved = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        for c, name in zip(configs, saved):
            c._attn_implementation = name
