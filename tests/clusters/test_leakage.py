"""Each leakage guard on a small constructed case that leaks without it."""

from __future__ import annotations

import random
from pathlib import Path

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
    similarity,
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
    words = [normalise(r.prompt).split() for r in (rows["sst_t"][0], rows["imdb_t"][0])]
    unweighted = {w: 1.0 for w in words[0] + words[1]}
    assert similarity(*words, unweighted) > 0.85  # counted word for word, template text alone makes a "near duplicate"


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


# --- instance words, minimal pairs -----------------------------------------------------------------


def test_vectorised_stripping_matches_the_rule():
    from taskmill.clusters.instances import Tokens, strip_corpus

    rng = random.Random(3)
    lists, groups = [], []
    for g in range(5):
        frame = [rng.choice(WORDS) for _ in range(6)]
        for _ in range(rng.randint(2, 9)):  # groups of 2-3 rows learn nothing (min 4)
            words = frame[:3] + [rng.choice(WORDS) for _ in range(rng.randint(0, 8))] + frame[3:]
            lists.append(words)
            groups.append(g)
    got = strip_corpus(Tokens.from_lists(lists), np.array(groups), 3, 0.5, 4)
    for g in range(5):
        members = [i for i, x in enumerate(groups) if x == g]
        boiler = boilerplate_ngrams([lists[i] for i in members], 3, 0.5) if len(members) >= 4 else set()
        for i in members:
            assert got.words(i) == strip_boilerplate(lists[i], boiler, 3)


def test_pair_scores_are_the_similarity_of_the_instance_words(row):
    from taskmill.clusters.instances import idf_weights

    rng = random.Random(4)
    texts = [sentence(rng, rng.randint(5, 20)) for _ in range(30)]
    rows = [row("a", "a", i, t) for i, t in enumerate(texts)]
    rows += [row("b", "b", i, " ".join(t.split()[: -2]) + " zulu amber") for i, t in enumerate(texts[:10])]
    prints = fingerprint(rows, DedupConfig(boilerplate_min_rows=100))
    words = [prints.texts.words(t) for t in range(len(prints.texts.ptr) - 1)]
    weight = idf_weights(words)
    assert len(prints.pairs) >= 10
    for (a, b), score in zip(prints.pairs.tolist(), prints.scores.tolist()):
        assert score == pytest.approx(similarity(words[a], words[b], weight, 0.8), abs=1e-9)


def test_similarity_weighs_words_by_rarity():
    weight = {"the": 0.1, "he": 0.5, "she": 0.5, "doctor": 5.0, "nurse": 5.0, "driver": 5.0, "called": 3.0, "late": 4.0, "was": 0.2, "because": 1.0}
    a = "the doctor called the nurse because he was late".split()
    assert similarity(a, [("she" if w == "he" else w) for w in a], weight) > 0.9  # a swapped pronoun
    assert similarity(a, [("driver" if w == "nurse" else w) for w in a], weight) < 0.8  # a changed content word
    assert similarity(a[:5], a, weight, 0.8) > similarity(a[:5], a, weight, 0.5)  # a subset counts more with subset_weight


def test_few_shot_prompt_is_cut_into_exemplars_and_own_input(row):
    from dataclasses import replace

    from taskmill.clusters.instances import instance_blocks

    few = replace(row("t", "d", 0, "Q: one?\nA:\nyes\n\nQ: two?\nA:\nno\n\nQ: three?\nA:"), format="few_shot", shots=(4, 7))
    assert instance_blocks(few) == ["Q: one?\nA:\nyes", "Q: two?\nA:\nno", "Q: three?\nA:"]
    odd = replace(few, prompt="Q: one?\n\nmore\nA:\nyes\n\nQ: two?\nA:\nno\n\nQ: three?\nA:")  # a field's own blank line: one block
    assert instance_blocks(odd) == [odd.prompt]
    assert instance_blocks(row("t", "d", 0, "a\n\nb")) == ["a\n\nb"]


def test_dedup_looks_at_exemplars_of_training_rows(row):
    # The held-out instance appears in training only as a few-shot exemplar of another task's row.
    from dataclasses import replace

    rng = random.Random(5)
    held, other = ([" ".join(f"{rng.choice(WORDS)}{rng.randint(0, 99)}" for _ in range(12)) for _ in range(6)] for _ in range(2))
    m = manifest({"a": {"ta": "da"}, "b": {"tb": "db"}})
    rows = {"ta": [row("ta", "da", i, f"Text: {s}\nLabel?") for i, s in enumerate(held)],
            "tb": [replace(row("tb", "db", i, f"Review: {other[i]}\nScore:\n4\n\nReview: {held[i] if i == 2 else other[i - 1]}\nScore:\n3\n\nReview: {other[i]}\nScore:"),
                           format="few_shot", shots=(9, 8)) for i in range(6)]}
    plan = fold(make_folds(m, rows, FoldConfig(kinds=("cluster",))), "cluster:a")
    assert plan.removed_rows == [rows["tb"][2].id]


TREC_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "library" / "trec.yaml"


def trec_train(folds: dict) -> list[str]:
    return folds["task:trec_a"]["train_tasks"]


def trec_rows(frames: list[str], fillers: list[str], seed: int, background: int = 80) -> list[dict]:
    """Rows in the Hugging Face ``trec`` schema: one question per frame and filler among
    ``background`` questions of their own (as in TREC, where a frame is a few questions of many,
    and "does", "the", "from" are everywhere)."""
    rng = random.Random(seed)
    nouns = [f"{w}{i}" for w in WORDS for i in range(8)]
    questions = [f.format(x) for f in frames for x in fillers]
    for _ in range(background):
        wh, aux, verb, prep = (rng.choice(x.split()) for x in ("What Who Where When How Why", "is does did was can are",
                                                               "come go live mean start happen work", "from in to of for with"))
        questions.append(f"{wh} {aux} the {rng.choice(nouns)} {rng.choice(nouns)} {verb} {prep} the {rng.choice(nouns)} ?")
    rng.shuffle(questions)
    return [{"text": q, "coarse_label": rng.randint(0, 5), "fine_label": 26} for q in questions]


def test_swapped_pronoun_minimal_pairs_are_caught_and_shared_phrasing_is_not(tmp_path, real):
    """A sibling with the pronoun swapped (the wino_bias pro/anti case, aliased to another source so
    the same-source rule does not hide it) loses its rows; questions sharing a frame keep theirs."""
    import yaml

    frames = ["Where does the last name {} come from ?", "What is the origin of the word {} ?", "Who wrote the song {} ?"]
    collection = real.write_tasks(tmp_path / "project", {
        "wb_pro": ("wino_bias/type1_pro", real.wino_rows(40, "he", seed=7), real.WINO_TEMPLATES.format(subset="type1_pro")),
        "wb_anti": ("wino_bias/type1_anti", real.wino_rows(40, "she", seed=7), real.WINO_TEMPLATES.format(subset="type1_anti")),
        # one question frame, different content: "... the word quixotic spirit" vs "... the word mellifluous voice"
        "trec_a": ("trec", trec_rows(frames, ["Baxter Street", "quixotic spirit", "Yesterday Once"], seed=1), None),
        # another source of TREC-style questions, with the library's trec templates
        "trec_b": ("questions/more-trec", trec_rows(frames, ["Kowalski Lane", "mellifluous voice", "Stardust Memories"], seed=2), TREC_TEMPLATES.read_text()),
    }, formats=("zero_shot", "few_shot"))
    assert real.taskmill("build", collection, "--out", tmp_path / "corpus").exit_code == 0
    result = real.taskmill("cluster", "run", tmp_path / "corpus", "--out", tmp_path / "clusters", "--embedder", "tfidf", "--k", "2", "--no-plots")
    assert result.exit_code == 0, result.output
    result = real.taskmill("folds", "make", tmp_path / "clusters", "--corpus", tmp_path / "corpus", "--out", tmp_path / "folds",
                           "--kind", "task", "--alias", "wino_bias/type1_anti=anti")
    assert result.exit_code == 0, result.output
    folds = {f["name"]: f for f in yaml.safe_load((tmp_path / "folds" / "folds.yaml").read_text())["folds"]}
    pro, trec = folds["task:wb_pro"], folds["task:trec_a"]
    anti_rows = sum(1 for line in (tmp_path / "corpus" / "corpus.jsonl").read_text().splitlines() if '"task": "wb_anti"' in line)
    assert "wb_anti" in pro["train_tasks"] and "trec_b" in trec_train(folds) and anti_rows >= 150
    assert pro["leakage"]["near_duplicates_removed"] + pro["leakage"]["exact_duplicates_removed"] >= 0.95 * anti_rows
    assert all(score >= DedupConfig().threshold for _, _, score in pro["removed_examples"])
    # the question frames are shared, the questions are not: nothing removed, the closest kept reported
    # (prompts of templates that print only the label are the same in both tasks: exact duplicates)
    assert trec["leakage"]["near_duplicates_removed"] == 0
    assert trec["kept_examples"] and all(score < DedupConfig().threshold for _, _, score in trec["kept_examples"])
    summary = (tmp_path / "folds" / "summary.md").read_text()
    assert "## Near duplicates" in summary and "- task:wb_pro: 0 exact and" in summary and "closest kept" in summary
