"""OpenAI-compatible completions backend (``vllm serve``, llama.cpp server, TGI's OpenAI route...).

Log-likelihoods: the request's context + continuation is sent as the prompt of ``POST
/completions`` with ``echo=true``, ``logprobs=1``, ``max_tokens=1``, ``temperature=0``; the server
echoes the prompt's tokens with their log-probabilities, top-1 alternatives and character offsets.
The continuation's tokens are those whose offset lies in ``[len(context), len(context +
continuation))`` (context whitespace moved to the continuation first, as everywhere in taskmill); the
generated token sits past the prompt and is ignored. Generation is a plain greedy completion with
``stop``. Only the standard library is used (``urllib``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence

from taskmill.errors import TaskmillError
from taskmill.backends.base import truncate_at_stop
from taskmill.backends.requests import GenerateRequest, Loglikelihood, LoglikelihoodRequest, split_trailing_space


def parse_echo_logprobs(choice: dict[str, Any], start: int, end: int) -> Loglikelihood:
    """The continuation's log-likelihood from one echoed completion choice.

    Args:
        choice: A ``choices[i]`` object with ``logprobs.tokens``, ``token_logprobs``,
            ``top_logprobs`` and ``text_offset``.
        start: Character offset where the continuation starts in the prompt.
        end: Character offset where the prompt ends.
    """
    lp = choice.get("logprobs") or {}
    offsets, values = lp.get("text_offset") or [], lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs") or [None] * len(values)
    picked = [i for i, off in enumerate(offsets) if start <= off < end]
    if not picked or any(values[i] is None for i in picked):
        raise TaskmillError("the server's echoed log-probs do not cover the continuation (does it support echo?)")
    total = sum(float(values[i]) for i in picked)
    greedy = all(tops[i] is None or float(values[i]) >= max(tops[i].values()) - 1e-6 for i in picked)
    return Loglikelihood(total, greedy, len(picked))


class OpenAIBackend:
    """Evaluate a model behind an OpenAI-compatible ``/completions`` endpoint.

    Args:
        model: Served model name.
        adapter: Served name of a LoRA adapter (vLLM serves each as its own model name), or None.
        base_url: Up to and including ``/v1``.
        api_key: Bearer token (default: ``OPENAI_API_KEY``, else none).
        batch_size: Prompts per HTTP request.
        timeout: Seconds per HTTP request.
        retries: Attempts on connection errors and 5xx answers (exponential back-off).
        revision: Model revision for cache keys (default: the served name).
    """

    name = "openai"
    chat_format: Callable[[str], str] | None = None

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        batch_size: int = 16,
        timeout: float = 120.0,
        retries: int = 3,
        revision: str | None = None,
    ) -> None:
        self.served = adapter or model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.batch_size = batch_size
        self.timeout = timeout
        self.retries = retries
        self.model_revision = revision or f"openai:{model}"
        self.adapter_hash = hashlib.sha1(adapter.encode()).hexdigest()[:16] if adapter else ""
        self.calls = 0

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps({"model": self.served, **payload}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url}/completions", data=data, headers=headers, method="POST")
        for attempt in range(self.retries):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    self.calls += 1
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                if err.code < 500 or attempt == self.retries - 1:
                    raise TaskmillError(f"{self.base_url}: HTTP {err.code}: {err.read()[:200]!r}") from None
            except urllib.error.URLError as err:
                if attempt == self.retries - 1:
                    raise TaskmillError(f"{self.base_url}: cannot reach the server: {err.reason}") from None
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Echoed prompt log-probs, ``batch_size`` prompts per HTTP request."""
        pairs = [split_trailing_space(r.context, r.continuation) for r in requests]
        out: list[Loglikelihood] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            body = self._post({"prompt": [c + k for c, k in chunk], "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0})
            choices = sorted(body["choices"], key=lambda ch: ch.get("index", 0))
            out += [parse_echo_logprobs(ch, len(c), len(c) + len(k)) for ch, (c, k) in zip(choices, chunk)]
        return out

    def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Greedy completions; requests sharing stop sequences and budget go in one HTTP request."""
        out = [""] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.stop, r.max_tokens), []).append(i)
        for (stop, max_tokens), idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                payload = {"prompt": [requests[i].context for i in chunk], "max_tokens": max_tokens, "temperature": 0}
                if stop:
                    payload["stop"] = list(stop)
                body = self._post(payload)
                for i, ch in zip(chunk, sorted(body["choices"], key=lambda c: c.get("index", 0))):
                    out[i] = truncate_at_stop(ch["text"], stop)
        return out
