"""Instance formats: how one rendered row becomes a prompt and a completion.

* ``zero_shot``: exactly the template's rendered input and target.
* ``few_shot``: ``k`` exemplars rendered with the same template, each ``input + "\\n" + target``,
  separated by a blank line, then the instance's input (``"\\n\\n"`` between blocks).
* ``*_options``: a FLAN-style block ``"\\n\\nOPTIONS:\\n- a\\n- b"`` appended to every input, for
  templates that have ``answer_choices`` and do not already show them (``choices_in_prompt`` not
  true); other templates are skipped for these formats (and counted in the card).
* ``cot``: the template's chain-of-thought target as completion (skipped without ``cot_target``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskmill.records import Rendered, Template

EXEMPLAR_SEPARATOR = "\n\n"
INPUT_TARGET_SEPARATOR = "\n"

SKIP_NO_CHOICES = "no answer_choices to show as options"
SKIP_CHOICES_SHOWN = "choices already in the prompt (choices_in_prompt)"
SKIP_NO_COT = "template has no cot_target"
SKIP_EMPTY_COT = "cot_target renders empty"


@dataclass(frozen=True)
class Formatted:
    """A prompt/completion pair in one format (``shots``: exemplar row indices, in prompt order)."""

    format: str
    prompt: str
    completion: str
    shots: tuple[int, ...] = ()


# A format's exemplars: (row index, rendered exemplar) pairs, or a skip reason.
Exemplars = list[tuple[int, Rendered]] | str


@dataclass(frozen=True)
class Skip:
    """Why a lazily rendered part (the chain-of-thought target) skips its row."""

    reason: str


def options_block(choices: Sequence[str]) -> str:
    """FLAN-style options listing: ``OPTIONS:`` then one ``- choice`` line each."""
    return "OPTIONS:\n" + "\n".join(f"- {c}" for c in choices)


def with_options(text: str, choices: Sequence[str]) -> str:
    """``text`` followed by a blank line and the options block."""
    return f"{text}\n\n{options_block(choices)}"


def options_skip(template: Template, rendered: Rendered) -> str | None:
    """Why the options formats do not apply to this template, or None when they do."""
    if rendered.answer_choices is None:
        return SKIP_NO_CHOICES
    if template.metadata.choices_in_prompt is True:
        return SKIP_CHOICES_SHOWN
    return None


def few_shot_prompt(exemplars: Sequence[tuple[int, Rendered]], rendered: Rendered, options: bool) -> str:
    """Exemplar blocks then the instance's input (each input with options when ``options``)."""

    def shown(r: Rendered) -> str:
        return with_options(r.input, r.answer_choices) if options and r.answer_choices else r.input

    blocks = [f"{shown(ex)}{INPUT_TARGET_SEPARATOR}{ex.target}" for _, ex in exemplars]
    blocks.append(shown(rendered))
    return EXEMPLAR_SEPARATOR.join(blocks)


def format_row(
    fmt: str,
    template: Template,
    rendered: Rendered,
    exemplars: Callable[[], Exemplars],
    cot: Callable[[], str | Skip | None],
) -> Formatted | str:
    """One row in one format, or the reason it is skipped.

    Args:
        fmt: The format name.
        template: The template the row was rendered with.
        rendered: The zero-shot render of the row.
        exemplars: Draws (once, lazily) the few-shot exemplars or a skip reason.
        cot: Renders the chain-of-thought target (None when the template has none, a
            :class:`Skip` when the row is skipped, e.g. for a null field).
    """
    if fmt == "zero_shot":
        return Formatted(fmt, rendered.input, rendered.target)
    if fmt.endswith("_options"):
        skip = options_skip(template, rendered)
        if skip:
            return skip
    if fmt == "zero_shot_options":
        return Formatted(fmt, with_options(rendered.input, rendered.answer_choices or ()), rendered.target)
    if fmt in ("few_shot", "few_shot_options"):
        shots = exemplars()
        if isinstance(shots, str):
            return shots
        prompt = few_shot_prompt(shots, rendered, options=fmt == "few_shot_options")
        return Formatted(fmt, prompt, rendered.target, tuple(i for i, _ in shots))
    if fmt == "cot":
        text = cot()
        if text is None:
            return SKIP_NO_COT
        if isinstance(text, Skip):
            return text.reason
        return Formatted(fmt, rendered.input, text) if text else SKIP_EMPTY_COT
    raise ValueError(f"unknown format {fmt!r}")
