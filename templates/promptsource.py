"""Reading PromptSource ``templates.yaml`` files into taskmill templates.

The file maps template uuids to ``!Template`` objects (``jinja`` with ``|||`` between prompt and
target, ``answer_choices``, ``!TemplateMetadata``). We read the tags as plain mappings with a safe
loader (no Python objects are built) and keep the combined source: PromptSource splits the
*rendered* text on ``|||``, which is not the same as splitting the source (a ``|||`` can sit inside
a Jinja block), so the ``promptsource`` dialect renders it whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from taskmill.errors import ConfigError, TaskmillError
from taskmill.records import Template, TemplateFile, TemplateMetadata
from taskmill.templates.engine import SEPARATOR


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that reads PromptSource's tags as mappings (libyaml's parser where PyYAML has it:
    about 8x faster, same values on every file of ../shared/promptsource_templates)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_Loader.add_constructor("!Template", _mapping)
_Loader.add_constructor("!TemplateMetadata", _mapping)


def _split_source(jinja: str) -> tuple[str, str]:
    """Best-effort prompt/target halves of the source, for display and lint only."""
    head, sep, tail = jinja.partition(SEPARATOR)
    return head.strip(), tail.strip() if sep else ""


def _metadata(raw: Any) -> TemplateMetadata:
    raw = raw if isinstance(raw, dict) else {}
    return TemplateMetadata(
        original_task=raw.get("original_task"),
        choices_in_prompt=raw.get("choices_in_prompt"),
        metrics=tuple(raw.get("metrics") or ()),
        languages=tuple(raw.get("languages") or ()),
    )


def _template(key: str, raw: Any, problems: list[str]) -> Template | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("jinja"), str):
        problems.append(f"template {key}: expected a !Template with a 'jinja' string")
        return None
    choices = raw.get("answer_choices")
    prompt, target = _split_source(raw["jinja"])
    return Template(
        id=str(raw.get("id") or key),
        name=str(raw.get("name") or key),
        input=prompt,
        target=target,
        answer_choices=str(choices) if choices is not None else None,
        metadata=_metadata(raw.get("metadata")),
        dialect="promptsource",
        jinja=raw["jinja"],
        reference=str(raw.get("reference") or ""),
    )


def load_promptsource(path: str | Path) -> TemplateFile:
    """Load a PromptSource ``templates.yaml``.

    Templates keep PromptSource's file order (the order of its uuid keys).

    Raises:
        TaskmillError: Missing or non-UTF-8 file, or malformed YAML.
        ConfigError: The content is not a PromptSource template file.
    """
    from taskmill.fileio import read_text

    path = Path(path)
    text = read_text(path, missing="template file not found")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - safe subclass
    except yaml.YAMLError as err:
        raise TaskmillError(f"malformed YAML: {err}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("templates"), dict):
        raise ConfigError(["expected PromptSource 'dataset' and a 'templates' mapping"], file=str(path))
    problems: list[str] = []
    templates = tuple(t for k, v in data["templates"].items() if (t := _template(str(k), v, problems)))
    if problems:
        raise ConfigError(problems, file=str(path))
    return TemplateFile(str(path), str(data.get("dataset") or ""), data.get("subset"), templates)
