"""taskmill's own template file format (YAML, one file per dataset), reading and writing.

```yaml
dataset: glue            # HF dataset id
subset: sst2             # HF config, or omitted
templates:
  - id: sst2-review-mood            # stable, unique in the file
    name: review mood               # unique in the file
    input: "Review: {{ sentence }}\\nIs this review positive or negative?"
    target: "{{ answer_choices[label] }}"
    answer_choices: "negative ||| positive"   # Jinja; output split on |||
    cot_target: null                # optional chain-of-thought target
    reference: ""
    metadata: {original_task: true, choices_in_prompt: true, metrics: [Accuracy], languages: [en]}
    keep_whitespace: false          # optional: true keeps input, target and choices unstripped
source: {...}            # optional: where converted templates came from, and their eval settings
```

:func:`load_template_file` also reads PromptSource ``templates.yaml`` files (detected by their
``!Template`` tags), so every command takes either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from taskmill.errors import ConfigError
from taskmill.fileio import parse_yaml, read_text, write_text
from taskmill.records import Template, TemplateFile, TemplateMetadata

_TEMPLATE_KEYS = {"id", "name", "input", "target", "answer_choices", "cot_target", "reference", "metadata",
                  "keep_whitespace"}
_METADATA_KEYS = {"original_task", "choices_in_prompt", "metrics", "languages"}


def _metadata(raw: Any, where: str, problems: list[str]) -> TemplateMetadata:
    if raw is None:
        return TemplateMetadata()
    if not isinstance(raw, dict):
        problems.append(f"{where}: metadata must be a mapping")
        return TemplateMetadata()
    for key in sorted(set(raw) - _METADATA_KEYS):
        problems.append(f"{where}: unknown metadata key '{key}' (expected one of {sorted(_METADATA_KEYS)})")
    for key in ("original_task", "choices_in_prompt"):
        if raw.get(key) is not None and not isinstance(raw[key], bool):
            problems.append(f"{where}: metadata.{key} must be true or false")
    lists = {}
    for key in ("metrics", "languages"):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{where}: metadata.{key} must be a list of strings")
            value = []
        lists[key] = tuple(value)
    return TemplateMetadata(raw.get("original_task"), raw.get("choices_in_prompt"), lists["metrics"], lists["languages"])


def _template(raw: Any, index: int, problems: list[str]) -> Template | None:
    where = f"templates[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with id, name, input, target")
        return None
    where = f"template '{raw.get('name', index)}'"
    for key in sorted(set(raw) - _TEMPLATE_KEYS):
        problems.append(f"{where}: unknown key '{key}' (expected one of {sorted(_TEMPLATE_KEYS)})")
    for key in ("id", "name", "input", "target"):
        if not isinstance(raw.get(key), str) or (key in ("id", "name") and not raw[key].strip()):
            problems.append(f"{where}: '{key}' must be a non-empty string")
    for key in ("answer_choices", "cot_target"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            problems.append(f"{where}: '{key}' must be a string (Jinja) or absent")
    if raw.get("keep_whitespace") is not None and not isinstance(raw["keep_whitespace"], bool):
        problems.append(f"{where}: 'keep_whitespace' must be true or false")
    metadata = _metadata(raw.get("metadata"), where, problems)
    if any(not isinstance(raw.get(k), str) for k in ("id", "name", "input", "target")):
        return None
    return Template(
        id=raw["id"], name=raw["name"], input=raw["input"], target=raw["target"],
        answer_choices=raw.get("answer_choices"), metadata=metadata,
        reference=str(raw.get("reference") or ""), cot_target=raw.get("cot_target"),
        keep_whitespace=raw.get("keep_whitespace") is True,
    )


def duplicate_problems(templates: tuple[Template, ...]) -> list[str]:
    """Problems for ids or names used by more than one template."""
    problems = []
    for attr in ("id", "name"):
        seen: set[str] = set()
        for t in templates:
            value = getattr(t, attr)
            if value in seen:
                problems.append(f"duplicate template {attr} '{value}'")
            seen.add(value)
    return problems


def parse_taskmill(data: Any, path: Path) -> TemplateFile:
    """Validate a parsed taskmill template file, listing every problem at once."""
    tf, problems = collect_taskmill(data, path)
    if problems:
        raise ConfigError(problems, file=str(path))
    return tf


def collect_taskmill(data: Any, path: Path) -> tuple[TemplateFile, list[str]]:
    """The valid templates of a parsed taskmill file (those without a problem of their own) and every
    problem found (lint goes on past them)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return TemplateFile(str(path), "", None, ()), ["expected a mapping with 'dataset' and 'templates'"]
    if not isinstance(data.get("dataset"), str) or not data["dataset"]:
        problems.append("'dataset' (HF id) must be a non-empty string")
    if data.get("subset") is not None and not isinstance(data["subset"], str):
        problems.append("'subset' must be a string or absent")
    raw = data.get("templates")
    if not isinstance(raw, list) or not raw:
        problems.append("'templates' must be a non-empty list")
        raw = []
    source = data.get("source")
    if source is not None and not isinstance(source, dict):
        problems.append("'source' must be a mapping or absent")
        source = None
    templates, valid = [], []
    for i, r in enumerate(raw):
        before = len(problems)
        t = _template(r, i, problems)
        if t is not None:
            templates.append(t)
            # A template with a problem of its own (a misspelled key such as `answer_choice`) is
            # reported by that problem alone: lint does not render it into a second, confusing error.
            if len(problems) == before:
                valid.append(t)
    problems += duplicate_problems(tuple(templates))
    subset = data.get("subset") if isinstance(data.get("subset"), str) else None
    return TemplateFile(str(path), str(data.get("dataset") or ""), subset, tuple(valid), source), problems


def load_template_file(path: str | Path) -> TemplateFile:
    """Load a template file in taskmill's format or PromptSource's (detected by its tags).

    Raises:
        TaskmillError: The file is missing or is not valid YAML.
        ConfigError: The file parses but its content is invalid (all problems listed).
    """
    path = Path(path)
    text = _read(path)
    if "!Template" in text[:4096]:
        from taskmill.templates.promptsource import load_promptsource

        return load_promptsource(path)
    return parse_taskmill(parse_yaml(text, path), path)


def _read(path: Path) -> str:
    return read_text(path, missing="template file not found")


def _template_dict(t: Template) -> dict[str, Any]:
    out: dict[str, Any] = {"id": t.id, "name": t.name, "input": t.input, "target": t.target}
    if t.answer_choices is not None:
        out["answer_choices"] = t.answer_choices
    if t.cot_target is not None:
        out["cot_target"] = t.cot_target
    if t.reference:
        out["reference"] = t.reference
    if t.keep_whitespace:
        out["keep_whitespace"] = True
    m = t.metadata
    out["metadata"] = {
        "original_task": m.original_task, "choices_in_prompt": m.choices_in_prompt,
        "metrics": list(m.metrics), "languages": list(m.languages),
    }
    return out


class _Dumper(yaml.SafeDumper):
    """Safe dumper writing multi-line strings as literal blocks, so templates read as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_template_file(tf: TemplateFile) -> str:
    """Serialise to taskmill's YAML format (deterministic key order).

    Multi-line strings are literal blocks where YAML allows it (PyYAML falls back to quoting for
    text a block cannot hold exactly, such as trailing spaces), so loading gives the same text.
    """
    data: dict[str, Any] = {"dataset": tf.dataset}
    if tf.subset:
        data["subset"] = tf.subset
    if tf.source:
        data["source"] = tf.source
    data["templates"] = [_template_dict(t) for t in tf.templates]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_template_file(tf: TemplateFile, path: str | Path) -> None:
    """Write a template file atomically (temp file in the same folder, then rename)."""
    write_text(path, dump_template_file(tf))
