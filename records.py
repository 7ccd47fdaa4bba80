"""Typed records shared by every stage.

Each stage reads files the previous one wrote; these frozen dataclasses are the in-memory form of
those files. The on-disk corpus schema is documented in the README ("Corpus schema") and is the
JSON form of :class:`Row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Dialect = Literal["taskmill", "promptsource"]
FormatName = Literal["zero_shot", "few_shot", "zero_shot_options", "few_shot_options", "cot"]
FORMATS: tuple[str, ...] = ("zero_shot", "few_shot", "zero_shot_options", "few_shot_options", "cot")


@dataclass(frozen=True)
class TemplateMetadata:
    """What a template asks for and how to score it.

    Attributes:
        original_task: True when the template asks for the dataset's original task.
        choices_in_prompt: True when the answer choices are shown in the rendered input.
        metrics: Metric names used to score it (e.g. ``("Accuracy",)``, ``("ROUGE",)``).
        languages: ISO language codes of the rendered text.
    """

    original_task: bool | None = None
    choices_in_prompt: bool | None = None
    metrics: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Template:
    """One prompt template.

    Attributes:
        id: Stable identifier (unique within its file).
        name: Human name (unique within its file).
        input: Jinja source of the prompt.
        target: Jinja source of the expected completion.
        answer_choices: Jinja source whose rendered output, split on ``|||``, gives the choices;
            None for open-ended templates.
        metadata: See :class:`TemplateMetadata`.
        dialect: ``taskmill`` renders ``input`` and ``target`` separately; ``promptsource``
            renders ``jinja`` as one string and splits the output on ``|||``, exactly as
            PromptSource's ``Template.apply`` does.
        jinja: The combined source, for the ``promptsource`` dialect only.
        reference: Author or paper the template comes from.
        cot_target: Optional Jinja source of a chain-of-thought target (rationale then answer).
        keep_whitespace: Keep the rendered input, target and each answer choice exactly as
            rendered (no strip). Templates converted from lm-evaluation-harness set it, since
            lm-eval scores a choice with its own leading/trailing spaces.
    """

    id: str
    name: str
    input: str
    target: str
    answer_choices: str | None = None
    metadata: TemplateMetadata = field(default_factory=TemplateMetadata)
    dialect: Dialect = "taskmill"
    jinja: str | None = None
    reference: str = ""
    cot_target: str | None = None
    keep_whitespace: bool = False


@dataclass(frozen=True)
class TemplateFile:
    """The templates of one dataset (HF id and optional config), as loaded from one file.

    ``source`` says where converted templates came from and how to evaluate them as their origin
    does (e.g. ``{"lm_eval": {"task": "piqa", "version": 1.0, ...}, "eval": {"prompt_style":
    "lmeval", "separator": " "}}``); None for hand-written files.
    """

    path: str
    dataset: str
    subset: str | None
    templates: tuple[Template, ...]
    source: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def dataset_id(self) -> str:
        """``dataset`` or ``dataset/subset``, the form collections use."""
        return f"{self.dataset}/{self.subset}" if self.subset else self.dataset


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template applied to one row."""

    input: str
    target: str
    answer_choices: tuple[str, ...] | None = None

    @property
    def target_index(self) -> int | None:
        """Index of ``target`` in ``answer_choices``, or None when absent."""
        if self.answer_choices is None or self.target not in self.answer_choices:
            return None
        return self.answer_choices.index(self.target)


@dataclass(frozen=True)
class Row:
    """One instance of a corpus (one line of ``corpus.jsonl``).

    Attributes:
        id: Stable id: 16 hex digits of sha256 over (collection seed, task, split, row_index,
            template_id) and the format (see taskmill.builders.keys).
        task: Task name from the collection.
        dataset: HF id with config (``glue/sst2``).
        split: Source split.
        row_index: Index of the source row within its split.
        template_id: Template id.
        template_name: Template name.
        format: One of :data:`FORMATS`.
        prompt: Rendered model input (with exemplars / options for the other formats).
        completion: Rendered target.
        messages: Chat form: ``[{"role": "user", ...}, {"role": "assistant", ...}]``.
        answer_choices: The rendered choices when the template has them.
        target_index: Index of the completion within ``answer_choices`` (None if not a choice).
        shots: Row indices (in the train split) of the few-shot exemplars, in prompt order.
        metrics: The template's metric names (how eval scores this row).
        original_task: The template's ``original_task`` flag.
    """

    id: str
    task: str
    dataset: str
    split: str
    row_index: int
    template_id: str
    template_name: str
    format: str
    prompt: str
    completion: str
    messages: tuple[dict[str, str], ...]
    answer_choices: tuple[str, ...] | None = None
    target_index: int | None = None
    shots: tuple[int, ...] = ()
    metrics: tuple[str, ...] = ()
    original_task: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with keys in schema order."""
        # Built field by field: dataclasses.asdict deep-copies every value and dominated build time.
        return {
            "id": self.id, "task": self.task, "dataset": self.dataset, "split": self.split,
            "row_index": self.row_index, "template_id": self.template_id, "template_name": self.template_name,
            "format": self.format, "prompt": self.prompt, "completion": self.completion,
            "messages": [dict(m) for m in self.messages],
            "answer_choices": list(self.answer_choices) if self.answer_choices is not None else None,
            "target_index": self.target_index, "shots": list(self.shots), "metrics": list(self.metrics),
            "original_task": self.original_task,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Row:
        """Inverse of :meth:`to_json` (unknown keys are ignored)."""
        choices = obj.get("answer_choices")
        return cls(
            id=obj["id"],
            task=obj["task"],
            dataset=obj["dataset"],
            split=obj["split"],
            row_index=int(obj["row_index"]),
            template_id=obj["template_id"],
            template_name=obj["template_name"],
            format=obj["format"],
            prompt=obj["prompt"],
            completion=obj["completion"],
            messages=tuple(dict(m) for m in obj["messages"]),
            answer_choices=tuple(choices) if choices is not None else None,
            target_index=obj.get("target_index"),
            shots=tuple(obj.get("shots") or ()),
            metrics=tuple(obj.get("metrics") or ()),
            original_task=obj.get("original_task"),
        )


@dataclass(frozen=True)
class Fold:
    """One held-out split of the task set.

    Attributes:
        name: Fold name (the held-out cluster's name, or ``task:<name>``).
        held_out: Cluster names held out together.
        train_tasks: Tasks whose rows may be trained on.
        test_tasks: Tasks evaluated.
        excluded: Task -> reason it was dropped from training (e.g. shares a source dataset).
        leakage: Counter name -> count (e.g. ``near_duplicates_removed``).
    """

    name: str
    held_out: tuple[str, ...]
    train_tasks: tuple[str, ...]
    test_tasks: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)
    leakage: dict[str, int] = field(default_factory=dict)
