"""Fixtures of the orchestration tests: the starter collection's corpus, clusters and folds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def starter_folds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded starter collection built (zero-shot), clustered with TF-IDF into 3 clusters, and its
    leave-one-cluster-out and leave-one-task-out folds: ``{"corpus", "clusters", "folds"}``."""
    from taskmill.builders.build import build_collection
    from taskmill.clusters import ClusterConfig, FoldConfig, RepresentConfig, run_clustering, write_folds

    root = tmp_path_factory.mktemp("starter")
    corpus, clusters, folds = root / "corpus", root / "clusters", root / "folds"
    build_collection(None, corpus, formats=["zero_shot"], progress=False)
    run_clustering(corpus, clusters, RepresentConfig(embedder="tfidf"), ClusterConfig(k=3), draw=False)
    write_folds(clusters, corpus, folds, FoldConfig(kinds=("cluster", "task")))
    return {"corpus": corpus, "clusters": clusters, "folds": folds}


def _row(task, i, prompt, choices, target):
    return {"id": f"{task}-{i}", "task": task, "dataset": task, "split": "validation", "row_index": i,
            "template_id": "t", "template_name": "t", "format": "zero_shot", "prompt": prompt,
            "completion": choices[target], "messages": [{"role": "user", "content": prompt},
                                                        {"role": "assistant", "content": choices[target]}],
            "answer_choices": choices, "target_index": target, "shots": [], "metrics": ["Accuracy"], "original_task": True}


def _write_folds(tmp: Path) -> Path:
    """Two folds over a corpus of two tiny tasks (sent, topic), each held out by one fold."""
    corpus = tmp / "corpus"
    corpus.mkdir()
    rows = [_row("sent", i, f"Review {i}: fine. Good?", ["yes", "no"], i % 2) for i in range(4)]
    rows += [_row("topic", i, f"Headline {i}: goal scored. Topic?", ["sports", "politics"], 0) for i in range(4)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (corpus / "corpus.jsonl").write_text(text)
    folds = tmp / "folds"
    folds.mkdir()
    header = {"corpus": {"path": str(corpus), "sha256": hashlib.sha256(text.encode()).hexdigest()}}
    entries = [{"name": "cluster:opinion", "kind": "cluster", "held_out": ["opinion"], "train_tasks": ["topic"],
                "test_tasks": ["sent"]},
               {"name": "cluster:news", "kind": "cluster", "held_out": ["news"], "train_tasks": ["sent"],
                "test_tasks": ["topic"]}]
    (folds / "folds.yaml").write_text(yaml.safe_dump({**header, "folds": entries}))
    return folds


@pytest.fixture(scope="session")
def write_loco_folds():
    """``write_loco_folds(folder) -> folds folder``: two folds over two tiny tasks."""
    return _write_folds
