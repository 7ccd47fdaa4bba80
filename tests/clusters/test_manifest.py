"""Cluster runs end to end (TF-IDF), the manifest file, overrides that survive re-runs, compare."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskmill.clusters.cluster import ClusterConfig
from taskmill.clusters.compare import compare, compare_files, load_reference
from taskmill.clusters.manifest import Overrides, apply_overrides, load_manifest
from taskmill.clusters.represent import RepresentConfig
from taskmill.clusters.run import run_clustering
from taskmill.errors import ConfigError

# The rendered-rows view only: the synthetic generator draws each row's template text at random, not
# from its template_id, so the task-side views (which read rows per template id) see mixed templates
# there (default views: ARI 0.95, k 9 on these 8 families). These tests are about manifests and overrides.
TFIDF = RepresentConfig(embedder="tfidf", template_weight=0.0, answer_weight=0.0, shape_weight=0.0, schema_weight=0.0, rows_weight=1.0)


def write_reference(path: Path, labels: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({"labels": labels}), encoding="utf-8")
    return path


def test_tfidf_run_recovers_families_and_writes_every_output(family_corpus, tmp_path):
    corpus, family_of = family_corpus
    run = run_clustering(corpus, tmp_path / "out", TFIDF, ClusterConfig())
    score = compare(run.manifest, family_of)
    assert score.ari == 1.0 and run.manifest.quality["k"] == 8
    out = tmp_path / "out"
    for name in ("clusters.yaml", "similarity.csv", "vectors.npy", "summary.md", "heatmap.png", "dendrogram.png", "pca.png"):
        assert (out / name).stat().st_size > 0, name
    header = (out / "similarity.csv").read_text().splitlines()[0].split(",")
    assert header[1:] == run.tasks and len(run.tasks) == 24
    summary = (out / "summary.md").read_text()
    assert "![similarity heatmap](heatmap.png)" in summary and "sentiment_0000" in summary
    m = load_manifest(out)
    assert [c.name for c in m.clusters] == [c.name for c in run.manifest.clusters]
    sentiment = next(c for c in m.clusters if "sentiment_0000" in c.task_names)
    assert {"negative", "positive", "film", "felt"} & set(sentiment.terms)  # distinctive terms, not stop words
    assert all(0 < t.similarity <= 1 and t.nearest_other for t in sentiment.tasks)


def test_same_inputs_give_byte_identical_outputs(family_corpus, tmp_path):
    corpus, _ = family_corpus
    run_clustering(corpus, tmp_path / "a", TFIDF, ClusterConfig(algorithm="kmeans", k=8, seed=3))
    run_clustering(corpus, tmp_path / "b", TFIDF, ClusterConfig(algorithm="kmeans", k=8, seed=3))
    for name in ("clusters.yaml", "similarity.csv", "vectors.npy", "heatmap.png", "dendrogram.png", "pca.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_overrides_survive_a_rerun(family_corpus, tmp_path):
    corpus, _ = family_corpus
    out = tmp_path / "out"
    first = run_clustering(corpus, out, TFIDF, ClusterConfig(), draw=False)
    nli_name = first.manifest.cluster_of()["nli_0000"]
    raw = yaml.safe_load((out / "clusters.yaml").read_text())
    raw["overrides"] = {"pin": {"math_0000": "task:nli_0001"}, "merge": [["task:qa_0000", "task:summary_0000"]],
                        "rename": {"task:sentiment_0000": "sentiment", nli_name: "nli-plus"}}
    (out / "clusters.yaml").write_text(yaml.safe_dump(raw))
    second = run_clustering(corpus, out, TFIDF, ClusterConfig(), draw=False)  # same out dir: overrides read back
    cluster_of = second.manifest.cluster_of()
    assert cluster_of["math_0000"] == cluster_of["nli_0000"] == "nli-plus"
    assert cluster_of["qa_0001"] == cluster_of["summary_0002"]
    assert cluster_of["sentiment_0001"] == "sentiment"
    assert len(second.manifest.clusters) == 7 and second.manifest.unresolved_overrides == []
    renamed = next(c for c in second.manifest.clusters if c.name == "sentiment")
    assert renamed.auto_name != "sentiment"  # the algorithm's name is kept beside the override
    third = run_clustering(corpus, out, TFIDF, ClusterConfig(), draw=False)
    assert third.manifest.overrides == second.manifest.overrides and third.manifest.cluster_of() == cluster_of


def test_unresolvable_overrides_are_reported_not_dropped():
    groups = {"a": ["t1", "t2"], "b": ["t3"]}
    new, unresolved = apply_overrides(groups, Overrides(pin={"ghost": "a", "t3": "task:nobody"}, merge=[["a", "zzz"]], rename={"b": "a"}))
    assert new == groups
    assert len(unresolved) == 4 and any("ghost" in u for u in unresolved)
    moved, _ = apply_overrides(groups, Overrides(pin={"t1": "brand-new"}))
    assert moved == {"a": ["t2"], "b": ["t3"], "brand-new": ["t1"]}


def test_bad_manifest_lists_every_problem(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{"name": "a", "tasks": ["t1"]}, {"name": "a", "tasks": ["t1"]}, {"tasks": []}],
                                    "overrides": {"pin": ["x"], "colour": 1}}))
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    text = err.value.line()
    assert str(path) in text and "appears more than once" in text and "'t1' is in both" in text
    assert "clusters[2]" in text and "overrides.pin" in text and "unknown keys" in text


def test_compare_scores_and_matches_by_dataset(family_corpus, tmp_path):
    corpus, family_of = family_corpus
    run = run_clustering(corpus, tmp_path / "out", TFIDF, ClusterConfig(k=4), draw=False)
    by_dataset = {f"synthetic/{t}": fam for t, fam in family_of.items() if not t.startswith("coref")}
    ref = write_reference(tmp_path / "ref.yaml", {**by_dataset, "not_a_task": "x"})
    score = compare_files(tmp_path / "out" / "clusters.yaml", ref)
    assert score.n_tasks == 21 and score.unmatched_reference == ["not_a_task"]
    assert sorted(score.unmatched_tasks) == ["coref_0000", "coref_0001", "coref_0002"]
    assert 0 < score.ari < 1 and 0 < score.nmi < 1  # 4 clusters cannot match 7 families
    assert sum(map(sum, score.table)) == 21 and score.labels == sorted(set(by_dataset.values()))
    assert "ARI" in score.to_markdown()
    with pytest.raises(ConfigError):
        load_reference(write_reference(tmp_path / "bad.yaml", {"a": 1}))


def test_shared_reference_taxonomy_covers_the_29_datasets():
    reference = load_reference(Path(__file__).resolve().parents[2] / "clusters" / "reference" / "shared_taxonomy.yaml")
    assert len(reference) == 29 and len(set(reference.values())) == 12
    shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("../shared/data not present")
    folders = {p.name.replace("__", "/") for p in shared.iterdir() if p.is_dir()}
    assert folders == set(reference)


@pytest.mark.parametrize("n_tasks", [1, 2, 3])
def test_tiny_corpora_cluster_and_plot(write_corpus, tmp_path, n_tasks):
    from taskmill.clusters.synthetic import make_tasks

    rows, _ = make_tasks(tasks_per_family=1, rows_per_task=3, seed=0)
    tasks = sorted({r.task for r in rows})[:n_tasks]
    corpus = write_corpus([r for r in rows if r.task in tasks], f"tiny{n_tasks}")
    run = run_clustering(corpus, tmp_path / f"out{n_tasks}", TFIDF, ClusterConfig())
    assert sorted(run.tasks) == tasks and len(run.manifest.clusters) == {1: 1, 2: 2, 3: 2}[n_tasks]
    assert (tmp_path / f"out{n_tasks}" / "dendrogram.png").is_file()
