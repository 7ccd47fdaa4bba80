"""Corpus reading, tokenisation with loss masks, and step/micro-batch planning.

Joining prompt and completion: when the tokenizer has a chat template, the row's ``messages`` are
rendered with it; the prompt part is the rendering of the user turn with the generation prompt,
and the loss covers everything after it (the assistant text and its end-of-turn tokens). Without
a chat template the document is ``prompt + "\\n"`` (with the tokenizer's BOS if it adds one)
followed by ``completion`` + EOS. As in TRL's ``SFTTrainer``, the prompt and the whole document
are tokenised separately and the loss starts where their ids first differ, so the ids are those
TRL trains on when it is given the same prompt and completion (README, "Training with TRL").

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

    Prompt and whole document are tokenised as two texts, as TRL's ``SFTTrainer`` does: the
    document's ids are the tokenisation of the whole text (so nothing merges differently from
    inference), and the completion starts where the prompt's ids and the document's ids first
    differ. Documents longer than ``max_length`` keep their last ``max_length`` tokens (the prompt
    is cut from the left, so the completion survives); :func:`truncation_report` counts them.
    """
    return [doc for doc, _ in _tokenize(tokenizer, rows, max_length)]


def _tokenize(tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int) -> list[tuple[Document, int]]:
    """(document, untruncated length) per row; see :func:`tokenize_rows`."""
    return [(to_document(full, n, max_length), len(full)) for full, n in tokenize_full(tokenizer, rows)]


def tokenize_full(tokenizer: Any, rows: Sequence[dict[str, Any]]) -> list[tuple[list[int], int]]:
    """(ids of the whole document, number of prompt ids) per row, untruncated."""
    chat = getattr(tokenizer, "chat_template", None) is not None
    pieces = [(_chat_pieces if chat else _plain_pieces)(tokenizer, r) for r in rows]
    # without a chat template the EOS goes in as text, as TRL appends it, then tokenises
    eos = "" if chat or tokenizer.eos_token is None else tokenizer.eos_token
    special = not chat  # a chat template writes its own special tokens
    prompts = tokenizer([p for p, _ in pieces], add_special_tokens=special)["input_ids"]
    fulls = tokenizer([p + c + ("" if eos and c.endswith(eos) else eos) for p, c in pieces],
                      add_special_tokens=special)["input_ids"]
    return [(list(full), _common_prefix(p, full)) for p, full in zip(prompts, fulls)]


def to_document(full: Sequence[int], n_prompt: int, max_length: int) -> Document:
    """A document of ``full`` ids with loss after the first ``n_prompt``, keeping its last ``max_length``."""
    mask = [0] * n_prompt + [1] * (len(full) - n_prompt)
    return Document(tuple(full[-max_length:]), tuple(mask[-max_length:]))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading ids ``a`` and ``b`` share (where the completion starts)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class DataReport:
    """What tokenisation did to a corpus, reported before training.

    Attributes:
        rows: Rows read.
        truncated: Documents longer than ``max_length`` (their start was cut).
        prompt_lost: Truncated documents that kept no prompt token at all.
        no_target: Rows with nothing to learn: an empty (or blank) completion, or no target token.
        skipped: Rows left out (``no_target`` rows under ``data.no_target: skip``).
    """

    rows: int
    truncated: int
    prompt_lost: int
    no_target: int
    skipped: int

    def line(self, name: str, max_length: int) -> str:
        """One line for the log: counts and shares."""
        pct = lambda n: f"{100 * n / max(self.rows, 1):.1f}%"  # noqa: E731
        return (f"{name}: {self.rows} rows; {self.truncated} ({pct(self.truncated)}) longer than "
                f"data.max_length={max_length} kept their last tokens, {self.prompt_lost} of them with no prompt "
                f"token left; {self.no_target} with no target (empty completion); {self.skipped} skipped")


def _no_target(row: dict[str, Any], doc: Document) -> bool:
    msgs = _messages(row)
    return not str(msgs[-1]["content"]).strip() or doc.n_targets == 0


def load_documents(tokenizer: Any, path: str | Path, max_length: int,
                   no_target: str = "error") -> tuple[list[Document], DataReport]:
    """Read and tokenise a corpus, counting truncation and rows without a target.

    Args:
        tokenizer: The model's tokenizer.
        path: ``corpus.jsonl`` or its folder.
        max_length: Longest document kept (longer ones keep their end).
        no_target: ``error`` (a row with an empty completion stops the run, naming the row) or
            ``skip`` (such rows are left out and counted).

    Raises:
        DataError: a row with no target under ``no_target: error``.
    """
    rows = read_corpus(path)
    tokenized = _tokenize(tokenizer, rows, max_length)
    docs, truncated, prompt_lost, empty = [], 0, 0, []
    for i, (row, (doc, full_len)) in enumerate(zip(rows, tokenized)):
        if full_len > max_length:
            truncated += 1
            prompt_lost += doc.loss_mask[0] == 1
        if _no_target(row, doc):
            empty.append(i)
            continue
        docs.append(doc)
    if empty and no_target == "error":
        first = rows[empty[0]]
        raise DataError(f"{len(empty)} rows have no target token (empty completion), the first with id "
                        f"{first.get('id', '?')}; fix the corpus or set data.no_target=skip",
                        file=str(corpus_file(path)), row=empty[0] + 1)
    return docs, DataReport(len(rows), truncated, prompt_lost, len(empty), len(empty))


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
