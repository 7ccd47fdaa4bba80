"""Stable keys: every derived choice hashes its coordinates with sha256, never Python's ``hash()``.

One digest per (collection seed, task, split, row_index, template_id) gives the row's render seed,
its few-shot draw and, with the format, its id, so outputs are byte-identical on every run and
machine, and independent of how rows are split across processes.
"""

from __future__ import annotations

import hashlib
import json


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
    """Seed of the few-shot exemplar draw (next 8 bytes)."""
    return int.from_bytes(row[8:16], "big")


def row_id(row: bytes, fmt: str) -> str:
    """The corpus row id: 16 hex digits of sha256(row digest + format)."""
    return hashlib.sha256(row + fmt.encode("utf-8")).hexdigest()[:16]


def sample_seed(seed: int, task: str, split: str) -> int:
    """Seed of the ``max_examples`` sample of a split."""
    return int.from_bytes(digest(seed, task, split, "max_examples")[:8], "big")


def text_key(split: str, prompt: str, completion: str) -> bytes:
    """Exact-duplicate key: sha256 of (split, prompt, completion)."""
    return digest(split, prompt, completion)
