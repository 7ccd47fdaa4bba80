"""The schema view of a task: what its source fields and its labels are called (and, read from the
same manifest entries, its templates' own masked text for the template view).

What a dataset calls its fields (``premise`` / ``hypothesis``, ``question`` / ``choices`` /
``answerKey``, ``document`` / ``summary``) and its labels (``entailment | neutral |
contradiction``) says what the task is, whatever its rows are about. A task's schema is read
honestly at clustering time from what built the corpus:

* **fields** — the row fields its templates read (their Jinja free variables, as the template
  engine compiles them), only of the templates whose rows the other task-side views read
  (:func:`taskmill.clusters.views.task_rows_for_views`: the original-task templates when the task
  has any). The build records every template's fields in the corpus's ``manifest.json``
  (``templates[].template_fields``: template id -> fields), so they are read from there, whatever
  became of the template files since. Corpora built before that key existed fall back to the
  template files the manifest lists, read only when their sha256 still matches (library files
  from the installed package; a collection's own files as written, absolute or relative to the
  corpus folder's parent). A corpus without a manifest, or an older one whose template files moved
  or changed, has no field names: its schema view is empty (its label names are still shown).
* **labels** — the label names: the answer choices of those templates that are the same on every
  row (a fixed label set), lowercased, as the corpus rows carry them. Integer class labels of the
  source data are never shown to the model, so the verbalised choices are the names that count.

* **template texts** — each of those templates' own text with every row value masked
  (:func:`taskmill.templates.engine.masked_text`), recorded beside the fields
  (``templates[].template_texts``) and read the same way; the template view embeds them.

Field names are split into words (``answerKey`` -> ``answer key``, ``sentence1`` -> ``sentence 1``,
``span1_text`` -> ``span 1 text``) and embedded with the same embedder as the other text views
(:func:`schema_texts`); the label names are not embedded here (the template view's text already
holds them) but shown in ``summary.md``. No dataset, task or taxonomy name is part of the view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from taskmill.records import Row

LIBRARY_PREFIX = "taskmill/templates/library/"
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")


@dataclass(frozen=True)
class TaskSchema:
    """A task's field names and label names.

    Attributes:
        fields: Row fields its templates read, sorted (empty when the templates could not be read).
        labels: Fixed label names of its templates, lowercased, first-seen order over its templates.
        template_texts: Its templates' own text with every row value masked
            (:func:`taskmill.templates.engine.masked_text`), in template id order: what the
            template view embeds (empty when the templates could not be read).
    """

    fields: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    template_texts: tuple[str, ...] = ()


def field_words(name: str) -> str:
    """``answerKey`` -> ``answer key``; ``sentence1`` -> ``sentence 1``; ``ctx_a`` -> ``ctx a``."""
    return " ".join(_CAMEL.sub(" ", re.sub(r"[^0-9A-Za-z]+", " ", name)).lower().split())


def schema_texts(schema: TaskSchema, with_labels: bool = False) -> list[str]:
    """The texts of a schema: one for the field names (``fields: premise, hypothesis``), and with
    ``with_labels`` one for the label names (``labels: yes | no``), each only when present.

    The schema view embeds the field names alone (a task without them has no text and a zero
    vector): the label names are already in the template view's text, which ends with each fixed
    label set, and embedding them here too held out worse (leave-one-dataset-out ARI 0.525 with
    them, 0.604 without, on the template view of the templates' own text; 0.466 and 0.518 on the
    recovered one; README, "How the view weights were chosen"). ``summary.md`` shows both.
    """
    texts = []
    if schema.fields:
        texts.append("fields: " + ", ".join(field_words(f) for f in schema.fields))
    if with_labels and schema.labels:
        texts.append("labels: " + " | ".join(schema.labels))
    return texts


def label_names(rows: Sequence[Row]) -> tuple[str, ...]:
    """Fixed label sets of the templates of ``rows`` (rows whose choices differ across a template's
    rows are per-row choices, not labels), lowercased and deduplicated in template order."""
    by_template: dict[str, set[tuple[str, ...] | None]] = {}
    for row in rows:
        by_template.setdefault(row.template_id, set()).add(row.answer_choices)
    names: dict[str, None] = {}
    for template in sorted(by_template):
        sets = by_template[template]
        if len(sets) == 1 and None not in sets:
            for choice in next(iter(sets)):  # type: ignore[union-attr]
                names.setdefault(" ".join(choice.lower().split()), None)
    return tuple(n for n in names if n)


def _manifest(corpus_dir: Path) -> dict | None:
    from taskmill.builders.writer import MANIFEST

    path = corpus_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def template_entries(corpus_dir: str | Path | None) -> list[dict]:
    """The ``templates`` entries of a corpus's ``manifest.json`` (per task: its template file, sha256,
    recorded fields and masked texts); none when the corpus has no readable manifest."""
    manifest = _manifest(Path(corpus_dir)) if corpus_dir is not None else None
    entries = (manifest or {}).get("templates")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _template_file(corpus_dir: Path, entry: dict) -> Path | None:
    """The template file a manifest entry names, when it is still the file the corpus was built from."""
    from taskmill.fileio import sha256_file
    from taskmill.templates.dataset_ids import LIBRARY

    label = str(entry.get("path") or "")
    if not label:
        return None
    if label.startswith(LIBRARY_PREFIX):
        candidates = [LIBRARY / label[len(LIBRARY_PREFIX):]]
    else:
        given = Path(label)
        candidates = [given] if given.is_absolute() else [corpus_dir.parent / given, corpus_dir / given]
    for path in candidates:
        if path.is_file() and sha256_file(path) == entry.get("sha256"):
            return path
    return None


def _file_templates(path: Path) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """(template id -> row fields, template id -> masked text) of a template file (older corpora,
    whose manifest has not recorded them); a file that no longer loads, or a template that no
    longer compiles, reads none."""
    from taskmill.errors import TaskmillError
    from taskmill.templates.engine import masked_text, template_fields
    from taskmill.templates.fileformat import load_template_file

    try:
        templates = load_template_file(path).templates
    except TaskmillError:
        return {}, {}
    fields: dict[str, tuple[str, ...]] = {}
    texts: dict[str, str] = {}
    for template in templates:
        try:
            fields.update((k, tuple(v)) for k, v in template_fields([template]).items())
        except TaskmillError:
            continue
        texts[template.id] = masked_text(template)
    return fields, texts


def recorded_fields(entry: dict) -> dict[str, tuple[str, ...]] | None:
    """The manifest entry's ``template_fields`` (template id -> row fields, written by the build),
    or None when the entry has none (corpora built before it was recorded) or it is malformed."""
    recorded = entry.get("template_fields")
    if not isinstance(recorded, dict):
        return None
    out = {}
    for template_id, fields in recorded.items():
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            return None
        out[str(template_id)] = tuple(fields)
    return out


def recorded_texts(entry: dict) -> dict[str, str] | None:
    """The manifest entry's ``template_texts`` (template id -> masked text, written by the build),
    or None when the entry has none (corpora built before it was recorded) or it is malformed."""
    recorded = entry.get("template_texts")
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        return None
    return {str(k): v for k, v in recorded.items()}


def _entry_templates(corpus_dir: Path, entry: dict) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """(template id -> row fields, template id -> masked text) of a manifest entry: as recorded,
    else from its template file while its sha256 still matches, else none."""
    fields, texts = recorded_fields(entry), recorded_texts(entry)
    if fields is None or texts is None:
        path = _template_file(corpus_dir, entry)
        from_file: tuple[dict[str, tuple[str, ...]], dict[str, str]] = _file_templates(path) if path is not None else ({}, {})
        fields = from_file[0] if fields is None else fields
        texts = from_file[1] if texts is None else texts
    return fields, texts


def _fields_of(recorded: dict[str, tuple[str, ...]], template_ids: set[str]) -> tuple[str, ...]:
    return tuple(sorted({f for t in template_ids for f in recorded.get(t, ())}))


def read_schemas(corpus_dir: str | Path | None, rows_by_task: dict[str, list[Row]]) -> dict[str, TaskSchema]:
    """Each task's schema (task order kept): its fields and masked template texts as the corpus
    manifest records them (``templates[].template_fields`` and ``template_texts``, written by the
    build), else read from the template files it lists while their sha256 still matches (older
    corpora), else none; its labels from its rows."""
    from taskmill.clusters.views import task_rows_for_views

    entries: dict[str, dict] = {}
    for entry in template_entries(corpus_dir):
        entries.setdefault(str(entry.get("task")), entry)
    out = {}
    for task, rows in rows_by_task.items():
        view_rows = task_rows_for_views(rows)
        entry = entries.get(task)
        ids = {r.template_id for r in view_rows}
        fields, texts = _entry_templates(Path(corpus_dir), entry) if entry else ({}, {})  # type: ignore[arg-type]
        out[task] = TaskSchema(_fields_of(fields, ids), label_names(view_rows), tuple(texts[t] for t in sorted(ids) if texts.get(t)))
    return out
