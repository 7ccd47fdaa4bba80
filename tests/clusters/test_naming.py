"""Cluster names people can read: from the member tasks' types, falling back to the tasks."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from taskmill.builders.build import build_collection
from taskmill.cli import app
from taskmill.clusters import ClusterConfig, RepresentConfig, run_clustering
from taskmill.clusters.naming import shipped_task_types, task_types, type_names

ROWS_ONLY = {"template_weight": 0.0, "answer_weight": 0.0, "shape_weight": 0.0, "schema_weight": 0.0, "rows_weight": 1.0}


def test_names_join_member_types_most_common_first_and_stay_unique() -> None:
    type_of = {"a": "nli", "b": "paraphrase", "c": "nli", "d": "sentiment", "e": "sentiment"}
    names = type_names([["a", "b", "c"], ["d"], ["e"], ["my_task", "a"]], type_of)
    assert names == ["nli+paraphrase", "sentiment", "sentiment-2", "my-task+nli"]


def test_many_types_are_cut_to_three_and_a_count() -> None:
    type_of = {t: t.upper() for t in "abcde"}
    assert type_names([list("abcde")], type_of) == ["a+b+c+2-more"]


def test_given_types_win_by_task_then_dataset_over_the_shipped_taxonomy() -> None:
    datasets = {"sst2": "glue/sst2", "mine": "me/mine", "rte": "glue/rte", "x": "unknown/x"}
    types = task_types(datasets, {"sst2": "polarity", "me/mine": "custom"})
    assert types == {"sst2": "polarity", "mine": "custom", "rte": "nli"}
    assert shipped_task_types()["taskmill_starter/everyday_nli"] == "nli"


def test_starter_clusters_are_named_after_their_task_types(tmp_path: Path) -> None:
    build_collection(None, tmp_path / "corpus", progress=False, formats=["zero_shot"])
    # The rendered-rows view alone (the representation these starter pins were written for): with the
    # default task-side views the 11 starter tasks group differently (intent+math+summarization+...).
    run = run_clustering(tmp_path / "corpus", tmp_path / "clusters", RepresentConfig(embedder="tfidf", **ROWS_ONLY),
                         ClusterConfig(k=4), draw=False)
    starter_types = {t.replace("_", "-") for t in shipped_task_types().values()}
    names = [c.name for c in run.manifest.clusters]
    assert len(names) == 4
    for name in names:
        assert set(name.split("+")) <= starter_types, name
    assert "nli+paraphrase" in names


def test_task_types_file_names_clusters_and_a_rename_override_survives_a_rerun(tmp_path: Path) -> None:
    build_collection(None, tmp_path / "corpus", progress=False, formats=["zero_shot"])
    types = tmp_path / "types.yaml"
    types.write_text(yaml.safe_dump({"labels": {"everyday_nli": "inference", "paraphrase_pairs": "inference"}}))
    args = ["cluster", "run", str(tmp_path / "corpus"), "--out", str(tmp_path / "clusters"), "--embedder", "tfidf",
            "--k", "4", "--no-plots", "--task-types", str(types), "--weights", "template=0,shape=0,rows=1"]  # rows view only, as above
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load((tmp_path / "clusters" / "clusters.yaml").read_text())
    by_task = {t["task"]: c["name"] for c in manifest["clusters"] for t in c["tasks"]}
    assert by_task["everyday_nli"] == by_task["paraphrase_pairs"] == "inference"
    manifest["overrides"]["rename"] = {"task:everyday_nli": "entailment-and-paraphrase"}
    (tmp_path / "clusters" / "clusters.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    assert CliRunner().invoke(app, args).exit_code == 0
    again = yaml.safe_load((tmp_path / "clusters" / "clusters.yaml").read_text())
    names = {t["task"]: c["name"] for c in again["clusters"] for t in c["tasks"]}
    assert names["everyday_nli"] == "entailment-and-paraphrase"
