"""Request and result records between the evaluator and its backends, and how rows become requests.

Every backend answers two kinds of request (the lm-evaluation-harness contract):

- :class:`LoglikelihoodRequest` ``(context, continuation)`` -> :class:`Loglikelihood`: the summed
  log-probability of the continuation's tokens given the context, and whether greedy decoding would
  have produced exactly those tokens.
- :class:`GenerateRequest` ``(context, stop, max_tokens)`` -> the generated text, cut before the
  first stop sequence.

Joining a corpus row's ``prompt`` and a continuation (a choice or the completion) follows one rule,
:class:`PromptStyle`: ``plain`` puts ``separator`` (default ``"\\n"``, the corpus-wide convention)
between prompt and continuation; ``chat`` renders the prompt as one user turn with the model's chat
template and lets the continuation follow the assistant header. Tokenisation of a pair follows
lm-evaluation-harness: whitespace at the end of the context moves to the start of the continuation,
the pair is encoded whole and split after the context's tokens, so both tools score the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` after ``context``."""

    context: str
    continuation: str


@dataclass(frozen=True)
class GenerateRequest:
    """Greedy-decode after ``context`` until a stop sequence or ``max_tokens`` new tokens."""

    context: str
    stop: tuple[str, ...] = ()
    max_tokens: int = 64


@dataclass(frozen=True)
class Loglikelihood:
    """Answer to a :class:`LoglikelihoodRequest`.

    Attributes:
        logprob: Sum of the continuation tokens' log-probabilities (natural log).
        is_greedy: True when every continuation token is the argmax at its position.
        n_tokens: Number of continuation tokens scored.
    """

    logprob: float
    is_greedy: bool
    n_tokens: int


class Tokenizer(Protocol):
    """The slice of a Hugging Face tokenizer that pair encoding needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class PromptStyle:
    """How a prompt and a continuation are joined.

    Attributes:
        kind: ``plain`` (prompt + separator + continuation), ``chat`` (chat template) or
            ``lmeval`` (lm-evaluation-harness's requests: the context is the prompt as is and
            the separator, its ``target_delimiter``, starts every continuation).
        separator: Text between prompt and continuation in ``plain`` and ``lmeval`` style.
    """

    kind: Literal["plain", "chat", "lmeval"] = "plain"
    separator: str = "\n"


def split_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """Move whitespace at the end of ``context`` to the start of ``continuation``.

    BPE vocabularies attach a leading space to the next word (``" Paris"``), so scoring ``" Paris"``
    after ``"...is"`` uses the token the model would really emit.
    """
    stripped = context.rstrip()
    n_spaces = len(context) - len(stripped)
    if n_spaces == 0:
        return context, continuation
    return stripped, context[len(stripped):] + continuation


def encode_pair(
    tokenizer: Tokenizer,
    context: str,
    continuation: str,
    *,
    prefix_ids: Sequence[int] = (),
) -> tuple[list[int], list[int]]:
    """Token ids of ``(context, continuation)`` as lm-evaluation-harness splits them.

    Args:
        tokenizer: Encodes text; special tokens are never added here.
        context: Conditioning text; may be empty, then ``prefix_ids`` is the whole context.
        continuation: Scored text.
        prefix_ids: Ids put before every context (BOS for models that want it); also the
            context of an empty-context request.

    Returns:
        ``(context_ids, continuation_ids)``; ``continuation_ids`` is never empty for a non-empty
        continuation.
    """
    context, continuation = split_trailing_space(context, continuation)
    if not context:
        return list(prefix_ids), tokenizer.encode(continuation, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False)
    return list(prefix_ids) + whole[: len(ctx)], whole[len(ctx):]


def join_prompt(
    prompt: str, style: PromptStyle, chat_format: Callable[[str], str] | None = None
) -> str:
    """The context text for ``prompt`` under ``style`` (the continuation follows it directly).

    Raises:
        ValueError: ``chat`` style without a chat formatter.
    """
    if style.kind == "plain":
        return prompt + style.separator
    if style.kind == "lmeval":  # the separator goes with the continuation (continuation_lead)
        return prompt
    if chat_format is None:
        raise ValueError("chat prompt style needs a model with a chat template")
    return chat_format(prompt)


def continuation_lead(style: PromptStyle) -> str:
    """Text put before every scored continuation: the separator in ``lmeval`` style, else nothing."""
    return style.separator if style.kind == "lmeval" else ""


def hf_chat_formatter(tokenizer: Any) -> Callable[[str], str] | None:
    """A ``prompt -> context`` function from a tokenizer's chat template, or None without one."""
    if not getattr(tokenizer, "chat_template", None):
        return None

    def fmt(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return fmt


def prefix_ids(tokenizer: Any, add_bos: bool | None) -> list[int]:
    """``[BOS]`` when BOS goes before every context, else ``[]``.

    With ``add_bos=None`` the tokenizer decides: BOS is added when it adds one to plain text itself.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos is None:
        probe = tokenizer("a")["input_ids"]
        add_bos = bool(probe) and bos is not None and probe[0] == bos
    return [bos] if add_bos and bos is not None else []


def empty_context_ids(tokenizer: Any) -> list[int]:
    """What an empty context becomes: BOS, else EOS (as lm-evaluation-harness does)."""
    for attr in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return [int(value)]
    return []
