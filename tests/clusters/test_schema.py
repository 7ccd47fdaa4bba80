"""The schema view: field names from the templates the corpus manifest lists, label names from the rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from taskmill.builders.build import build_collection
from taskmill.clusters.corpus import rows_by_task
from taskmill.clusters.represent import RepresentConfig, represent_tasks, template_view_texts
from taskmill.clusters.schema import TaskSchema, field_words, label_names, read_schemas, schema_texts

PAIR_TEMPLATES = """\
dataset: tiny/pairs
templates:
  - id: pair-entail
    name: does it follow
    input: "Premise: {{ premise }}\\nHypothesis: {{ hypothesis }}\\nDoes the premise entail the hypothesis?"
    target: "{{ answer_choices[label] }}"
    answer_choices: "entailment ||| neutral ||| contradiction"
    metadata: {original_task: true, choices_in_prompt: false, metrics: [Accuracy]}
  - id: pair-write
    name: write a hypothesis
    input: "Write a sentence that follows from: {{ premise }}"
    target: "{{ hypothesis }}"
    metadata: {original_task: false, metrics: [BLEU]}
"""
QA_TEMPLATES = """\
dataset: tiny/qa
templates:
  - id: qa-pick
    name: pick the answer
    input: "{{ question_stem }}\\n{% for c in choices %}- {{ c }}\\n{% endfor %}Answer:"
    target: "{{ choices[answerKey] }}"
    metadata: {original_task: true, metrics: [Accuracy]}
"""
# what the template view embeds of them: the template's own text, row values masked, then its label set
PAIR_ENTAIL_TEXT = "Premise: {value}\nHypothesis: {value}\nDoes the premise entail the hypothesis?\nentailment | neutral | contradiction"
QA_PICK_TEXT = "{value}\n- {value}\nAnswer:"
TOPICS = {
    "kitchen": "waiter soup pasta dessert menu chef table bread salad sauce grill oven plate".split(),
    "stadium": "striker goalkeeper referee league coach penalty trophy fans corner tackle pitch".split(),
}


def _pairs(topic: str, n: int = 6) -> list[dict]:
    rng = random.Random(topic)
    words = TOPICS[topic]
    return [{"premise": "the " + " ".join(rng.sample(words, 5)) + ".", "hypothesis": "a " + " ".join(rng.sample(words, 3)) + ".",
             "label": i % 3} for i in range(n)]


def _qa(topic: str, n: int = 6) -> list[dict]:
    rng = random.Random(topic)
    words = TOPICS[topic]
    return [{"question_stem": "which " + " ".join(rng.sample(words, 4)) + "?", "choices": rng.sample(words, 3), "answerKey": i % 3}
            for i in range(n)]


def _build(real, tmp_path: Path, tasks: dict) -> Path:
    # the corpus next to its collection (as bench/cluster_shared_eval.py lays them out), so the
    # collection's own template files resolve relative to the corpus folder's parent
    collection = real.write_tasks(tmp_path / "collection", tasks)
    build_collection(collection, collection.parent / "corpus", progress=False)
    return collection.parent / "corpus"


def test_field_names_split_into_words() -> None:
    assert field_words("answerKey") == "answer key"
    assert field_words("sentence1") == "sentence 1"
    assert field_words("span1_text") == "span 1 text"
    assert field_words("question_stem") == "question stem"
    assert schema_texts(TaskSchema(("answerKey", "question"), ("a", "b"))) == ["fields: answer key, question"]
    assert schema_texts(TaskSchema(("answerKey", "question"), ("a", "b")), with_labels=True) == ["fields: answer key, question", "labels: a | b"]
    assert schema_texts(TaskSchema((), ("a", "b"))) == []
    assert schema_texts(TaskSchema()) == []


def test_label_names_are_fixed_choices_only(row) -> None:
    from dataclasses import replace

    fixed = [replace(row("t", "d", i, f"p{i}", "yes", template="fixed"), answer_choices=("Yes", "No")) for i in range(3)]
    per_row = [replace(row("t", "d", i, f"q{i}", "x", template="mc"), answer_choices=(f"x{i}", f"y{i}")) for i in range(3)]
    assert label_names(fixed + per_row) == ("yes", "no")


@pytest.mark.parametrize("embedder, schema_embedder", [("tfidf", "tfidf"), pytest.param("minilm", "same", marks=pytest.mark.slow)])
def test_schema_view_is_the_same_for_tasks_with_the_same_fields_and_labels_but_other_rows(real, tmp_path, embedder: str, schema_embedder: str) -> None:
    """Two NLI tasks over kitchen and stadium sentences (same template file, different row text) have one
    schema and an identical schema vector; a multiple-choice task's schema differs. Built with the real
    `taskmill build`, so the field names come from the templates the corpus manifest lists."""
    if embedder != "tfidf":
        pytest.importorskip("sentence_transformers")
    corpus = _build(real, tmp_path, {
        "pairs_kitchen": ("tiny/pairs", _pairs("kitchen"), PAIR_TEMPLATES),
        "pairs_stadium": ("tiny/pairs", _pairs("stadium"), PAIR_TEMPLATES),
        "qa_kitchen": ("tiny/qa", _qa("kitchen"), QA_TEMPLATES),
    })
    groups = rows_by_task(corpus)
    assert {r.prompt for r in groups["pairs_kitchen"]}.isdisjoint({r.prompt for r in groups["pairs_stadium"]})
    schemas = read_schemas(corpus, groups)
    # only the original-task template's fields (the hypothesis-writing template is not read)
    assert schemas["pairs_kitchen"] == TaskSchema(("hypothesis", "label", "premise"), ("entailment", "neutral", "contradiction"), (PAIR_ENTAIL_TEXT,))
    assert schemas["pairs_stadium"] == schemas["pairs_kitchen"]
    assert schemas["qa_kitchen"] == TaskSchema(("answerKey", "choices", "question_stem"), (), (QA_PICK_TEXT,))
    only_schema = {"template_weight": 0, "answer_weight": 0, "shape_weight": 0, "schema_weight": 1, "rows_weight": 0}
    view = represent_tasks(groups, RepresentConfig(embedder=embedder, schema_embedder=schema_embedder, **only_schema), schemas).views["schema"]
    assert np.array_equal(view[0], view[1])
    assert float(view[0] @ view[2]) < 0.9
    # the template view embeds the templates' own masked text, so it is identical too; without the
    # manifest's texts it falls back to the text recovered from the renderings
    only_template = {**only_schema, "schema_weight": 0, "template_weight": 1}
    template = represent_tasks(groups, RepresentConfig(embedder=embedder, **only_template), schemas)
    assert np.array_equal(template.views["template"][0], template.views["template"][1])
    sketches = template.sketches["pairs_kitchen"]
    assert template_view_texts(schemas["pairs_kitchen"], sketches) == [PAIR_ENTAIL_TEXT]
    assert template_view_texts(TaskSchema(), sketches) == [s.text for s in sketches] != [PAIR_ENTAIL_TEXT]
    # the rows view of the same two tasks differs: their row text does
    rows = represent_tasks(groups, RepresentConfig(embedder=embedder, rows_weight=1, template_weight=0, shape_weight=0, schema_weight=0)).views["rows"]
    assert float(rows[0] @ rows[1]) < 0.99


def test_the_manifest_records_each_templates_fields_and_masked_text(real, tmp_path) -> None:
    corpus = _build(real, tmp_path, {"pairs_kitchen": ("tiny/pairs", _pairs("kitchen"), PAIR_TEMPLATES)})
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["templates"][0]["template_fields"] == {"pair-entail": ["hypothesis", "label", "premise"],
                                                         "pair-write": ["hypothesis", "premise"]}
    assert manifest["templates"][0]["template_texts"] == {"pair-entail": PAIR_ENTAIL_TEXT,
                                                        "pair-write": "Write a sentence that follows from: {value}"}


def test_clusters_are_unchanged_when_the_template_files_are_deleted_after_the_build(real, tmp_path) -> None:
    """The field names come from the manifest, so a corpus whose collection moved away keeps its
    schema view, its vectors and its clusters."""
    import shutil

    from taskmill.clusters.cluster import ClusterConfig
    from taskmill.clusters.manifest import Overrides
    from taskmill.clusters.represent import DEFAULT_WEIGHTS
    from taskmill.clusters.run import cluster_corpus

    corpus = _build(real, tmp_path, {
        "pairs_kitchen": ("tiny/pairs", _pairs("kitchen"), PAIR_TEMPLATES),
        "pairs_stadium": ("tiny/pairs", _pairs("stadium"), PAIR_TEMPLATES),
        "qa_kitchen": ("tiny/qa", _qa("kitchen"), QA_TEMPLATES),
        "qa_stadium": ("tiny/qa", _qa("stadium"), QA_TEMPLATES),
    })
    config = RepresentConfig(embedder="tfidf", **{f"{v}_weight": w for v, w in DEFAULT_WEIGHTS["minilm"].items()})
    before = cluster_corpus(corpus, config, ClusterConfig(), Overrides())
    moved = shutil.move(corpus, tmp_path / "elsewhere" / "corpus")
    shutil.rmtree(tmp_path / "collection")  # template and data files: nothing of the collection is left
    after = cluster_corpus(moved, config, ClusterConfig(), Overrides())
    assert before.views is not None and after.views is not None
    assert after.views.schemas == before.views.schemas
    assert after.views.schemas["pairs_kitchen"].fields == ("hypothesis", "label", "premise")
    assert after.views.schemas["qa_stadium"].fields == ("answerKey", "choices", "question_stem")
    assert np.array_equal(after.views.views["schema"], before.views.views["schema"])
    assert np.array_equal(after.views.views["template"], before.views.views["template"])
    assert {frozenset(c.task_names) for c in after.manifest.clusters} == {frozenset(c.task_names) for c in before.manifest.clusters}


def test_an_older_manifest_without_recorded_fields_or_texts_reads_the_template_files_while_they_match(real, tmp_path) -> None:
    corpus = _build(real, tmp_path, {"pairs_kitchen": ("tiny/pairs", _pairs("kitchen"), PAIR_TEMPLATES)})
    groups = rows_by_task(corpus)
    manifest_file = corpus / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    built = read_schemas(corpus, groups)["pairs_kitchen"]
    for entry in manifest["templates"]:
        del entry["template_texts"]  # as built before the build recorded the masked texts
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    assert read_schemas(corpus, groups)["pairs_kitchen"] == built  # the texts read from the template file
    for entry in manifest["templates"]:
        del entry["template_fields"]  # as built before the build recorded the fields
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    template_file = tmp_path / "collection" / manifest["templates"][0]["path"]
    assert read_schemas(corpus, groups)["pairs_kitchen"] == built  # found next to the corpus
    assert built.fields == ("hypothesis", "label", "premise") and built.template_texts == (PAIR_ENTAIL_TEXT,)
    template_file.write_text(PAIR_TEMPLATES + "\n# edited after the build\n", encoding="utf-8")
    assert read_schemas(corpus, groups)["pairs_kitchen"] == TaskSchema((), ("entailment", "neutral", "contradiction"))
    manifest_file.unlink()
    assert read_schemas(corpus, groups)["pairs_kitchen"].fields == ()


def test_summary_names_the_field_and_label_words_of_each_cluster(real, tmp_path) -> None:
    from taskmill.clusters.cluster import ClusterConfig
    from taskmill.clusters.run import run_clustering

    corpus = _build(real, tmp_path, {
        "pairs_kitchen": ("tiny/pairs", _pairs("kitchen"), PAIR_TEMPLATES),
        "pairs_stadium": ("tiny/pairs", _pairs("stadium"), PAIR_TEMPLATES),
        "qa_kitchen": ("tiny/qa", _qa("kitchen"), QA_TEMPLATES),
        "qa_stadium": ("tiny/qa", _qa("stadium"), QA_TEMPLATES),
    })
    only_schema = RepresentConfig(embedder="tfidf", template_weight=0, answer_weight=0, shape_weight=0, schema_weight=1, rows_weight=0)
    run = run_clustering(corpus, tmp_path / "out", only_schema, ClusterConfig(k=2), draw=False)
    assert {frozenset(c.task_names) for c in run.manifest.clusters} == {frozenset({"pairs_kitchen", "pairs_stadium"}), frozenset({"qa_kitchen", "qa_stadium"})}
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "| field and label words |" in summary
    why = summary.split("## Why these clusters")[1].split("## Nearest tasks")[0]
    words = {line.split("|")[1].strip(): line.split("|")[3] for line in why.splitlines() if line.count("|") == 5}
    name = run.manifest.cluster_of()
    assert "hypothesis" in words[name["pairs_kitchen"]] and "entailment" in words[name["pairs_kitchen"]]
    assert "choices" in words[name["qa_kitchen"]] and "entailment" not in words[name["qa_kitchen"]]
    # the template words come from the templates' own text, without its {value} placeholders
    template_words = {line.split("|")[1].strip(): line.split("|")[2] for line in why.splitlines() if line.count("|") == 5}
    assert "entail" in template_words[name["pairs_kitchen"]] and "answer" in template_words[name["qa_kitchen"]]
    assert "value" not in template_words[name["pairs_kitchen"]] + template_words[name["qa_kitchen"]]


def test_clusters_with_the_schema_view_follow_the_task_when_the_rows_topic_changes(real, tmp_path) -> None:
    """The topic-invariance check on a real build (field names read from the manifest's templates):
    with MiniLM's default view weights (embedded by TF-IDF here), NLI pairs and multiple-choice
    questions each land together, and swapping the rows' topics between the two NLI tasks and
    between the two QA tasks moves nothing."""
    from taskmill.clusters.cluster import ClusterConfig
    from taskmill.clusters.manifest import Overrides
    from taskmill.clusters.represent import DEFAULT_WEIGHTS
    from taskmill.clusters.run import cluster_corpus

    config = RepresentConfig(embedder="tfidf", **{f"{v}_weight": w for v, w in DEFAULT_WEIGHTS["minilm"].items()})
    assert config.weights()["schema"] > 0
    partitions = []
    for name, (a, b) in {"before": ("kitchen", "stadium"), "after": ("stadium", "kitchen")}.items():
        corpus = _build(real, tmp_path / name, {
            "pairs_one": ("tiny/pairs", _pairs(a), PAIR_TEMPLATES), "pairs_two": ("tiny/pairs", _pairs(b), PAIR_TEMPLATES),
            "qa_one": ("tiny/qa", _qa(b), QA_TEMPLATES), "qa_two": ("tiny/qa", _qa(a), QA_TEMPLATES),
        })
        run = cluster_corpus(corpus, config, ClusterConfig(), Overrides())
        assert run.views is not None and run.views.schemas["pairs_one"].fields == ("hypothesis", "label", "premise")
        partitions.append({frozenset(c.task_names) for c in run.manifest.clusters})
    assert partitions[0] == partitions[1] == {frozenset({"pairs_one", "pairs_two"}), frozenset({"qa_one", "qa_two"})}


def test_a_fold_corpus_keeps_the_fields_and_template_texts_of_its_tasks(real, tmp_path) -> None:
    """Clustering a fold's train corpus sees the same schema and template views as the full corpus."""
    from taskmill.clusters.cluster import ClusterConfig
    from taskmill.clusters.fold_corpus import write_fold_corpora
    from taskmill.clusters.folds import FoldConfig, write_folds
    from taskmill.clusters.run import run_clustering

    corpus = _build(real, tmp_path, {
        "pairs_kitchen": ("tiny/pairs", _pairs("kitchen"), PAIR_TEMPLATES),
        "pairs_stadium": ("tiny/pairs", _pairs("stadium"), PAIR_TEMPLATES),
        "qa_kitchen": ("tiny/qa", _qa("kitchen"), QA_TEMPLATES),
    })
    run_clustering(corpus, tmp_path / "clusters", RepresentConfig(embedder="tfidf"), ClusterConfig(k=2), draw=False)
    write_folds(tmp_path / "clusters" / "clusters.yaml", corpus, tmp_path / "folds", FoldConfig(kinds=("task",)))
    write_fold_corpora(tmp_path / "folds", "task:qa_kitchen", tmp_path / "fold")
    full = read_schemas(corpus, rows_by_task(corpus))
    train = tmp_path / "fold" / "train"
    in_fold = read_schemas(train, rows_by_task(train))
    assert set(in_fold) == {"pairs_kitchen", "pairs_stadium"}
    assert in_fold == {t: full[t] for t in in_fold}
    assert in_fold["pairs_kitchen"].template_texts == (PAIR_ENTAIL_TEXT,)
    manifest = json.loads((train / "manifest.json").read_text(encoding="utf-8"))
    assert [e["task"] for e in manifest["templates"]] == ["pairs_kitchen", "pairs_stadium"]
