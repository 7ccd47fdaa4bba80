"""Source identity for the same-source guard: the configs of one dataset are one source."""

from __future__ import annotations

import random

import pytest
import yaml

from taskmill.clusters.sources import INDEPENDENT_CONFIGS, corpus_datasets, source_of, task_sources


def arc_rows(n: int, seed: int) -> list[dict]:
    """Rows in the Hugging Face ``ai2_arc`` schema."""
    rng = random.Random(seed)
    things = "rock plant magnet cloud river seed battery mirror ice sound".split()
    rows = []
    for i in range(n):
        a, b = rng.sample(things, 2)
        rows.append({"id": f"Q{seed}-{i}", "question": f"Which property of a {a} changes when it is placed near a {b}?",
                     "choices": {"text": ["its mass", "its colour", "its temperature", "its shape"], "label": ["A", "B", "C", "D"]},
                     "answerKey": rng.choice("ABCD")})
    return rows


def sentence_rows(n: int, seed: int) -> list[dict]:
    """Rows in the ``glue/sst2`` and ``glue/cola`` schema (sentence, label, idx)."""
    rng = random.Random(seed)
    words = "film story actor scene music plot ending camera script dialogue".split()
    return [{"sentence": f"the {rng.choice(words)} was {rng.choice(['fine', 'dull', 'bright', 'long'])} and the {rng.choice(words)} {rng.choice(['worked', 'failed'])}",
             "label": rng.randint(0, 1), "idx": i} for i in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, real):
    """A corpus built by `taskmill build` from ARC-Easy/Challenge, glue sst2/cola and wino_bias pro/anti, and its clusters."""
    root = tmp_path_factory.mktemp("sources")
    collection = real.write_tasks(root / "project", {
        "arc_easy": ("ai2_arc/ARC-Easy", arc_rows(12, 1), None),
        "arc_challenge": ("ai2_arc/ARC-Challenge", arc_rows(12, 2), None),
        "sst2": ("glue/sst2", sentence_rows(12, 3), None),
        "cola": ("glue/cola", sentence_rows(12, 4), None),
        # 'wino_bias/type1_pro' alone reads as the hub repo of that name; the template files say it is
        # dataset wino_bias with config type1_pro, and the corpus manifest records how the build read it.
        "wb_pro": ("wino_bias/type1_pro", real.wino_rows(12, "he", seed=5), real.WINO_TEMPLATES.format(subset="type1_pro")),
        "wb_anti": ("wino_bias/type1_anti", real.wino_rows(12, "she", seed=5), real.WINO_TEMPLATES.format(subset="type1_anti")),
    })
    result = real.taskmill("build", collection, "--out", root / "corpus")
    assert result.exit_code == 0, result.output
    result = real.taskmill("cluster", "run", root / "corpus", "--out", root / "clusters", "--embedder", "tfidf", "--k", "3", "--no-plots")
    assert result.exit_code == 0, result.output
    return root


def folds(real, built, out, *extra):
    result = real.taskmill("folds", "make", built / "clusters", "--corpus", built / "corpus", "--out", built / out, "--kind", "task", *extra)
    assert result.exit_code == 0, result.output
    raw = yaml.safe_load((built / out / "folds.yaml").read_text())
    return {f["name"]: f for f in raw["folds"]}, raw, (built / out / "summary.md").read_text()


def test_holding_out_one_config_drops_its_sibling_configs(real, built):
    by_name, raw, summary = folds(real, built, "folds")
    easy = by_name["task:arc_easy"]
    assert "arc_challenge" not in easy["train_tasks"]
    assert easy["excluded"]["arc_challenge"].startswith("shares source dataset ai2_arc with held-out task arc_easy")
    assert "configs of one dataset" in easy["excluded"]["arc_challenge"]
    assert easy["leakage"]["same_source_tasks_excluded"] == 1 and easy["leakage"]["sibling_config_tasks_excluded"] == 1
    assert easy["leakage"]["same_source_rows_excluded"] > 0
    # wino_bias: the row id is ambiguous on its own; the corpus manifest says dataset wino_bias, config type1_pro
    pro = by_name["task:wb_pro"]
    assert set(pro["excluded"]) == {"wb_anti"} and "wb_anti" not in pro["train_tasks"]
    # GLUE's configs are independent datasets: holding SST-2 out keeps CoLA
    assert "cola" in by_name["task:sst2"]["train_tasks"] and by_name["task:sst2"]["excluded"] == {}
    assert raw["sources"] == {"arc_challenge": "ai2_arc", "arc_easy": "ai2_arc", "cola": "glue/cola", "sst2": "glue/sst2",
                              "wb_anti": "wino_bias", "wb_pro": "wino_bias"}
    # the summary says which tasks were dropped and why
    assert "## Same-source exclusions" in summary
    assert "- task:arc_easy: 1 tasks" in summary and "1 of them sibling configs" in summary
    assert "  - arc_challenge: shares source dataset ai2_arc with held-out task arc_easy" in summary


def test_independent_configs_and_aliases_override_the_default(real, built):
    by_name, raw, _ = folds(real, built, "folds-indep", "--independent-configs", "glue,super_glue,ai2_arc")
    assert "arc_challenge" in by_name["task:arc_easy"]["train_tasks"]
    assert raw["config"]["independent_configs"] == ["glue", "super_glue", "ai2_arc"]
    by_name, _, _ = folds(real, built, "folds-none", "--independent-configs", "")
    assert "cola" in by_name["task:sst2"]["excluded"]  # glue as one source when nothing is independent
    by_name, _, _ = folds(real, built, "folds-alias", "--alias", "ai2_arc/ARC-Challenge=arc-challenge")
    assert "arc_challenge" in by_name["task:arc_easy"]["train_tasks"] and "wb_anti" in by_name["task:wb_pro"]["excluded"]


def test_source_of_reads_dataset_ids_as_the_hub_names_them():
    assert source_of("glue/sst2") == "glue/sst2" and source_of("super_glue/rte") == "super_glue/rte"
    assert source_of("ai2_arc/ARC-Easy") == source_of("ai2_arc/ARC-Challenge") == "ai2_arc"
    assert source_of("SetFit/sst5") == "SetFit/sst5"  # owner/name: one hub repo, no config
    assert source_of("lukaemon/bbh/date_understanding") == source_of("lukaemon/bbh/navigate") == "lukaemon/bbh"
    assert source_of("tweet_eval/emotion", ("tweet_eval", "emotion")) == source_of("tweet_eval/irony", ("tweet_eval", "irony")) == "tweet_eval"
    assert source_of("wino_bias/type1_pro") == "wino_bias/type1_pro"  # ambiguous alone: read as a hub repo
    assert source_of("wino_bias/type1_pro", ("wino_bias", "type1_pro")) == "wino_bias"
    starter = ("taskmill_starter", "everyday_nli")
    assert source_of("taskmill_starter/everyday_nli", starter) == "taskmill_starter/everyday_nli"
    assert source_of("taskmill_starter/everyday_nli", starter, independent=()) == "taskmill_starter"
    assert source_of("glue/rte", aliases={"glue/rte": "rte"}) == "rte" and source_of("ai2_arc/ARC-Easy", aliases={"ai2_arc": "arc"}) == "arc"
    assert "glue" in INDEPENDENT_CONFIGS and "super_glue" in INDEPENDENT_CONFIGS


def test_independent_configs_must_be_a_list_of_names():
    from taskmill.clusters.folds import FoldConfig
    from taskmill.errors import ConfigError

    with pytest.raises(ConfigError, match="independent_configs: expected a list of dataset names"):
        FoldConfig(independent_configs="glue").validate()  # a pipeline file's `independent_configs: glue`
    with pytest.raises(ConfigError, match="expected dataset names, got ''"):
        FoldConfig(independent_configs=("glue", "")).validate()


def test_corpus_manifest_resolution_is_used_only_for_the_same_dataset_id(tmp_path):
    (tmp_path / "manifest.json").write_text('{"config": {"tasks": [{"name": "a", "dataset": "wino_bias/type1_pro", '
                                            '"hf_id": "wino_bias", "subset": "type1_pro"}]}}')
    resolved = corpus_datasets(tmp_path)
    assert resolved == {"a": ("wino_bias/type1_pro", "wino_bias", "type1_pro")}
    assert task_sources({"a": "wino_bias/type1_pro"}, resolved, INDEPENDENT_CONFIGS, {}) == {"a": "wino_bias"}
    assert task_sources({"a": "other/thing"}, resolved, INDEPENDENT_CONFIGS, {}) == {"a": "other/thing"}
    assert corpus_datasets(tmp_path / "missing") == {}
    (tmp_path / "manifest.json").write_text("{not json")
    from taskmill.errors import DataError

    with pytest.raises(DataError, match="manifest.json.*not JSON|not JSON"):
        corpus_datasets(tmp_path)


def test_the_starter_collection_keeps_all_its_tasks_in_training(tmp_path, real):
    # The starter's eleven tasks are configs of `taskmill_starter` (name/config) but independent
    # datasets, like GLUE's: no fold may drop one for sharing a source.
    assert real.taskmill("build", "--out", tmp_path / "corpus").exit_code == 0
    result = real.taskmill("cluster", "run", tmp_path / "corpus", "--out", tmp_path / "clusters", "--embedder", "tfidf", "--no-plots")
    assert result.exit_code == 0, result.output
    by_name, raw, summary = folds(real, tmp_path, "folds")
    assert len(by_name) == 11 and all(f["excluded"] == {} for f in by_name.values())
    assert set(raw["sources"].values()) == {f"taskmill_starter/{t}" for t in raw["sources"]}
    assert "## Same-source exclusions" not in summary
