"""Converting FLAN's format-string patterns into taskmill templates.

FLAN ships ``{task: [[input, target], ...]}`` Python format strings over its own preprocessed
fields (``{premise}``, ``{options_}``, ``{answer}``, ...). Those names are not the Hugging Face
column names, so a :class:`FlanMapping` says, per dataset, which Jinja expression over the HF row
each FLAN field is, and which Jinja source gives the answer choices. ``{options_}`` becomes a
Jinja block that lists the answer choices as FLAN does (``OPTIONS:\\n- a\\n- b``).

Each template's metadata comes from the FLAN task's kind (:data:`FLAN_TASKS`, after the clusters
of FLAN's ``flan/task_splits.py``): a pattern is the original task when its target is the field
the task's own patterns output (``{answer}`` for a classification task, ``{summary}`` for
summarisation, ``{sent2}`` from ``{sent1}`` or back for translation, ...), and it is scored with
the kind's metric (Accuracy, ROUGE, BLEU, Squad, Exact Match). A task FLAN does not have gets its
kind from its patterns. A mapping may override the kind, the target fields and any metadata.

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
from taskmill.templates.dataset_ids import split_dataset_id
from taskmill.templates.engine import compile_template, variables
from taskmill.templates.fileformat import write_template_file
from taskmill.fileio import read_yaml

MAPPINGS_FILE = Path(__file__).with_name("flan_mappings.yaml")
# FLAN fields that stand for the options block (record calls it options_str).
OPTIONS_FIELDS = frozenset({"options_", "options_str"})
OPTIONS_BLOCK = "OPTIONS:{% for option in answer_choices %}\n- {{ option }}{% endfor %}"
FLAN_ENV = "TASKMILL_FLAN_TEMPLATES"
_MAPPING_KEYS = {"flan_task", "dataset", "subset", "fields", "answer_choices", "metrics", "kind", "targets",
                 "metadata", "pattern_metadata"}
_METADATA_KEYS = ("original_task", "choices_in_prompt", "metrics", "languages")

# Kind of FLAN task -> the metrics its original-task patterns are scored with (eval.metrics names).
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("Accuracy",),   # the answer is one of the options
    "summarisation": ("ROUGE",),
    "translation": ("BLEU",),
    "qa": ("Squad",),                  # extractive / open-domain / conversational question answering
    "struct_to_text": ("ROUGE",),
    "text_formatting": ("Exact Match",),
    "math": ("Exact Match",),
    "generation": ("ROUGE",),          # any other open-ended output
}
NON_ORIGINAL_METRICS = ("ROUGE",)  # patterns that ask for something else (an inverted task): free text
# A translation pattern translates when its target is one side and its input shows the other.
_TRANSLATION_SOURCE = {"sent2": "sent1", "sent1": "sent2"}


@dataclass(frozen=True)
class FlanTask:
    """The kind of a FLAN task and the fields its own (original-task) patterns output.

    Attributes:
        kind: A key of :data:`KIND_METRICS`.
        targets: FLAN fields whose pattern ``{field}`` as the whole target is the original task.
    """

    kind: str
    targets: tuple[str, ...] = ("answer",)


def _tasks(kind: str, *names: str, targets: tuple[str, ...] = ("answer",)) -> dict[str, FlanTask]:
    return {name: FlanTask(kind, targets) for name in names}


# The tasks of FLAN's templates.py (keys of flan_templates.json), by kind. Kinds follow the task
# clusters of FLAN's flan/task_splits.py, folded by how the original task is scored: every cluster
# whose answer is picked from options is "classification" (ag_news_subset, which FLAN files under
# summarization, asks for the topic from options: its patterns' own target is the label).
FLAN_TASKS: dict[str, FlanTask] = {
    **_tasks("classification", "rte", "cb", "anli", "mnli", "qnli", "wnli", "snli",   # entailment
             "copa", "hellaswag", "story_cloze", "piqa",                               # common sense
             "imdb_reviews", "sentiment140", "yelp_polarity_reviews", "sst2",          # sentiment
             "glue_mrpc", "glue_qqp", "paws_wiki",                                     # paraphrase
             "definite_pronoun_resolution", "winogrande", "wsc", "wsc273",             # coreference
             "multirc", "openbookqa", "bool_q", "arc", "record", "cosmos_qa",          # reading comp., QA
             "wic", "cola", "trec", "ag_news_subset"),
    "stsb": FlanTask("classification", ("answer_str",)),
    **_tasks("qa", "squad_v1", "squad_v2", "drop", "trivia_qa", "natural_questions", "quac"),
    "coqa": FlanTask("qa", ("numbered_answers",)),
    **_tasks("summarisation", "gigaword", "multi_news", "newsroom", "samsum", "xsum", targets=("summary",)),
    "aeslc": FlanTask("summarisation", ("subject",)),
    "cnn_dailymail": FlanTask("summarisation", ("highlights",)),
    "opinion_abstracts_rotten_tomatoes": FlanTask("summarisation", ("critic_consensus",)),
    "opinion_abstracts_idebate": FlanTask("summarisation", ("claim",)),
    "wiki_lingua_english_en": FlanTask("summarisation", ("target",)),
    **_tasks("struct_to_text", "common_gen", "dart", "e2e_nlg", "web_nlg_en", targets=("target",)),
    **_tasks("translation", "para_crawl", "wmt16_translate", "wmt14_enfr", targets=("sent2", "sent1")),
    **_tasks("text_formatting", "true_case", "fix_punct", "word_segment"),
    "math_dataset": FlanTask("math"),
}


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
        metrics: Metrics of the original-task patterns (empty: the kind's, :data:`KIND_METRICS`).
        kind: The FLAN task's kind (None: :data:`FLAN_TASKS`, else derived from the patterns).
        targets: FLAN fields whose patterns are the original task (empty: the kind's).
        metadata: Metadata set on every converted template (keys of ``TemplateMetadata``).
        pattern_metadata: Pattern index -> metadata of that pattern's template (applied last).
    """

    name: str
    flan_task: str
    dataset: str
    subset: str | None = None
    fields: dict[str, str | None] = field(default_factory=dict)
    answer_choices: str | None = None
    metrics: tuple[str, ...] = ()
    kind: str | None = None
    targets: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    pattern_metadata: dict[int, dict[str, Any]] = field(default_factory=dict)


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
    metrics = _strings(raw.get("metrics"), f"{where}: 'metrics'", problems)
    targets = _strings(raw.get("targets"), f"{where}: 'targets'", problems)
    kind = raw.get("kind")
    if kind is not None and kind not in KIND_METRICS:
        problems.append(f"{where}: unknown kind '{kind}' (expected one of {', '.join(KIND_METRICS)})")
        kind = None
    metadata = _metadata_override(raw.get("metadata"), f"{where}: metadata", problems)
    per_pattern: dict[int, dict[str, Any]] = {}
    raw_patterns = raw.get("pattern_metadata") or {}
    if not isinstance(raw_patterns, dict):
        problems.append(f"{where}: 'pattern_metadata' must map pattern indices to metadata")
        raw_patterns = {}
    for index, value in raw_patterns.items():
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            problems.append(f"{where}: pattern_metadata key '{index}' must be a pattern index (0, 1, ...)")
            continue
        per_pattern[index] = _metadata_override(value, f"{where}: pattern_metadata {index}", problems)
    return FlanMapping(name, str(raw.get("flan_task") or name), str(raw.get("dataset") or ""), raw.get("subset"),
                       {str(k): v for k, v in fields.items()}, raw.get("answer_choices"), metrics, kind, targets,
                       metadata, per_pattern)


def _strings(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    """A list of strings (absent: empty), else a problem."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        problems.append(f"{where} must be a list of strings")
        return ()
    return tuple(raw)


def _metadata_override(raw: Any, where: str, problems: list[str]) -> dict[str, Any]:
    """Validated ``TemplateMetadata`` values (lists as tuples) from a mapping's metadata block."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping with {', '.join(_METADATA_KEYS)}")
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _METADATA_KEYS:
            problems.append(f"{where}: unknown key '{key}' (expected one of {', '.join(_METADATA_KEYS)})")
        elif key in ("original_task", "choices_in_prompt"):
            if isinstance(value, bool) or value is None:
                out[key] = value
            else:
                problems.append(f"{where}: '{key}' must be true, false or null")
        elif (strings := _strings(value, f"{where}: '{key}'", problems)) or value == []:
            out[key] = strings
    return out


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


def _whole_field(pattern: str) -> str | None:
    """The field a pattern consists of (``{summary}`` -> ``summary``), or None."""
    pattern = pattern.strip()
    name = pattern[1:-1]
    return name if pattern == "{" + name + "}" and name.isidentifier() else None


def task_kind(task: str, patterns: list[tuple[str, str]], mapping: FlanMapping) -> FlanTask:
    """The kind and original-task targets of a FLAN task: the mapping's, FLAN's, or derived.

    A task FLAN does not have is a classification task when its patterns list options, else a
    generation task whose own target is the field its patterns output most often.
    """
    known = FLAN_TASKS.get(task)
    if known is None:
        if any(pattern_fields(p[0]) & OPTIONS_FIELDS for p in patterns):
            known = FlanTask("classification")
        else:
            outputs = [f for p in patterns if (f := _whole_field(p[1])) is not None]
            top = max(dict.fromkeys(outputs), key=outputs.count) if outputs else None
            known = FlanTask("generation", (top,) if top else ())
    return FlanTask(mapping.kind or known.kind, mapping.targets or known.targets)


def _is_original(pattern: tuple[str, str], kind: FlanTask) -> bool:
    """Whether a pattern asks for the task itself: its whole target is one of the task's targets
    (for translation, with the other side of the pair in its input)."""
    target = _whole_field(pattern[1])
    if target is None or target not in kind.targets:
        return False
    source = _TRANSLATION_SOURCE.get(target) if kind.kind == "translation" else None
    return source is None or source in pattern_fields(pattern[0])


def _pattern_metadata(index: int, original: bool, uses_options: bool, mapping: FlanMapping,
                      kind: FlanTask) -> TemplateMetadata:
    """Metadata from the task's kind, then the mapping's metrics, metadata and per-pattern metadata."""
    metrics = (mapping.metrics or KIND_METRICS[kind.kind]) if original else NON_ORIGINAL_METRICS
    meta = TemplateMetadata(original_task=original, choices_in_prompt=uses_options, metrics=metrics, languages=("en",))
    return replace(meta, **{**mapping.metadata, **mapping.pattern_metadata.get(index, {})})


def _pattern_template(task: str, index: int, pattern: tuple[str, str], mapping: FlanMapping, kind: FlanTask) -> Template:
    source_in, source_out = (convert_pattern(p, mapping) for p in pattern)
    original = _is_original(pattern, kind)
    uses_options = bool(pattern_fields(pattern[0]) & OPTIONS_FIELDS)
    metadata = _pattern_metadata(index, original, uses_options, mapping, kind)
    # The choices come along where the task is a choice among them (or the pattern shows them).
    needs_choices = (original and kind.kind == "classification") or uses_options or (
        "answer_choices" in variables(source_in) | variables(source_out))
    template = Template(
        id=f"flan-{mapping.name}-{index}",
        name=f"flan {task} {index}",
        input=source_in,
        target=source_out,
        answer_choices=mapping.answer_choices if needs_choices else None,
        metadata=metadata,
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
    kind = task_kind(task, patterns[task], mapping)
    for index, pair in enumerate(patterns[task]):
        absent = sorted(f for f in pattern_fields(pair[0]) | pattern_fields(pair[1]) if f in mapping.fields and mapping.fields[f] is None)
        if absent:
            skipped.append(f"pattern {index}: dataset has no {', '.join(absent)}")
            continue
        try:
            templates.append(_pattern_template(task, index, pair, mapping, kind))
        except TaskmillError as err:
            raise TaskmillError(f"FLAN task '{task}' pattern {index}: {err.message}", template=err.template) from None
    if not templates:
        raise TaskmillError(f"FLAN task '{task}': every pattern needs a field mapping '{mapping.name}' lacks")
    tf = TemplateFile("", mapping.dataset, mapping.subset, tuple(templates))
    return Conversion(tf, tuple(skipped))


def with_overrides(mapping: FlanMapping, fields: dict[str, str], answer_choices: str | None,
                   dataset: str | None, kind: str | None = None) -> FlanMapping:
    """A mapping with command-line overrides applied.

    ``dataset`` is read as collections read it (:func:`~taskmill.templates.dataset_ids.split_dataset_id`):
    ``knkarthick/dialogsum`` is one hub repo, ``glue/rte`` dataset ``glue`` with config ``rte``.

    Raises:
        TaskmillError: ``kind`` is not a known kind.
    """
    changes: dict[str, Any] = {"fields": {**mapping.fields, **fields}}
    if answer_choices is not None:
        changes["answer_choices"] = answer_choices
    if dataset is not None:
        changes["dataset"], changes["subset"] = split_dataset_id(dataset)
    if kind is not None:
        if kind not in KIND_METRICS:
            raise TaskmillError(f"unknown FLAN task kind '{kind}' (expected one of {', '.join(KIND_METRICS)})")
        changes["kind"] = kind
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
                 dataset: str | None = None, kind: str | None = None) -> Conversion:
    """Convert one FLAN task to a taskmill template file written atomically at ``out``.

    Args:
        task: FLAN task name (a key of ``flan_templates.json``).
        out: Where to write the taskmill YAML file.
        flan: Path of ``flan_templates.json`` (default ``$TASKMILL_FLAN_TEMPLATES``).
        mapping: A shipped mapping's name, ``FILE.yaml`` or ``FILE.yaml:NAME``; default: the
            shipped mapping for ``task``, or an empty one when ``dataset`` and ``fields`` are given.
        fields: Field expressions that override or extend the mapping's.
        answer_choices: Answer choices source overriding the mapping's.
        dataset: HF id overriding the mapping's (``name``, ``owner/name``, ``name/config`` or
            ``owner/name/config``, read as :func:`~taskmill.templates.dataset_ids.split_dataset_id`).
        kind: FLAN task kind overriding FLAN's (a key of :data:`KIND_METRICS`).
    """
    patterns = load_patterns(flan_patterns_path(flan))
    if mapping is None and dataset is not None and fields:
        base = FlanMapping(name=task, flan_task=task, dataset="")
    else:
        base = resolve_mapping(task, mapping)
    base = replace(base, flan_task=task)
    conversion = convert_task(patterns, with_overrides(base, fields or {}, answer_choices, dataset, kind))
    tf = replace(conversion.template_file, path=str(out))
    write_template_file(tf, out)
    return replace(conversion, template_file=tf)
