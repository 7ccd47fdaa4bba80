"""Stable keys: every derived choice hashes its coordinates with sha256, never Python's ``hash()``.

One digest per (collection seed, task, split, row_index, template_id) gives the row's render seed,
its few-shot draw and, with the format, its id, so outputs are byte-identical on every run and
machine, and independent of how rows are split across processes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator


def digest(*parts: object) -> bytes:
    """sha256 of the JSON array of ``parts`` (unambiguous for any strings)."""
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).digest()


def row_digest(seed: int, task: str, split: str, row_index: int, template_id: str) -> bytes:
    """The digest every per-row choice derives from."""
    return digest(seed, task, split, row_index, template_id)


def render_seed(row: bytes) -> int:
    """Seed of the RNG a template's ``choice`` filter draws from (first 8 bytes)."""
    return int.from_bytes(row[:8], "big")


def shots_seed(row: bytes) -> int:
    """Seed of the few-shot fallback scan (next 8 bytes; the draws themselves use :func:`draws`)."""
    return int.from_bytes(row[8:16], "big")


def row_id(row: bytes, fmt: str) -> str:
    """The corpus row id: 16 hex digits of sha256(row digest + format)."""
    return hashlib.sha256(row + fmt.encode("utf-8")).hexdigest()[:16]


def sample_seed(seed: int, task: str, split: str) -> int:
    """Seed of the ``max_examples`` sample of a split."""
    return int.from_bytes(digest(seed, task, split, "max_examples")[:8], "big")


class SplitKeys:
    """Fast :func:`row_digest` for one (seed, task, split): the JSON prefix is encoded once.

    ``SplitKeys(seed, task, split).row(i, tid) == row_digest(seed, task, split, i, tid)``.
    """

    def __init__(self, seed: int, task: str, split: str) -> None:
        self._prefix = json.dumps([seed, task, split], ensure_ascii=False, separators=(",", ":"))[:-1] + ","
        self._suffix: dict[str, str] = {}

    def row(self, row_index: int, template_id: str) -> bytes:
        """The row digest of ``(row_index, template_id)`` in this split."""
        suffix = self._suffix.get(template_id)
        if suffix is None:
            suffix = self._suffix[template_id] = "," + json.dumps(template_id, ensure_ascii=False) + "]"
        return hashlib.sha256(f"{self._prefix}{row_index}{suffix}".encode("utf-8")).digest()


def draws(row: bytes, pool: int) -> Iterator[int]:
    """Endless pseudo-random indices below ``pool`` from a row digest (its last 16 bytes, then
    sha256 blocks of it with a counter); modulo bias is below ``pool / 2**64``."""
    block = row[16:32]
    counter = 0
    while True:
        for start in range(0, len(block), 8):
            yield int.from_bytes(block[start:start + 8], "big") % pool
        counter += 1
        block = hashlib.sha256(row + counter.to_bytes(4, "big")).digest()


def text_key(split: str, prompt: str, completion: str) -> bytes:
    """Exact-duplicate key: sha256 of (split, prompt, completion), each prefixed by its length."""
    text = f"{len(split)}:{split}{len(prompt)}:{prompt}{completion}"
    return hashlib.sha256(text.encode("utf-8")).digest()
