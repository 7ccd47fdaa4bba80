"""Task-side views of a task: what it asks, not what its rows are about.

Three views read a task's rows per template and ignore the row content itself:

* **template** — the template's words with row values masked, recovered from the renderings: a
  word is template text when most renderings of that template contain it; the runs of other words
  are the row's values and become a placeholder named by their shape (``{word}``, ``{sentence}``,
  ``{passage}``, ``{number}``). Fixed label sets (``positive | negative``) belong to the template
  and are added to its text. The template view embeds these sketches only for tasks whose corpus
  manifest does not record the templates' own masked text (``templates[].template_texts``, see
  :mod:`taskmill.clusters.schema`): corpora without a manifest, older corpora whose template files
  moved, Super-NaturalInstructions tasks. The slots the sketches find still feed the shape view.
* **answer** — the answer space: open-ended or choices, how many choices, whether they are a fixed
  label set or change per row, whether the choices are shown in the prompt, the target's length,
  whether it is a number or a span of the prompt, and the templates' metrics.
* **shape** — the input shape: how many row values the prompt holds and of which kind (word,
  sentence, passage, number), prompt length, lettered options, dialogue turns, math and code
  symbols in the values.

Only rows of templates that ask the dataset's original task (``original_task``) are read when a
task has any: the other templates ask something else of the same rows (write a review given its
label), which says little about the task. The numeric views are z-scored per feature over the
corpus, so they say how a task differs from the others.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskmill.records import Row

if TYPE_CHECKING:
    import numpy as np

TOKEN = re.compile(r"\w+|[^\w\s]")
TEMPLATE_SHARE = 0.8  # a word is template text when at least this share of the template's renderings hold it
SLOT_KINDS = ("word", "sentence", "passage", "number")
LETTERED = re.compile(r"(?m)(^|\s)(\(?[A-Ea-e1-5][\).:])\s")
SPEAKER = re.compile(r"(?m)^\s*[A-Z][\w .]{0,20}:\s")
MATH = re.compile(r"[=+*/^%$]|\d+\s*[-+*/x]\s*\d+")
CODE = re.compile(r"[{};]|\bdef\b|\breturn\b|\bimport\b|==|=>")


@dataclass(frozen=True)
class TemplateSketch:
    """What one template of a task looks like once the row values are masked.

    Attributes:
        text: The template's words with placeholders for the row values, plus a fixed label set.
        slots: Placeholder kinds in prompt order (``word``, ``sentence``, ``passage``, ``number``).
        rows: The rows it was read from.
    """

    text: str
    slots: tuple[str, ...]
    rows: tuple[Row, ...]


def tokens(text: str) -> list[str]:
    """Words and punctuation marks of ``text``, in order."""
    return TOKEN.findall(text)


def _slot_kind(run: Sequence[str]) -> str:
    words = [t for t in run if t[0].isalnum()]
    if words and sum(t.isdigit() for t in words) >= 0.5 * len(words):
        return "number"
    if len(words) <= 3:
        return "word"
    return "sentence" if len(words) <= 40 else "passage"


def _is_stop_word(token: str) -> bool:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return token.lower() in ENGLISH_STOP_WORDS


def _is_filler(token: str) -> bool:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return not token[0].isalnum() or token.lower() in ENGLISH_STOP_WORDS


def mask_prompt(prompt: str, template_words: set[str]) -> tuple[str, tuple[str, ...]]:
    """``prompt`` with every run of non-template words replaced by a ``{kind}`` placeholder.

    A run of kept tokens made only of stop words and punctuation ("of the", ", and") is row text
    that happens to be frequent, so it is masked too, unless it is the whole prompt; so are stop
    words at either edge of a kept run that touches a masked run.
    """
    toks = tokens(prompt)
    keep = [t.lower() in template_words for t in toks]
    i = 0
    while i < len(toks):
        if not keep[i]:
            i += 1
            continue
        j = i
        while j < len(toks) and keep[j]:
            j += 1
        if all(_is_filler(t) for t in toks[i:j]) and (i > 0 or j < len(toks)):
            keep[i:j] = [False] * (j - i)
        else:  # stop words at the edge of a row value ("Review: the {x}") belong to the value
            while i < j and i > 0 and _is_stop_word(toks[i]):
                keep[i], i = False, i + 1
            while j > i and j < len(toks) and _is_stop_word(toks[j - 1]):
                keep[j - 1], j = False, j - 1
        i = max(i + 1, j)
    out: list[str] = []
    slots: list[str] = []
    run: list[str] = []
    for tok, kept in zip(toks, keep):
        if kept:
            if run:
                slots.append(_slot_kind(run))
                out.append("{" + slots[-1] + "}")
                run = []
            out.append(tok)
        else:
            run.append(tok)
    if run:
        slots.append(_slot_kind(run))
        out.append("{" + slots[-1] + "}")
    return " ".join(out), tuple(slots)


def fixed_choices(rows: Sequence[Row]) -> tuple[str, ...] | None:
    """The template's label set when every row offers the same choices, else None."""
    sets = {r.answer_choices for r in rows}
    if len(sets) == 1 and None not in sets:
        return next(iter(sets))
    return None


def sketch_template(rows: Sequence[Row]) -> TemplateSketch:
    """Recover one template's text from its renderings (``rows``: one template, one task).

    With a single rendering nothing can be told apart, so every word counts as template text.
    """
    n = len(rows)
    share = Counter(w for r in rows for w in {t.lower() for t in tokens(r.prompt)})
    need = max(2, math.ceil(TEMPLATE_SHARE * n)) if n > 1 else 1
    words = {w for w, c in share.items() if c >= need}
    text, slots = mask_prompt(rows[0].prompt, words)
    labels = fixed_choices(rows)
    if labels:
        text += "\n" + " | ".join(labels)
    return TemplateSketch(text, slots, tuple(rows))


def task_rows_for_views(rows: Sequence[Row]) -> list[Row]:
    """Zero-shot rows (any format when none), of original-task templates when the task has any."""
    from taskmill.clusters.represent import ZERO_SHOT_FORMATS

    pool = [r for r in rows if r.format in ZERO_SHOT_FORMATS] or list(rows)
    original = [r for r in pool if r.original_task]
    return original or pool


def sketch_task(rows: Sequence[Row], per_template: int, seed: int) -> list[TemplateSketch]:
    """One sketch per template of a task, each from up to ``per_template`` hash-sampled rows."""
    from taskmill.clusters.represent import _order_key

    by_template: dict[str, list[Row]] = {}
    for row in sorted(task_rows_for_views(rows), key=lambda r: _order_key(seed, r.id)):
        by_template.setdefault(row.template_id, []).append(row)
    return [sketch_template(by_template[t][:per_template]) for t in sorted(by_template)]


# --- numeric views --------------------------------------------------------------------------------

ANSWER_FEATURES = (
    "open-ended", "choices", "2 choices", "3 choices", "4 choices", "5+ choices", "fixed label set",
    "choices per row", "choices in prompt", "target 1 word", "target 2-3 words", "target 4-10 words",
    "target 11-30 words", "target 31+ words", "target is a number", "target is a span of the prompt",
)
SHAPE_FEATURES = (
    "1 value", "2 values", "3 values", "4+ values", "word values", "sentence values", "passage values",
    "number values", "prompt <= 30 words", "prompt 31-100 words", "prompt 101-300 words", "prompt 300+ words",
    "lettered options", "dialogue turns", "math symbols", "code symbols", "question in the values",
)


def _length_bucket(n_words: int, edges: Sequence[int]) -> int:
    return next((i for i, edge in enumerate(edges) if n_words <= edge), len(edges))


def _answer_row(row: Row, fixed: bool) -> list[float]:
    choices = row.answer_choices
    n = len(choices) if choices else 0
    target = row.completion.strip()
    words = len(target.split())
    length = [0.0] * 5
    length[_length_bucket(words, (1, 3, 10, 30))] = 1.0
    shown = bool(choices) and all(c.lower() in row.prompt.lower() for c in choices)
    return [
        float(not choices), float(bool(choices)), float(n == 2), float(n == 3), float(n == 4), float(n >= 5),
        float(bool(choices) and fixed), float(bool(choices) and not fixed), float(shown), *length,
        float(bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+", target))),
        float(words > 0 and not choices and target.lower() in row.prompt.lower()),
    ]


def _values_text(prompt: str, sketch_words: set[str]) -> str:
    return " ".join(t for t in tokens(prompt) if t.lower() not in sketch_words)


def _shape_row(row: Row, sketch: TemplateSketch, template_words: set[str]) -> list[float]:
    slots = sketch.slots
    n = len(slots)
    count = [0.0] * 4
    if n:
        count[min(n, 4) - 1] = 1.0
    kinds = [slots.count(k) / max(n, 1) for k in SLOT_KINDS]
    length = [0.0] * 4
    length[_length_bucket(len(row.prompt.split()), (30, 100, 300))] = 1.0
    values = _values_text(row.prompt, template_words)
    return [
        *count, *kinds, *length,
        float(len(LETTERED.findall(row.prompt)) >= 2),
        float(len(SPEAKER.findall(row.prompt)) >= 2),
        float(bool(MATH.search(values))),
        float(bool(CODE.search(values))),
        float("?" in values),
    ]


def numeric_views(sketches: dict[str, list[TemplateSketch]]) -> tuple[np.ndarray, np.ndarray]:
    """Answer-space and input-shape features per task: ``(n_tasks, 16 + metrics)``, ``(n_tasks, 17)``.

    Each feature is a share of the task's rows (templates weigh by their sampled rows). Metric names
    seen in the corpus are one more answer feature each.
    """
    import numpy as np

    metrics = sorted({m for ss in sketches.values() for s in ss for r in s.rows for m in r.metrics})
    answer, shape = [], []
    for task_sketches in sketches.values():
        a_rows, s_rows = [], []
        for sketch in task_sketches:
            fixed = fixed_choices(sketch.rows) is not None and len(sketch.rows) > 1
            words = {w.lower() for w in tokens(sketch.text)}
            for row in sketch.rows:
                a_rows.append(_answer_row(row, fixed) + [float(m in row.metrics) for m in metrics])
                s_rows.append(_shape_row(row, sketch, words))
        answer.append(np.mean(a_rows, axis=0) if a_rows else np.zeros(len(ANSWER_FEATURES) + len(metrics)))
        shape.append(np.mean(s_rows, axis=0) if s_rows else np.zeros(len(SHAPE_FEATURES)))
    return np.vstack(answer), np.vstack(shape)


def answer_feature_names(sketches: dict[str, list[TemplateSketch]]) -> list[str]:
    """Names of the answer view's columns (the fixed ones, then ``metric <name>``)."""
    metrics = sorted({m for ss in sketches.values() for s in ss for r in s.rows for m in r.metrics})
    return [*ANSWER_FEATURES, *(f"metric {m}" for m in metrics)]


def standardise(matrix: np.ndarray) -> np.ndarray:
    """Columns z-scored over the tasks (constant columns become 0), rows scaled to unit length."""
    import numpy as np

    from taskmill.clusters.represent import l2_normalise

    std = matrix.std(axis=0)
    z = (matrix - matrix.mean(axis=0)) / np.where(std < 1e-9, 1.0, std)
    return l2_normalise(z)
