"""Each leakage guard on a small constructed case that leaks without it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from taskmill.clusters.folds import FoldConfig, make_folds
from taskmill.clusters.leakage import (
    DedupConfig,
    boilerplate_ngrams,
    find_duplicates,
    fingerprint,
    jaccard,
    minhash,
    normalise,
    strip_boilerplate,
)
from taskmill.clusters.manifest import ClusterEntry, ClusterManifest, TaskEntry

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basalt cobalt dune ember fjord").split()


def manifest(clusters: dict[str, dict[str, str]]) -> ClusterManifest:
    """Manifest from ``{cluster: {task: dataset}}``."""
    return ClusterManifest([ClusterEntry(n, n, [], [TaskEntry(t, d, 1.0) for t, d in tasks.items()]) for n, tasks in clusters.items()])


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def fold(plans, name):
    return next(p for p in plans if p.fold.name == name)


# --- same source dataset ------------------------------------------------------------------------


def test_same_source_task_is_excluded_from_training(row):
    # rte_reversed is built from glue/rte like the held-out rte task, but sits in another cluster.
    m = manifest({"nli": {"rte": "glue/rte"}, "other": {"rte_reversed": "glue/rte", "sst2": "glue/sst2"}})
    rows = {
        "rte": [row("rte", "glue/rte", 0, "premise one hypothesis one")],
        "rte_reversed": [row("rte_reversed", "glue/rte", 0, "hypothesis one premise one", template="r")],
        "sst2": [row("sst2", "glue/sst2", 0, "a fine film")],
    }
    plan = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:nli")
    assert plan.fold.train_tasks == ("sst2",)
    assert "glue/rte" in plan.fold.excluded["rte_reversed"] and "rte" in plan.fold.excluded["rte_reversed"]
    assert plan.fold.leakage["same_source_tasks_excluded"] == 1
    assert plan.fold.leakage["same_source_rows_excluded"] == 1
    unguarded = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",), same_source=False)), "cluster:nli")
    assert "rte_reversed" in unguarded.fold.train_tasks


def test_source_aliases_join_datasets_under_one_source(row):
    m = manifest({"a": {"rte": "glue/rte"}, "b": {"sg_rte": "super_glue/rte", "sst2": "glue/sst2"}})
    rows = {t: [row(t, d, 0, f"text of {t}")] for t, d in m.dataset_of().items()}
    plain = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:a")
    assert "sg_rte" in plain.fold.train_tasks
    aliased = FoldConfig(kinds=("cluster",), source_aliases={"glue/rte": "rte", "super_glue/rte": "rte"})
    plan = fold(make_folds(m, rows, aliased), "cluster:a")
    assert plan.fold.train_tasks == ("sst2",) and "sg_rte" in plan.fold.excluded


# --- near-duplicate instances -------------------------------------------------------------------


def nli_case(row, n: int = 8):
    """Held-out task `snli_t` and train task `other_nli` share instance 3 under different templates."""
    rng = random.Random(0)
    pairs = [(sentence(rng), sentence(rng, 8)) for _ in range(2 * n)]
    test = [row("snli_t", "snli", i, f"Premise: {p}\nHypothesis: {h}\nDoes the premise entail the hypothesis? Yes or no?", "yes", "ps1")
            for i, (p, h) in enumerate(pairs[:n])]
    train_pairs = pairs[n:]
    train_pairs[3] = pairs[3]
    train = [row("other_nli", "anli", i, f"{p}\n\nQuestion: does this imply that \"{h}\"? Please answer yes, no or maybe.", "yes", "ps2")
             for i, (p, h) in enumerate(train_pairs)]
    return manifest({"nli": {"snli_t": "snli"}, "rest": {"other_nli": "anli"}}), {"snli_t": test, "other_nli": train}


def test_near_duplicate_under_another_template_is_removed(row):
    m, rows = nli_case(row)
    plan = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:nli")
    assert plan.removed_rows == [rows["other_nli"][3].id]
    assert plan.fold.leakage["near_duplicates_removed"] == 1
    assert plan.fold.leakage["train_rows"] == len(rows["other_nli"]) - 1
    assert plan.examples[0][:2] == (rows["other_nli"][3].id, rows["snli_t"][3].id)
    off = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",), dedup=DedupConfig(enabled=False))), "cluster:nli")
    assert off.removed_rows == [] and off.fold.leakage["train_rows"] == len(rows["other_nli"])


def test_template_text_alone_does_not_make_a_duplicate(row):
    # Same long template, different short instances: only boilerplate removal keeps them apart.
    template = ("Read the following movie review carefully, paying attention to the words the critic chooses and to the tone "
                "of the whole text, and then tell me whether the reviewer liked the movie or not: {} Think about it step by "
                "step before you decide, and answer with exactly one word, positive or negative, with no explanation.")
    rng = random.Random(1)
    mk = lambda task, ds, tid: [row(task, ds, i, template.format(sentence(rng, 4)), "positive", tid) for i in range(6)]
    m = manifest({"a": {"sst_t": "sst"}, "b": {"imdb_t": "imdb"}})
    rows = {"sst_t": mk("sst_t", "sst", "s"), "imdb_t": mk("imdb_t", "imdb", "i")}
    guarded = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:a")
    assert guarded.fold.leakage["near_duplicates_removed"] == 0
    no_boiler = FoldConfig(kinds=("cluster",), dedup=DedupConfig(boilerplate_min_rows=100))
    naive = fold(make_folds(m, rows, no_boiler), "cluster:a")
    assert naive.fold.leakage["near_duplicates_removed"] >= 3  # rows "match" on template text alone


def test_one_word_instances_are_not_near_duplicates(row):
    # "Write a <label> review" templates leave one instance word; equal labels are not a leak.
    m = manifest({"a": {"sst_gen": "sst"}, "b": {"rt_gen": "rt"}})
    labels = ["positive", "negative"] * 3
    rows = {
        "sst_gen": [row("sst_gen", "sst", i, f"Write a single sentence that could appear in a {w} review of a film.", "x", "g1") for i, w in enumerate(labels)],
        "rt_gen": [row("rt_gen", "rt", i, f"Write a one-sentence {w} review of a movie, in the style of a newspaper critic.", "x", "g2") for i, w in enumerate(labels)],
    }
    plan = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:a")
    assert plan.removed_rows == []
    loose = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",), dedup=DedupConfig(min_words=1))), "cluster:a")
    assert len(loose.removed_rows) == 6


def test_exact_duplicate_after_normalisation_is_removed(row):
    m = manifest({"a": {"q1": "d1"}, "b": {"q2": "d2", "q3": "d3"}})
    rows = {
        "q1": [row("q1", "d1", 0, "Who wrote Hamlet?"), row("q1", "d1", 1, "When did it rain?")],
        "q2": [row("q2", "d2", 0, "who  wrote HAMLET"), row("q2", "d2", 1, "Who painted it?")],
        "q3": [row("q3", "d3", 0, "Where is Lima?")],
    }
    plan = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:a")
    assert plan.removed_rows == [rows["q2"][0].id]
    assert plan.fold.leakage["exact_duplicates_removed"] == 1


# --- clusters held out together ------------------------------------------------------------------


def test_group_holds_related_clusters_out_together(row):
    m = manifest({"nli": {"rte": "rte"}, "paraphrase": {"mrpc": "mrpc"}, "sentiment": {"sst2": "sst2"}})
    rows = {t: [row(t, t, 0, f"{t} text")] for t in ("rte", "mrpc", "sst2")}
    plans = make_folds(m, rows, FoldConfig(kinds=("cluster",), groups=(("nli", "task:mrpc"),)))
    assert [p.fold.name for p in plans] == ["cluster:nli+paraphrase", "cluster:sentiment"]
    grouped = plans[0].fold
    assert grouped.held_out == ("nli", "paraphrase") and grouped.test_tasks == ("mrpc", "rte")
    assert grouped.train_tasks == ("sst2",)
    ungrouped = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:nli")
    assert "mrpc" in ungrouped.fold.train_tasks


def test_task_folds_count_training_tasks_from_the_same_cluster(row):
    m = manifest({"nli": {"rte": "rte", "cb": "cb", "snli": "snli"}, "sentiment": {"sst2": "sst2"}})
    rows = {t: [row(t, t, 0, f"{t} text here")] for t in ("rte", "cb", "snli", "sst2")}
    plans = make_folds(m, rows, FoldConfig())
    assert fold(plans, "task:rte").fold.leakage["train_tasks_same_cluster"] == 2
    assert fold(plans, "task:sst2").fold.leakage["train_tasks_same_cluster"] == 0
    assert fold(plans, "cluster:nli").fold.leakage["train_tasks_same_cluster"] == 0


# --- building blocks -----------------------------------------------------------------------------


def test_normalise_and_boilerplate_stripping():
    assert normalise("  Ｈｅｌｌｏ,   WORLD!! ") == "hello world"
    assert normalise("it is n't the film 's fault") == normalise("It isn’t the film's fault!") == "it isnt the films fault"
    rows = [f"please classify this text {w} {w}2 now answer".split() for w in ("aa", "bb", "cc", "dd")]
    boiler = boilerplate_ngrams(rows, 3, 0.5)
    assert "please classify this" in boiler and "aa aa2 now" not in boiler
    assert strip_boilerplate(rows[0], boiler, 3) == ["aa", "aa2", "now", "answer"]


def test_minhash_estimates_jaccard_and_lsh_finds_similar_pairs(row):
    rng = np.random.default_rng(0)
    base = set(rng.integers(0, 2**32, size=200).tolist())
    similar = set(list(base)[:180]) | set(rng.integers(0, 2**32, size=20).tolist())
    other = set(rng.integers(0, 2**32, size=200).tolist())
    sig = minhash([frozenset(base), frozenset(similar), frozenset(other)], 256, 0)
    true = jaccard(frozenset(base), frozenset(similar))
    assert abs(float(np.mean(sig[0] == sig[1])) - true) < 0.1
    assert float(np.mean(sig[0] == sig[2])) < 0.05
    text_rng = random.Random(2)
    texts = [sentence(text_rng, 20) for _ in range(6)]
    rows = [row("a", "a", i, t) for i, t in enumerate(texts)] + [row("b", "b", 0, texts[2] + " zulu")]
    prints = fingerprint(rows, DedupConfig())
    report = find_duplicates(prints, [6], list(range(6)), 0.7)
    assert report.near == [rows[6].id] and report.pairs[0][1] == rows[2].id


def test_dedup_config_lists_every_problem():
    with pytest.raises(Exception) as err:
        DedupConfig(ngram=0, threshold=1.5, bands=7).validate()
    assert len(err.value.problems) == 3
