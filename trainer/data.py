"""Corpus reading, tokenisation with loss masks, and step/micro-batch planning.

Joining prompt and completion: when the tokenizer has a chat template, the row's ``messages`` are
rendered with it; the prompt part is the rendering of the user turn with the generation prompt,
and the loss covers everything after it (the assistant text and its end-of-turn tokens). Without
a chat template the document is ``prompt + "\\n"`` (with the tokenizer's BOS if it adds one)
followed by ``completion`` + EOS, tokenised as two pieces so the boundary never merges.

Packing is planned in two stages so a step's gradient is independent of how it is computed:
documents (shuffled per epoch with the seed) fill optimizer steps of ``tokens_per_step`` tokens in
order; each step's documents are then packed best-fit-decreasing into micro-batches of
``micro_batch_tokens`` and dealt out to ranks. Loss is normalised by the step's global count of
target tokens, so micro-batch size, accumulation and world size leave the step's gradient unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from taskmill.errors import DataError
from taskmill.fileio import corpus_file, read_jsonl


@dataclass(frozen=True)
class Document:
    """One tokenised training example.

    Attributes:
        ids: Token ids of prompt and completion.
        loss_mask: 1 where the token is a target (completion), 0 on prompt tokens.
    """

    ids: tuple[int, ...]
    loss_mask: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_targets(self) -> int:
        """Tokens predicted with loss (a target token at position 0 has no predictor)."""
        return sum(self.loss_mask[1:])


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Read corpus rows (prompt/completion or messages) with plain ``json``.

    Raises:
        DataError: missing file, bad JSON, or a row without prompt/completion or messages.
    """
    return read_jsonl(
        corpus_file(path), _row_ok,
        "expected string 'prompt' and 'completion' or a 'messages' list ending with an assistant turn",
        missing="corpus file not found (expected corpus.jsonl or a folder holding it)", empty="corpus has no rows",
    )


def _row_ok(row: Any) -> bool:
    if not isinstance(row, dict):
        return False
    if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return True
    msgs = row.get("messages")
    return isinstance(msgs, list) and len(msgs) >= 2 and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant"


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    if row.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]


def _chat_pieces(tokenizer: Any, row: dict[str, Any]) -> tuple[str, str]:
    """(prompt text, completion text) rendered with the chat template."""
    msgs = _messages(row)
    prompt = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    if not full.startswith(prompt):
        raise DataError("chat template rendering of the conversation does not start with the rendering "
                        "of its prompt; cannot place the loss mask", row=row.get("id"))
    return prompt, full[len(prompt):]


def _plain_pieces(tokenizer: Any, row: dict[str, Any]) -> tuple[str, str]:
    msgs = _messages(row)
    prompt = "\n\n".join(m["content"] for m in msgs[:-1])
    return prompt + "\n", msgs[-1]["content"]


def tokenize_rows(tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int) -> list[Document]:
    """Tokenise rows into :class:`Document`s with loss on completion tokens only.

    Documents longer than ``max_length`` keep their last ``max_length`` tokens (the prompt is cut
    from the left, so the completion survives).
    """
    chat = getattr(tokenizer, "chat_template", None) is not None
    pieces = [(_chat_pieces if chat else _plain_pieces)(tokenizer, r) for r in rows]
    prompts = tokenizer([p for p, _ in pieces], add_special_tokens=not chat)["input_ids"]
    comps = tokenizer([c for _, c in pieces], add_special_tokens=False)["input_ids"]
    eos = [] if chat or tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    docs = []
    for p, c in zip(prompts, comps):
        c = list(c) + eos
        ids, mask = (list(p) + c)[-max_length:], ([0] * len(p) + [1] * len(c))[-max_length:]
        docs.append(Document(tuple(ids), tuple(mask)))
    return docs


def load_documents(tokenizer: Any, path: str | Path, max_length: int) -> list[Document]:
    """Read and tokenise a corpus."""
    return tokenize_rows(tokenizer, read_corpus(path), max_length)


# --- planning -------------------------------------------------------------------------------------


def plan_epoch(lengths: Sequence[int], tokens_per_step: int, seed: int, epoch: int, shuffle: bool) -> list[list[int]]:
    """Assign document indices to optimizer steps for one epoch.

    Documents are visited in a seeded order and fill each step up to ``tokens_per_step``; a step
    closes when the next document would not fit.
    """
    order = list(range(len(lengths)))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    steps: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if current and used + lengths[i] > tokens_per_step:
            steps.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        steps.append(current)
    return steps


def pack_micro_batches(doc_ids: Sequence[int], lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Best-fit-decreasing packing of documents into bins of at most ``budget`` tokens.

    Ties break on document index, so the result is deterministic.
    """
    bins: list[list[int]] = []
    free: list[int] = []
    for i in sorted(doc_ids, key=lambda d: (-lengths[d], d)):
        best = -1
        for b, room in enumerate(free):
            if lengths[i] <= room and (best < 0 or room < free[best]):
                best = b
        if best < 0:
            bins.append([i])
            free.append(budget - lengths[i])
        else:
            bins[best].append(i)
            free[best] -= lengths[i]
    return bins


def deal_to_ranks(bins: Sequence[list[int]], lengths: Sequence[int], world: int) -> list[list[list[int]]]:
    """Give each rank a list of micro-batches, balancing tokens (largest first to the lightest rank)."""
    ranks: list[list[list[int]]] = [[] for _ in range(world)]
    load = [0] * world
    for b in sorted(bins, key=lambda b: (-sum(lengths[d] for d in b), b[0])):
        r = min(range(world), key=lambda k: (load[k], k))
        ranks[r].append(b)
        load[r] += sum(lengths[d] for d in b)
    return ranks


def step_target_count(step: Iterable[int], docs: Sequence[Document]) -> int:
    """Target tokens of one step (the loss denominator)."""
    return sum(docs[i].n_targets for i in step)


# --- tensors --------------------------------------------------------------------------------------


@dataclass
class MicroBatch:
    """One packed forward pass.

    Attributes:
        input_ids: ``[1, T]`` token ids of the documents laid end to end.
        position_ids: ``[1, T]`` positions restarting at 0 for each document.
        targets: ``[T]`` next-token targets, -100 on prompt tokens and each document's last token.
        cu_seqlens: ``[n_docs + 1]`` int32 document boundaries.
        max_seqlen: Longest document.
        n_targets: Targets in this micro-batch.
        doc_lengths: Lengths of the documents.
    """

    input_ids: Any
    position_ids: Any
    targets: Any
    cu_seqlens: Any
    max_seqlen: int
    n_targets: int
    doc_lengths: list[int]


def make_micro_batch(docs: Sequence[Document]) -> MicroBatch:
    """Lay documents end to end with per-document positions and shifted, masked targets."""
    import torch

    lengths = [len(d) for d in docs]
    ids = torch.tensor([t for d in docs for t in d.ids], dtype=torch.long)  # [T]
    mask = torch.tensor([m for d in docs for m in d.loss_mask], dtype=torch.bool)  # [T]
    cu = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0)  # [n_docs + 1]
    starts = torch.repeat_interleave(cu[:-1], torch.tensor(lengths))  # [T] start of each token's document
    pos = torch.arange(ids.numel()) - starts
    # target for position t is token t+1 when that is a completion token of the same document
    nxt_ids, nxt_mask = ids.roll(-1), mask.roll(-1)
    nxt_mask[cu[1:] - 1] = False  # a document's last token predicts nothing
    targets = torch.where(nxt_mask, nxt_ids, torch.full_like(ids, -100))
    return MicroBatch(
        input_ids=ids[None], position_ids=pos[None], targets=targets,
        cu_seqlens=cu.to(torch.int32), max_seqlen=max(lengths),
        n_targets=sum(d.n_targets for d in docs), doc_lengths=lengths,
    )
