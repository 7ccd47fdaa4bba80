"""The backend contract: batched log-likelihoods and batched generation over request records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

from taskmill.backends.requests import GenerateRequest, Loglikelihood, LoglikelihoodRequest


@runtime_checkable
class Backend(Protocol):
    """What the runner needs from a model server.

    Attributes:
        name: Backend name (``hf``, ``vllm``, ``openai``).
        model_revision: Identifies the weights (a content hash or a hub commit); part of cache keys.
        adapter_hash: Content hash of the adapter, ``""`` for the base model; part of cache keys.
        chat_format: ``prompt -> context`` through the model's chat template, None when absent.
    """

    name: str
    model_revision: str
    adapter_hash: str
    chat_format: Callable[[str], str] | None

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """One :class:`Loglikelihood` per request, in request order."""
        ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """One generated text per request, in request order, cut before the first stop sequence."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop sequence."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def hash_files(root: str | Path, patterns: Sequence[str]) -> str:
    """sha256 (16 hex digits) over the names and bytes of the files under ``root`` matching ``patterns``.

    Used for model revisions and adapter hashes: the cache key changes exactly when weights do.
    """
    root = Path(root)
    files = [root] if root.is_file() else sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        if path.name == "adapter_config.json":
            digest.update(canonical_adapter_config(path.read_bytes()))
            continue
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def canonical_adapter_config(data: bytes) -> bytes:
    """A PEFT ``adapter_config.json`` as sorted-key compact JSON with its module lists sorted.

    PEFT writes ``target_modules`` in set order (which follows the process's string-hash seed), so
    the same adapter could be saved as different bytes; its hash must not change with that.
    """
    try:
        cfg = json.loads(data)
    except ValueError:
        return data
    if not isinstance(cfg, dict):
        return data
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key], key=str)
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


WEIGHT_PATTERNS = ("config.json", "*.safetensors", "*.bin", "*.gguf", "adapter_config.json")
ADAPTER_PATTERNS = ("adapter_config.json", "*.safetensors", "*.bin")
