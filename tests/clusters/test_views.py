"""Task-side views: masked templates, answer space, input shape, and clusters that follow the task, not the topic."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.manifest import Overrides
from taskmill.clusters.represent import DEFAULT_WEIGHTS, RepresentConfig, combine, parse_weights
from taskmill.clusters.run import cluster_corpus, run_clustering
from taskmill.clusters.synthetic import make_row
from taskmill.clusters.views import mask_prompt, sketch_template
from taskmill.clusters.weights import pair_ari, weight_grid
from taskmill.errors import ConfigError
from taskmill.records import Row

# Topic vocabularies: what rows are *about*. A task draws its row content from one of them.
TOPICS = {
    "restaurant": "waiter soup pasta dessert menu chef table kitchen wine bread salad sauce grill oven plate fork napkin cook bill tip".split(),
    "movie": "actor plot director soundtrack scene script camera ending cast villain sequel trailer studio editor stunt costume dialogue hero premiere screen".split(),
    "science": "chemist molecule telescope laboratory enzyme particle fossil reactor microscope orbit neuron protein comet magnet crystal genome isotope galaxy sample beaker".split(),
    "football": "striker goalkeeper referee stadium league coach penalty midfielder trophy fans corner tackle header pitch season derby captain whistle jersey transfer".split(),
    "farm": "tractor cow barn harvest orchard pig sheep hay fence seed goat plough silo duck field wheat pumpkin stable horse mud".split(),
    "shop": "cashier receipt shelf basket customer coupon counter wallet aisle discount trolley bag till price label brand stock sale queue card".split(),
}

SENTIMENT = (("Review: {x}\nIs this review positive or negative?", ("negative", "positive")),
             ("{x}\nDid the writer like it? Answer negative or positive.", ("negative", "positive")))
NLI = (("Premise: {x}\nHypothesis: {y}\nDoes the premise entail the hypothesis? Answer yes, no or maybe.", ("yes", "no", "maybe")),
       ("Suppose {x} Can we infer that {y} Yes, no or maybe?", ("yes", "no", "maybe")))
MATH = (("Solve the word problem and give only the final number.\n{x}", None),
        ("Question: {x}\nWhat number is the answer?", None))


def _sentence(rng: random.Random, words: list[str], n: int = 4) -> str:
    return "the " + " ".join(rng.sample(words, n)) + "."


def _rows(task: str, family: str, topic: str, n: int = 8, seed: int = 0) -> list[Row]:
    """``n`` rows per template of a tiny task of ``family`` whose row values use ``topic``'s words."""
    rng = random.Random(f"{seed}:{task}")
    words = TOPICS[topic]
    rows = []
    templates = {"sentiment": SENTIMENT, "nli": NLI, "math": MATH}[family]
    for t, (template, choices) in enumerate(templates):
        for i in range(n):
            if family == "math":
                a, b = rng.randint(2, 90), rng.randint(2, 90)
                prompt = template.format(x=f"A {rng.choice(words)} had {a} {rng.choice(words)}s and got {b} more. How many now?")
                target = str(a + b)
            else:
                prompt = template.format(x=_sentence(rng, words), y=_sentence(rng, words, 3))
                target = rng.choice(choices)
            row = make_row(task, f"tiny/{task}", t * n + i, prompt, target, template_id=f"{family}-{t}")
            rows.append(replace(row, answer_choices=choices, original_task=True, metrics=("Accuracy",) if choices else ("Exact Match",)))
    return rows


def _corpus(write_corpus, tasks: dict[str, tuple[str, str]], name: str) -> Path:
    return write_corpus([r for task, (family, topic) in tasks.items() for r in _rows(task, family, topic)], name)


TASKS = {
    "sentiment_restaurants": ("sentiment", "restaurant"), "sentiment_movies": ("sentiment", "movie"),
    "nli_science": ("nli", "science"), "nli_football": ("nli", "football"),
    "math_farm": ("math", "farm"), "math_shop": ("math", "shop"),
}


VIEWS_WEIGHTS = {f"{v}_weight": w for v, w in DEFAULT_WEIGHTS["minilm"].items()}


def _partition(run) -> set[frozenset[str]]:
    return {frozenset(c.task_names) for c in run.manifest.clusters}


def test_clusters_follow_the_templates_when_the_rows_topic_changes(write_corpus) -> None:
    """Restaurant and movie sentiment land together, NLI on science and on football lands together;
    rewriting one task's rows in another family's topic words (templates unchanged) moves nothing."""
    # The task-side views with MiniLM's default weights, embedded by TF-IDF (no model needed); the
    # MiniLM default itself is checked by the slow test below.
    _check_topic_invariance(write_corpus, RepresentConfig(embedder="tfidf", **VIEWS_WEIGHTS))


def test_centred_views_also_follow_the_templates_when_the_rows_topic_changes(write_corpus) -> None:
    """The same with the text views centred on the corpus mean (``center=True``)."""
    _check_topic_invariance(write_corpus, RepresentConfig(embedder="tfidf", center=True, **VIEWS_WEIGHTS))


@pytest.mark.slow
def test_minilm_default_clusters_follow_the_templates_when_the_rows_topic_changes(write_corpus) -> None:
    """The same with the default representation (MiniLM and its default view weights)."""
    pytest.importorskip("sentence_transformers")
    _check_topic_invariance(write_corpus, RepresentConfig())


def _check_topic_invariance(write_corpus, config: RepresentConfig) -> None:
    before = cluster_corpus(_corpus(write_corpus, TASKS, "before"), config, ClusterConfig(), Overrides())
    expected = {frozenset(t for t, (f, _) in TASKS.items() if f == family) for family in ("sentiment", "nli", "math")}
    assert _partition(before) == expected
    # Sentiment rows now talk about football and NLI rows about restaurants: the topics of other tasks.
    swapped = {**TASKS, "sentiment_restaurants": ("sentiment", "football"), "nli_science": ("nli", "restaurant")}
    after = cluster_corpus(_corpus(write_corpus, swapped, "after"), config, ClusterConfig(), Overrides())
    assert _partition(after) == expected


def test_masked_template_keeps_the_instruction_and_names_the_slots() -> None:
    rows = _rows("s", "sentiment", "movie")[:8]
    sketch = sketch_template(rows)
    assert sketch.text.startswith("Review : {sentence}")
    assert "Is this review positive or negative ?" in sketch.text and sketch.text.endswith("negative | positive")
    assert sketch.slots == ("sentence",)
    assert not set(TOPICS["movie"]) & set(sketch.text.split())
    text, slots = mask_prompt("Count: 12 34 56 apples", {"count", ":"})
    assert text == "Count : {number}" and slots == ("number",)


def test_cluster_run_writes_the_explanation_and_the_k_plot(write_corpus, tmp_path) -> None:
    corpus = _corpus(write_corpus, TASKS, "explain")
    run = run_clustering(corpus, tmp_path / "out", RepresentConfig(embedder="tfidf", **VIEWS_WEIGHTS), ClusterConfig(k_max=4))
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "## Why these clusters" in summary and "![silhouette over k](k.png)" in summary
    assert (tmp_path / "out" / "k.png").stat().st_size > 1000
    # each task's nearest task is its family sibling, with per-view similarities
    line = next(x for x in summary.splitlines() if x.startswith("| sentiment_movies |"))
    assert line.split("|")[3].strip().startswith("sentiment_restaurants ")
    assert "target is a number (100%)" in summary and "3 choices (100%)" in summary
    assert run.manifest.quality["k"] == 3


def test_weights_combine_as_a_weighted_mean_of_view_cosines() -> None:
    rng = np.random.default_rng(0)
    views = {v: (m := rng.standard_normal((5, 4))) / np.linalg.norm(m, axis=1, keepdims=True) for v in ("template", "answer", "shape", "rows")}
    weights = {"template": 2.0, "answer": 1.0, "shape": 0.0, "rows": 1.0}
    X = combine(views, weights)
    expected = sum(w * views[v] @ views[v].T for v, w in weights.items()) / 4.0
    assert np.allclose(X @ X.T, expected)


def test_weight_grid_pair_ari_and_weight_parsing() -> None:
    grid = weight_grid((0.0, 1.0))
    assert len(grid) == 31 and all(abs(sum(g.values()) - 1) < 1e-5 for g in grid)
    assert grid[0]["rows"] == 0 and grid[-1]["rows"] > 0
    assert pair_ari(tp=3, fp=0, fn=0, tn=7) == 1.0
    assert abs(pair_ari(tp=1, fp=1, fn=1, tn=1)) < 1e-12
    assert parse_weights("template=2, rows=0") == {"template_weight": 2.0, "rows_weight": 0.0}
    with pytest.raises(ConfigError) as err:
        parse_weights("topic=1,rows=x")
    assert "topic=1" in str(err.value) and "rows=x" in str(err.value)
    with pytest.raises(ConfigError):
        RepresentConfig(template_weight=0, answer_weight=0, shape_weight=0, schema_weight=0, rows_weight=0).validate()


def test_center_rows_removes_the_shared_direction() -> None:
    from taskmill.clusters.represent import center_rows

    rng = np.random.default_rng(1)
    shared = np.ones(6) / np.sqrt(6)
    # Three groups of two tasks that all lean one way: raw cosines are all high, centred ones tell groups apart.
    group = rng.standard_normal((3, 6)) * 0.3
    raw = np.vstack([shared + group[i // 2] + rng.standard_normal(6) * 0.02 for i in range(6)])
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    centred = center_rows(raw)
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0)
    cos = centred @ centred.T
    assert min(cos[0, 1], cos[2, 3], cos[4, 5]) > 0.9 and max(cos[0, 2], cos[0, 4], cos[2, 4]) < 0.5
    assert (raw @ raw.T).min() > 0.3  # the uncentred cosines do not go that low
    two = raw[:2]
    assert center_rows(two) is two  # two centred vectors would always be opposite
    assert RepresentConfig().centered() is not None and RepresentConfig(center=False).centered() is False


def test_embed_tasks_encodes_each_distinct_text_once() -> None:
    from taskmill.clusters.represent import embed_tasks

    class Counting:
        name = "counting"

        def __init__(self) -> None:
            self.seen: list[str] = []

        def embed(self, texts):  # noqa: ANN001, ANN202
            self.seen.extend(texts)
            return np.array([[len(t), t.count("a") + 1.0, 1.0] for t in texts])

    embedder = Counting()
    out = embed_tasks({"x": ["aa b", "c", "aa b"], "y": ["c", "d"], "z": []}, embedder)
    assert sorted(embedder.seen) == ["aa b", "c", "d"]
    unit = lambda v: np.asarray(v, float) / np.linalg.norm(v)  # noqa: E731
    expected_x = unit((2 * unit([4, 3, 1]) + unit([1, 1, 1])) / 3)
    assert np.allclose(out[0], expected_x) and np.allclose(out[2], 0.0)


def test_setting_search_and_leave_one_out_never_see_the_held_out_label() -> None:
    from taskmill.clusters.weights import SettingLabels, choose_setting, leave_one_out, settings_grid

    rng = np.random.default_rng(2)
    truth = ["a"] * 4 + ["b"] * 4 + ["c"] * 4

    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    centres = rng.standard_normal((3, 8)) * 3
    good = unit(np.vstack([centres[i // 4] + rng.standard_normal(8) * 0.3 for i in range(12)]))  # follows truth
    noise = unit(rng.standard_normal((12, 8)))
    views = {"template": good, "answer": noise, "shape": noise, "schema": noise, "rows": noise}
    grid = settings_grid((0.0, 1.0), (False, True), ("ward", "average"))
    assert len(grid) == 124 and grid[0].center is False and grid[0].linkage == "ward" and grid[-1].center is True
    # Four settings keep the test fast: noise alone, the good view alone (both linkages), all views.
    settings = [s for s in grid if s.weight_map() in ({"template": 0.0, "answer": 0.0, "shape": 0.0, "schema": 0.0, "rows": 1.0},
                                                      {"template": 1.0, "answer": 0.0, "shape": 0.0, "schema": 0.0, "rows": 0.0})
                and not s.center] + [grid[30]]
    assert set(grid[30].weight_map().values()) == {0.2}  # every view
    assert len(settings) == 5
    table = SettingLabels({False: views, True: views}, settings, ClusterConfig())
    best = choose_setting(table, truth)
    assert best.ari == 1.0 and best.setting.weight_map()["template"] > 0
    held = leave_one_out(table, truth)
    assert held.ari == 1.0 and len(held.chosen) == 12 and sum(held.pairs) == 12 * 11
    # A held-out label that disagrees with its clustering costs pairs: the choice did not use it.
    wrong = leave_one_out(table, ["c"] + truth[1:])
    assert wrong.ari < 1.0 and wrong.pairs[1] > 0
