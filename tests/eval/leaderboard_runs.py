"""Real ``taskmill eval`` result folders for the leaderboard tests, made in well under a second.

The eval runner, scoring, aggregation and results store are the real ones (``evaluate``); only the
model is a stand-in: :class:`SkillBackend` answers a row correctly when a hash of its prompt falls
under a per-task skill level. Base and tuned runs of one model share the hash salt, so the tuned
run knows a superset of the rows the base knows: paired, correlated runs like real ones.
Imported by path from the test files (tests/ has no packages).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Mapping

from taskmill.backends.requests import Loglikelihood
from taskmill.eval.runner import EvalConfig, evaluate

CLUSTERS = {"imdb": "sentiment", "yelp": "sentiment", "rte": "nli", "squad": "qa"}
TEMPLATES = {"imdb": ("i1", "i2"), "yelp": ("y1", "y2", "y3"), "rte": ("r1", "r2"), "squad": ("q1", "q2")}
CHOICES = {"imdb": ["negative", "positive"], "yelp": ["bad", "good"], "rte": ["yes", "no"]}


def _row(task: str, tpl: str, i: int, fmt: str) -> dict:
    prompt = f"[{task}/{tpl}/{fmt}] example {i}: what is the answer?"
    choices = CHOICES.get(task)
    target = (i * 7 + len(tpl)) % len(choices) if choices else None
    completion = choices[target] if choices else f"answer {i % 5}"
    return {
        "id": f"{task}:{tpl}:{fmt}:{i}", "task": task, "dataset": task, "split": "validation", "row_index": i,
        "template_id": tpl, "template_name": f"{task} {tpl}", "format": fmt, "prompt": prompt, "completion": completion,
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
        "answer_choices": choices, "target_index": target, "shots": [],
        "metrics": ["Accuracy"] if choices else ["Squad"], "original_task": True,
    }


def write_corpus(folder: Path, n: int = 30, formats: tuple[str, ...] = ("zero_shot",)) -> Path:
    """A corpus of four tasks in three clusters, ``n`` rows per template and format."""
    rows = [_row(task, tpl, i, fmt) for fmt in formats for task, tpls in TEMPLATES.items() for tpl in tpls for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "clusters.json").write_text(json.dumps(CLUSTERS), encoding="utf-8")
    for cluster in sorted(set(CLUSTERS.values())):
        tasks = sorted(t for t, c in CLUSTERS.items() if c == cluster)
        fold = {"name": cluster, "held_out": [cluster], "train_tasks": sorted(set(CLUSTERS) - set(tasks)), "test_tasks": tasks}
        (folder / f"fold-{cluster}.json").write_text(json.dumps(fold), encoding="utf-8")
    return folder


class SkillBackend:
    """Stand-in model: knows a row iff crc32(salt, prompt) % 100 < skill[task] (see module doc)."""

    name = "standin"
    chat_format = None

    def __init__(self, corpus: Path, revision: str, skill: Mapping[str, float], adapter_hash: str = "", salt: str = "") -> None:
        self.model_revision, self.adapter_hash, self.skill, self.salt = revision, adapter_hash, dict(skill), salt or revision
        self.answers: dict[str, tuple[str, str]] = {}
        for line in (corpus / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            self.answers[row["prompt"] + "\n"] = (row["task"], row["completion"])

    def _knows(self, context: str) -> bool:
        task, _ = self.answers[context]
        return zlib.crc32(f"{self.salt}|{context}".encode()) % 100 < self.skill.get(task, 0)

    def loglikelihood(self, requests):
        out = []
        for req in requests:
            _, answer = self.answers[req.context]
            right = (req.continuation == answer) == self._knows(req.context)
            out.append(Loglikelihood(-1.0 if right else -5.0, right, 1))
        return out

    def generate(self, requests):
        return [self.answers[r.context][1] if self._knows(r.context) else "no idea" for r in requests]


def eval_run(corpus: Path, out: Path, backend: SkillBackend, *, fold: str | None = None, adapter: Path | None = None,
             clusters: bool = True, bootstrap: int = 200, formats: tuple[str, ...] = ("zero_shot",)) -> Path:
    """Run the real ``evaluate`` with the stand-in backend; returns the results folder."""
    if adapter is not None:
        adapter.mkdir(parents=True, exist_ok=True)
    config = EvalConfig(
        corpus=str(corpus), out=str(out), model=f"/models/{backend.model_revision}", prompt_style="plain",
        adapter=str(adapter) if adapter else None, fold=str(corpus / f"fold-{fold}.json") if fold else None,
        clusters=str(corpus / "clusters.json") if clusters else None, bootstrap=bootstrap, formats=formats,
    )
    evaluate(config, backend=backend, progress=False)
    return out


BASE_SKILL = {"alpha": {"imdb": 55, "yelp": 60, "rte": 40, "squad": 20}, "beta": {"imdb": 45, "yelp": 50, "rte": 35, "squad": 10}}
GAIN = {"alpha": 15, "beta": 25}


def loco_runs(root: Path, models: tuple[str, ...] = ("alpha",), formats: tuple[str, ...] = ("zero_shot",)) -> Path:
    """Per model: one base run on every task, and one tuned run per held-out cluster (its fold's tasks).

    Layout: ``root/runs/<model>/base`` and ``root/runs/<model>/tuned/<cluster>``; returns ``root/runs``.
    """
    corpus = write_corpus(root / "corpus", formats=formats)
    for model in models:
        skill = BASE_SKILL[model]
        eval_run(corpus, root / "runs" / model / "base", SkillBackend(corpus, model, skill), formats=formats)
        for cluster in sorted(set(CLUSTERS.values())):
            tuned = {t: s + GAIN[model] for t, s in skill.items()}
            backend = SkillBackend(corpus, model, tuned, adapter_hash=f"{model}-{cluster}-adapter", salt=model)
            eval_run(corpus, root / "runs" / model / "tuned" / cluster, backend, fold=cluster,
                     adapter=root / "adapters" / model / cluster, formats=formats)
    return root / "runs"
