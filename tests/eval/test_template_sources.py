"""results.json records where converted templates came from (the corpus manifest's template ``source``)."""

from __future__ import annotations

import json

from taskmill.backends.requests import Loglikelihood
from taskmill.eval.runner import EvalConfig, evaluate


class FixedBackend:
    """A stand-in for a model (this test checks results metadata, not scores): every choice scores
    minus its length, and the requests it receives are kept."""

    name, model_revision, adapter_hash, chat_format = "fixed", "none", "none", None

    def __init__(self):
        self.pairs = []

    def loglikelihood(self, reqs):
        self.pairs += [(r.context, r.continuation) for r in reqs]
        return [Loglikelihood(-float(len(r.continuation)), False, 1) for r in reqs]


def _corpus(folder, source):
    folder.mkdir()
    rows = [{"id": f"{task}{i}", "task": task, "dataset": "d", "split": "validation", "row_index": i,
             "template_id": "t", "template_name": "t", "format": "zero_shot", "prompt": "Q:", "completion": "a",
             "messages": [], "answer_choices": ["a", " b "], "target_index": 0, "shots": [], "metrics": ["Accuracy"],
             "original_task": True} for task in ("conv", "hand") for i in range(2)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    manifest = {"templates": [{"task": "conv", "path": "piqa.yaml", "sha256": "x", "source": source},
                              {"task": "hand", "path": "hand.yaml", "sha256": "y"},
                              {"task": "absent", "path": "z.yaml", "sha256": "z", "source": source}]}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_results_name_the_lm_eval_task_and_whether_its_settings_were_used(tmp_path):
    source = {"lm_eval": {"task": "piqa", "version": 1.0}, "eval": {"prompt_style": "lmeval", "separator": " "}}
    _corpus(tmp_path / "corpus", source)
    for style, used in (("lmeval", True), ("plain", False)):
        backend = FixedBackend()
        evaluate(EvalConfig(corpus=str(tmp_path / "corpus"), out=str(tmp_path / style), model="none",
                            prompt_style=style, separator=" ", formats=("zero_shot",), bootstrap=0),
                 backend=backend, progress=False)
        results = json.loads((tmp_path / style / "results.json").read_text(encoding="utf-8"))
        assert results["template_sources"] == [{"task": "conv", "template_file": "piqa.yaml", **source,
                                                "eval_settings_used": used}]
        # lmeval style: the separator starts each choice, which keeps its own spaces.
        first = ("Q:", "  b ") if style == "lmeval" else ("Q: ", " b ")
        assert backend.pairs[1] == first


def test_hand_written_corpus_results_have_no_template_sources(tmp_path):
    folder = tmp_path / "corpus"
    _corpus(folder, None)
    evaluate(EvalConfig(corpus=str(folder), out=str(tmp_path / "out"), model="none", prompt_style="plain",
                        formats=("zero_shot",), bootstrap=0), backend=FixedBackend(), progress=False)
    assert "template_sources" not in json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
