"""Corpus lines, encoded directly: the hot path of a build.

``encode(...)`` returns exactly ``json.dumps(Row(...).to_json(), ensure_ascii=False)`` (a test
checks this), but encodes the prompt and completion once although ``messages`` repeats them, and
encodes the per-task and per-template fields once instead of once per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring  # the ensure_ascii=False string encoder (C when available)

from taskmill.records import Template

CHOICES_CACHE_MAX = 10_000  # distinct answer_choices lists kept encoded per task


def _strings(values: Sequence[str] | None) -> str:
    if values is None:
        return "null"
    return "[" + ", ".join(encode_basestring(v) for v in values) + "]"


def _scalar(value: bool | int | None) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(int(value))


class LineEncoder:
    """Encodes the corpus lines of one task; per-task and per-template parts are cached.

    Args:
        task: Task name.
        dataset: Dataset provenance (``glue/sst2``).
    """

    def __init__(self, task: str, dataset: str) -> None:
        self._task = f'"task": {encode_basestring(task)}, "dataset": {encode_basestring(dataset)}, "split": '
        self._splits: dict[str, str] = {}
        self._choices: dict[tuple[str, ...] | None, str] = {None: "null"}
        self._templates: dict[str, tuple[str, str]] = {}

    def template(self, template_id: str, name: str, metrics: Sequence[str], original_task: bool | None) -> None:
        """Register a template's constant fields (once)."""
        self._templates[template_id] = (
            f', "template_id": {encode_basestring(template_id)}, "template_name": {encode_basestring(name)}, "format": "',
            f', "metrics": {_strings(metrics)}, "original_task": {_scalar(original_task)}}}',
        )

    def add_template(self, template: Template) -> None:
        """Register a :class:`Template`'s constant fields."""
        self.template(template.id, template.name, template.metadata.metrics, template.metadata.original_task)

    def line(self, row_id: str, split: str, row_index: int, template_id: str, fmt: str, prompt: str,
             completion: str, answer_choices: Sequence[str] | None, target_index: int | None,
             shots: Sequence[int]) -> str:
        """One corpus line (no trailing newline)."""
        head = self._splits.get(split)
        if head is None:
            head = self._splits[split] = self._task + encode_basestring(split)
        middle, tail = self._templates[template_id]
        p, c = encode_basestring(prompt), encode_basestring(completion)
        key = answer_choices if answer_choices is None or isinstance(answer_choices, tuple) else tuple(answer_choices)
        choices = self._choices.get(key)
        if choices is None:
            choices = _strings(key)
            if len(self._choices) < CHOICES_CACHE_MAX:
                self._choices[key] = choices
        return (
            f'{{"id": "{row_id}", {head}, "row_index": {row_index}{middle}{fmt}", "prompt": {p}, '
            f'"completion": {c}, "messages": [{{"role": "user", "content": {p}}}, '
            f'{{"role": "assistant", "content": {c}}}], "answer_choices": {choices}, '
            f'"target_index": {_scalar(target_index)}, "shots": [{", ".join(map(str, shots))}]{tail}'
        )
