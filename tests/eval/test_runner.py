"""The eval runner: results store, resume after a crash, no model call on an unchanged re-run, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from taskmill.errors import ConfigError, DataError
from taskmill.backends.hf import HFBackend
from taskmill.eval.runner import EvalConfig, evaluate
from taskmill.eval.store import ResultCache


class CountingBackend:
    """Wraps a real backend and counts the requests that reach it; can crash after N calls."""

    def __init__(self, inner, crash_after: int | None = None):
        self.inner, self.crash_after = inner, crash_after
        self.name, self.model_revision, self.adapter_hash = inner.name, inner.model_revision, inner.adapter_hash
        self.chat_format = inner.chat_format
        self.calls, self.requests = 0, 0

    def _tick(self, n):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.requests += n

    def loglikelihood(self, reqs):
        self._tick(len(reqs))
        return self.inner.loglikelihood(reqs)

    def generate(self, reqs):
        self._tick(len(reqs))
        return self.inner.generate(reqs)


def _row(task, template, i, prompt, choices=None, target=None, completion="", metrics=("Accuracy",), fmt="zero_shot"):
    completion = choices[target] if choices else completion
    return {
        "id": f"{task}:{template}:{fmt}:{i}", "task": task, "dataset": task, "split": "validation", "row_index": i,
        "template_id": template, "template_name": template, "format": fmt, "prompt": prompt, "completion": completion,
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
        "answer_choices": list(choices) if choices else None, "target_index": target, "shots": [],
        "metrics": list(metrics), "original_task": True,
    }


def write_corpus(folder: Path) -> Path:
    rows = []
    for i in range(6):
        rows.append(_row("sentiment", "t1", i, f"Review {i}: great film. Positive or negative?", ["positive", "negative"], i % 2))
        rows.append(_row("sentiment", "t2", i, f"Is review {i} happy?", ["yes", "no"], (i + 1) % 2))
        rows.append(_row("qa", "g1", i, f"Question {i}: capital of France?", completion="Paris", metrics=("Squad",)))
    rows.append(_row("sentiment", "t1", 0, "skip me", ["a", "b"], 0, fmt="cot"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture()
def backend(tiny_model, smol_tokenizer):
    return HFBackend(tiny_model, smol_tokenizer, batch_size=4)


def _config(tmp_path, **kw):
    base = dict(corpus=str(write_corpus(tmp_path / "corpus")), out=str(tmp_path / "out"), model="tiny",
                prompt_style="plain", max_new_tokens=4, bootstrap=200, chunk_size=5)
    base.update(kw)
    return EvalConfig(**base)


def test_results_store_and_no_call_rerun(tmp_path, backend):
    cfg = _config(tmp_path, clusters=None)
    first = CountingBackend(backend)
    summary = evaluate(cfg, backend=first, progress=False)
    assert summary["n_examples"] == 18 and first.calls > 0
    assert first.requests == 6 * 2 + 6 * 2 + 6  # choices of both templates + one generation each
    out = Path(cfg.out)
    examples = [json.loads(l) for l in (out / "examples.jsonl").read_text().splitlines()]
    assert len(examples) == 18 and {e["format"] for e in examples} == {"zero_shot"}
    choice = next(e for e in examples if e["template_id"] == "t1")
    assert set(choice["scores"]) == {"acc", "acc_norm"} and len(choice["raw"]["logprobs"]) == 2
    gen = next(e for e in examples if e["task"] == "qa")
    assert gen["primary"] == "squad_f1" and isinstance(gen["prediction"], str)
    table = pq.read_table(out / "examples.parquet")
    assert table.num_rows == 18 and "score_acc_norm" in table.column_names
    results = json.loads((out / "results.json").read_text())
    assert results["config_hash"] == cfg.config_hash() and results["versions"]["torch"]
    assert {t["task"] for t in results["per_task"]} == {"sentiment", "qa"}
    before = (out / "results.json").read_bytes()

    again = CountingBackend(backend)
    summary2 = evaluate(cfg, backend=again, progress=False)
    assert again.calls == 0 and again.requests == 0 and summary2["model_calls"] == 0
    assert (out / "results.json").read_bytes() == before  # byte-identical results


def test_killed_run_resumes_where_it_stopped(tmp_path, backend):
    cfg = _config(tmp_path)
    crashing = CountingBackend(backend, crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, backend=crashing, progress=False)
    cached = ResultCache(Path(cfg.out) / "cache.jsonl")
    assert 0 < len(cached.entries) < 18
    # Simulate the kill landing mid-append: a partial line at the end of the cache.
    with (Path(cfg.out) / "cache.jsonl").open("a") as fh:
        fh.write('{"key": "abc", "raw": {"kin')
    resumed = CountingBackend(backend)
    evaluate(cfg, backend=resumed, progress=False)
    uninterrupted = CountingBackend(backend)
    evaluate(_config(tmp_path / "fresh"), backend=uninterrupted, progress=False)
    assert resumed.requests == uninterrupted.requests - crashing.requests
    a = [json.loads(l)["scores"] for l in (Path(cfg.out) / "examples.jsonl").read_text().splitlines()]
    b = [json.loads(l)["scores"] for l in (tmp_path / "fresh" / "out" / "examples.jsonl").read_text().splitlines()]
    assert a == b
    assert ResultCache(Path(cfg.out) / "cache.jsonl").dropped_lines == 1


def test_changed_prompt_or_model_is_not_served_from_cache(tmp_path, backend, tiny_llama_factory, smol_tokenizer):
    cfg = _config(tmp_path)
    evaluate(cfg, backend=CountingBackend(backend), progress=False)
    styled = CountingBackend(backend)
    evaluate(_config(tmp_path, separator=" "), backend=styled, progress=False)
    assert styled.requests == 30  # every row asked again
    other = CountingBackend(HFBackend(tiny_llama_factory(len(smol_tokenizer), seed=1), smol_tokenizer))
    evaluate(cfg, backend=other, progress=False)
    assert other.requests == 30


def test_filters_limit_and_fold(tmp_path, backend):
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"name": "f", "held_out": ["c"], "train_tasks": ["qa"], "test_tasks": ["sentiment"]}))
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"sentiment": "opinion"}))
    summary = evaluate(_config(tmp_path, fold=str(fold), limit=2, clusters=str(clusters)), backend=backend, progress=False)
    assert summary["n_examples"] == 4
    assert [c["cluster"] for c in summary["per_cluster"]] == ["opinion"]


def test_config_problems_listed_at_once(tmp_path):
    cfg = EvalConfig(corpus=str(tmp_path / "nope"), out=str(tmp_path), model="m", backend="tpu",
                     formats=("zero_shot", "bogus"), limit=0, prompt_style="fancy")
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert len(err.value.problems) == 5


def test_bad_corpus_line_names_file_and_line(tmp_path, backend):
    folder = write_corpus(tmp_path / "c")
    with (folder / "corpus.jsonl").open("a") as fh:
        fh.write('{"id": "x"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl: row line 20"):
        evaluate(_config(tmp_path, corpus=str(folder)), backend=backend, progress=False)


def test_cli_eval_on_a_model_folder(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from taskmill.cli import app

    corpus = write_corpus(tmp_path / "corpus")
    args = ["eval", str(corpus), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
            "--prompt-style", "plain", "--task", "sentiment", "--limit", "3", "--bootstrap", "50"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "sentiment" in res.output and "acc" in res.output
    res2 = CliRunner().invoke(app, args)
    assert "0 evaluated now, 0 backend calls" in res2.output
    bad = CliRunner().invoke(app, ["eval", str(tmp_path / "missing"), "--model", "m", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no corpus.jsonl" in bad.output


def test_calibration_and_chat_style(tmp_path, backend):
    cfg = _config(tmp_path, calibrate=True, tasks=("sentiment",), prompt_style="auto")
    summary = evaluate(cfg, backend=backend, progress=False)
    assert summary["prompt_style"]["kind"] == "chat"  # the SmolLM2 tokenizer has a chat template
    assert all("acc_calibrated" in t["metrics"] for t in summary["per_template"])
    first = json.loads((Path(cfg.out) / "examples.jsonl").read_text().splitlines()[0])
    assert len(first["raw"]["calib_logprobs"]) == 2 and first["raw"]["logprobs"] != first["raw"]["calib_logprobs"]
