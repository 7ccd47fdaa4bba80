"""Converting FLAN's format-string patterns into taskmill templates.

FLAN ships ``{task: [[input, target], ...]}`` Python format strings over its own preprocessed
fields (``{premise}``, ``{options_}``, ``{answer}``, ...). Those names are not the Hugging Face
column names, so a :class:`FlanMapping` says, per dataset, which Jinja expression over the HF row
each FLAN field is, and which Jinja source gives the answer choices. ``{options_}`` becomes a
Jinja block that lists the answer choices as FLAN does (``OPTIONS:\\n- a\\n- b``).

Literal text is kept exactly as written (FLAN's typos such as ``{hypothesis}n`` included: they are
the user's data); text with braces is wrapped in ``{% raw %}`` so Jinja shows it verbatim.
Mappings for the datasets taskmill is tested on ship in ``flan_mappings.yaml`` beside this module.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError, TaskmillError
from taskmill.records import Template, TemplateFile, TemplateMetadata
from taskmill.templates.engine import compile_template, variables
from taskmill.templates.fileformat import read_yaml, write_template_file

MAPPINGS_FILE = Path(__file__).with_name("flan_mappings.yaml")
# FLAN fields that stand for the options block (record calls it options_str).
OPTIONS_FIELDS = frozenset({"options_", "options_str"})
OPTIONS_BLOCK = "OPTIONS:{% for option in answer_choices %}\n- {{ option }}{% endfor %}"
FLAN_ENV = "TASKMILL_FLAN_TEMPLATES"
_MAPPING_KEYS = {"flan_task", "dataset", "subset", "fields", "answer_choices", "metrics"}


@dataclass(frozen=True)
class FlanMapping:
    """How one FLAN task's fields map onto one HF dataset's rows.

    Attributes:
        name: The mapping's name (its key in the mappings file).
        flan_task: The FLAN task whose patterns are converted.
        dataset: HF dataset id of the converted file.
        subset: HF config, or None.
        fields: FLAN field -> Jinja expression over the HF row; None means the dataset has no such
            field, and patterns using it are skipped.
        answer_choices: Jinja source of the options (output split on ``|||``), or None.
        metrics: Metrics of the original-task patterns.
    """

    name: str
    flan_task: str
    dataset: str
    subset: str | None = None
    fields: dict[str, str | None] = field(default_factory=dict)
    answer_choices: str | None = None
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversion:
    """The result of converting one FLAN task: the template file and the patterns left out."""

    template_file: TemplateFile
    skipped: tuple[str, ...]


def load_patterns(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Read FLAN's ``flan_templates.json`` (``{task: [[input, target], ...]}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskmillError("FLAN patterns file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TaskmillError(f"cannot read FLAN patterns: {err}", file=str(path)) from None
    ok = isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in v)
        for v in data.values()
    )
    if not ok:
        raise TaskmillError("expected {task: [[input, target], ...]} with string patterns", file=str(path))
    return {task: [(p[0], p[1]) for p in pats] for task, pats in data.items()}


def _mapping(name: str, raw: Any, problems: list[str]) -> FlanMapping | None:
    where = f"mapping '{name}'"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with dataset, fields, answer_choices")
        return None
    problems += [f"{where}: unknown key '{k}' (expected one of {sorted(_MAPPING_KEYS)})" for k in sorted(set(raw) - _MAPPING_KEYS)]
    fields = raw.get("fields") or {}
    if not isinstance(raw.get("dataset"), str) or not raw["dataset"]:
        problems.append(f"{where}: 'dataset' must be a non-empty string")
    if not isinstance(fields, dict) or not all(isinstance(v, str) or v is None for v in fields.values()):
        problems.append(f"{where}: 'fields' must map FLAN field names to Jinja expressions (or null)")
        fields = {}
    for key in ("subset", "answer_choices", "flan_task"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            problems.append(f"{where}: '{key}' must be a string or absent")
    metrics = raw.get("metrics") or []
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        problems.append(f"{where}: 'metrics' must be a list of strings")
        metrics = []
    return FlanMapping(name, str(raw.get("flan_task") or name), str(raw.get("dataset") or ""), raw.get("subset"),
                       {str(k): v for k, v in fields.items()}, raw.get("answer_choices"), tuple(metrics))


def load_mappings(path: str | Path = MAPPINGS_FILE) -> dict[str, FlanMapping]:
    """Read a mappings file (``{name: {flan_task, dataset, subset, fields, answer_choices, metrics}}``).

    Raises:
        ConfigError: Listing every problem in the file.
    """
    data = read_yaml(Path(path))
    if not isinstance(data, dict) or not data:
        raise ConfigError(["expected a mapping of mapping names to {dataset, fields, answer_choices}"], file=str(path))
    problems: list[str] = []
    out = {str(k): m for k, v in data.items() if (m := _mapping(str(k), v, problems)) is not None}
    if problems:
        raise ConfigError(problems, file=str(path))
    return out


def resolve_mapping(task: str, spec: str | None) -> FlanMapping:
    """The mapping for a FLAN task: a shipped mapping's name, ``FILE.yaml`` or ``FILE.yaml:NAME``.

    With no spec, the shipped mapping for ``task`` (when exactly one ships for it).
    """
    if spec is None:
        shipped = [m for m in load_mappings().values() if m.flan_task == task]
        if len(shipped) != 1:
            names = ", ".join(m.name for m in shipped) or "none ships"
            raise TaskmillError(f"FLAN task '{task}': pass --mapping NAME or FILE.yaml (shipped: {names})")
        return shipped[0]
    path, name = spec, ""
    if ":" in spec and not spec.endswith((".yaml", ".yml")):
        path, _, name = spec.rpartition(":")
    if Path(path).suffix in (".yaml", ".yml"):
        mappings = load_mappings(path)
        picked = [m for m in mappings.values() if (m.name == name if name else m.flan_task == task or len(mappings) == 1)]
        if len(picked) != 1:
            raise TaskmillError(f"cannot pick a mapping for FLAN task '{task}' (have: {', '.join(mappings)})", file=path)
        return picked[0]
    shipped_all = load_mappings()
    if spec not in shipped_all:
        raise TaskmillError(f"unknown FLAN mapping '{spec}' (shipped: {', '.join(sorted(shipped_all))})")
    return shipped_all[spec]


def _literal(text: str) -> str:
    """Literal pattern text as Jinja source that renders it verbatim."""
    if "{" not in text:  # only "{" starts Jinja syntax ("{{", "{%", "{#"), also next to our "{{"
        return text
    if "endraw" not in text:
        return "{% raw %}" + text + "{% endraw %}"
    return "{{ " + json.dumps(text) + " }}"


def convert_pattern(pattern: str, mapping: FlanMapping) -> str:
    """One FLAN format string as Jinja source, using the mapping's field expressions.

    Raises:
        TaskmillError: The pattern is not a valid format string, uses a conversion or format spec,
            or names a field the mapping does not cover.
    """
    out: list[str] = []
    text = ""  # literal text since the last field ("{{" arrives as its own piece)
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as err:
        raise TaskmillError(f"not a Python format string ({err}): {pattern!r:.80}") from None
    for literal, name, spec, conversion in parsed:
        text += literal
        if name is None:
            continue
        out.append(_literal(text))
        text = ""
        out.append(_field(name, spec, conversion, mapping))
    return "".join([*out, _literal(text)])


def _field(name: str, spec: str | None, conversion: str | None, mapping: FlanMapping) -> str:
    """The Jinja for one ``{field}`` of a pattern."""
    if spec or conversion:
        raise TaskmillError(f"field '{{{name}}}' uses a format spec or conversion, which has no Jinja form")
    if name in OPTIONS_FIELDS and name not in mapping.fields:
        if mapping.answer_choices is None:
            raise TaskmillError(f"'{{{name}}}' lists the options, but mapping '{mapping.name}' has no answer_choices")
        return OPTIONS_BLOCK
    expr = mapping.fields.get(name)
    if expr is None:
        raise TaskmillError(f"mapping '{mapping.name}' has no expression for FLAN field '{name}'")
    return "{{ " + expr + " }}"


def pattern_fields(pattern: str) -> set[str]:
    """Field names a FLAN format string uses (empty when it does not parse)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError:
        return set()


def _pattern_template(task: str, index: int, pattern: tuple[str, str], mapping: FlanMapping) -> Template:
    source_in, source_out = (convert_pattern(p, mapping) for p in pattern)
    original = pattern[1].strip() == "{answer}"
    uses_options = bool(pattern_fields(pattern[0]) & OPTIONS_FIELDS)
    needs_choices = original or uses_options or "answer_choices" in variables(source_in) | variables(source_out)
    template = Template(
        id=f"flan-{mapping.name}-{index}",
        name=f"flan {task} {index}",
        input=source_in,
        target=source_out,
        answer_choices=mapping.answer_choices if needs_choices else None,
        metadata=TemplateMetadata(
            original_task=original, choices_in_prompt=uses_options,
            metrics=mapping.metrics if original else ("ROUGE",), languages=("en",),
        ),
        reference=f"FLAN (Wei et al., 2022), task {task}, pattern {index}",
    )
    compile_template(template)  # a bad field expression fails here, naming the template
    return template


def convert_task(patterns: dict[str, list[tuple[str, str]]], mapping: FlanMapping) -> Conversion:
    """Convert every pattern of ``mapping.flan_task``; patterns needing an absent field are skipped.

    Raises:
        ConfigError: Fields the mapping does not cover (all listed), or a pattern that cannot convert.
    """
    task = mapping.flan_task
    if task not in patterns:
        raise TaskmillError(f"FLAN has no task '{task}' (tasks: {', '.join(sorted(patterns))})")
    used = set().union(*(pattern_fields(p) for pair in patterns[task] for p in pair))
    missing = sorted(used - set(mapping.fields) - OPTIONS_FIELDS)
    if missing:
        raise ConfigError([f"mapping '{mapping.name}' has no expression for FLAN field '{f}'" for f in missing])
    templates, skipped = [], []
    for index, pair in enumerate(patterns[task]):
        absent = sorted(f for f in pattern_fields(pair[0]) | pattern_fields(pair[1]) if f in mapping.fields and mapping.fields[f] is None)
        if absent:
            skipped.append(f"pattern {index}: dataset has no {', '.join(absent)}")
            continue
        try:
            templates.append(_pattern_template(task, index, pair, mapping))
        except TaskmillError as err:
            raise TaskmillError(f"FLAN task '{task}' pattern {index}: {err.message}", template=err.template) from None
    if not templates:
        raise TaskmillError(f"FLAN task '{task}': every pattern needs a field mapping '{mapping.name}' lacks")
    tf = TemplateFile("", mapping.dataset, mapping.subset, tuple(templates))
    return Conversion(tf, tuple(skipped))


def with_overrides(mapping: FlanMapping, fields: dict[str, str], answer_choices: str | None,
                   dataset: str | None) -> FlanMapping:
    """A mapping with command-line overrides applied (``dataset`` may be ``id/config``)."""
    changes: dict[str, Any] = {"fields": {**mapping.fields, **fields}}
    if answer_choices is not None:
        changes["answer_choices"] = answer_choices
    if dataset is not None:
        changes["dataset"], _, subset = dataset.partition("/")
        changes["subset"] = subset or None
    return replace(mapping, **changes)


def flan_patterns_path(path: str | Path | None) -> Path:
    """The FLAN patterns file: the given path, else ``$TASKMILL_FLAN_TEMPLATES``."""
    if path is not None:
        return Path(path)
    if os.environ.get(FLAN_ENV):
        return Path(os.environ[FLAN_ENV])
    raise TaskmillError(f"pass --flan PATH to FLAN's flan_templates.json (or set {FLAN_ENV})")


def convert_flan(task: str, out: str | Path, *, flan: str | Path | None = None, mapping: str | None = None,
                 fields: dict[str, str] | None = None, answer_choices: str | None = None,
                 dataset: str | None = None) -> Conversion:
    """Convert one FLAN task to a taskmill template file written atomically at ``out``.

    Args:
        task: FLAN task name (a key of ``flan_templates.json``).
        out: Where to write the taskmill YAML file.
        flan: Path of ``flan_templates.json`` (default ``$TASKMILL_FLAN_TEMPLATES``).
        mapping: A shipped mapping's name, ``FILE.yaml`` or ``FILE.yaml:NAME``; default: the
            shipped mapping for ``task``, or an empty one when ``dataset`` and ``fields`` are given.
        fields: Field expressions that override or extend the mapping's.
        answer_choices: Answer choices source overriding the mapping's.
        dataset: HF ``id`` or ``id/config`` overriding the mapping's.
    """
    patterns = load_patterns(flan_patterns_path(flan))
    if mapping is None and dataset is not None and fields:
        base = FlanMapping(name=task, flan_task=task, dataset="")
    else:
        base = resolve_mapping(task, mapping)
    base = replace(base, flan_task=task)
    conversion = convert_task(patterns, with_overrides(base, fields or {}, answer_choices, dataset))
    tf = replace(conversion.template_file, path=str(out))
    write_template_file(tf, out)
    return replace(conversion, template_file=tf)
