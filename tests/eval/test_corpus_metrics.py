"""Corpus-level metrics (BLEU, chrF) computed as sacreBLEU's corpus functions, their bootstrap and
paired intervals recomputing the corpus statistic, signatures in results and leaderboard, and the
SQuAD empty-answer setting.

The eval runner, scoring, aggregation, store and report are the real ones; only the model is a
stand-in (:class:`FixedAnswers` returns fixed predictions), since the point is the metric arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import sacrebleu
from typer.testing import CliRunner

from taskmill.cli import app
from taskmill.errors import ConfigError, DataError
from taskmill.eval import metrics as m
from taskmill.eval.aggregate import aggregate, percentile_ci
from taskmill.eval.leaderboard.paired import task_delta_draws
from taskmill.eval.leaderboard.report import write_report
from taskmill.eval.runner import EvalConfig, evaluate
from taskmill.eval.scoring import score_generation
from taskmill.records import Row

# A fixed set: casing, punctuation, unicode, repeated words, empty predictions and references.
REFS = [
    "The cat sat on the mat.", "Der Hund läuft schnell über die Straße.", "I can't believe it's not butter!",
    "北京是中国的首都。", "A quick brown fox jumps over the lazy dog", "", "Hello, world", "naïve café résumé",
    "the the the the", "Numbers: 1, 2, 3.", "She said \"yes\" — twice.", "Paris", "one two three four five six",
    "ends with space ", "Multiple   spaces here", "emoji 🙂 ok", "x", "New York City is big.",
    "lorem ipsum dolor sit amet", "Question? Answer!",
]
HYPS = [
    "The cat sat on a mat.", "Der Hund lief schnell über die Strasse.", "I can not believe it is not butter!",
    "北京是中国首都。", "A quick brown fox jumped over the lazy dog", "", "hello world", "naive cafe resume",
    "the the", "Numbers: 1, 2, 3.", "She said yes twice.", "", "one two three four five six",
    "ends with space", "Multiple spaces here", "emoji ok", "y", "New York is a big city.", "", "Question? Answer!",
]


def _row(i: int, template: str, metrics: tuple[str, ...], completion: str, task: str = "mt") -> Row:
    prompt = f"[{task}/{template}] translate #{i}"
    return Row(id=f"{task}:{template}:{i}", task=task, dataset=task, split="validation", row_index=i, template_id=template,
               template_name=template, format="zero_shot", prompt=prompt, completion=completion,
               messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}),
               metrics=metrics)


def _write_corpus(folder: Path, rows: list[Row]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows), encoding="utf-8")
    return folder


class FixedAnswers:
    """Stand-in model: answers each prompt with a fixed prediction (no log-likelihood rows here)."""

    name = "standin"
    chat_format = None

    def __init__(self, answers: dict[str, str], revision: str = "m", adapter_hash: str = "") -> None:
        self.answers, self.model_revision, self.adapter_hash = answers, revision, adapter_hash

    def generate(self, requests):
        return [self.answers[r.context.rstrip("\n")] for r in requests]

    def loglikelihood(self, requests):  # pragma: no cover - the corpora here have no choice rows
        raise AssertionError("no choice rows expected")


def _mt_corpus(folder: Path) -> tuple[Path, dict[str, str]]:
    rows = [_row(i, "bleu_tpl", ("BLEU",), ref) for i, ref in enumerate(REFS)]
    rows += [_row(i, "chrf_tpl", ("chrF",), ref) for i, ref in enumerate(REFS)]
    rows += [_row(i, "em_bleu_tpl", ("Accuracy", "BLEU"), ref) for i, ref in enumerate(REFS)]
    return _write_corpus(folder, rows), {r.prompt: HYPS[r.row_index] for r in rows}


def _eval(corpus: Path, out: Path, backend: FixedAnswers, **kw) -> dict:
    cfg = EvalConfig(corpus=str(corpus), out=str(out), model=f"/models/{backend.model_revision}", prompt_style="plain", **kw)
    evaluate(cfg, backend=backend, progress=False)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_template_bleu_and_chrf_equal_sacrebleu_corpus_functions(tmp_path):
    corpus, answers = _mt_corpus(tmp_path / "c")
    res = _eval(corpus, tmp_path / "out", FixedAnswers(answers), bootstrap=50)
    tpl = {t["template_id"]: t for t in res["per_template"]}
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS])
    chrf = sacrebleu.corpus_chrf(HYPS, [REFS])
    # Equal to the last digit results.json keeps (4 decimals).
    assert tpl["bleu_tpl"]["score"] == round(bleu.score, 4) and tpl["bleu_tpl"]["level"] == "corpus"
    assert tpl["chrf_tpl"]["score"] == round(chrf.score, 4) and tpl["chrf_tpl"]["metrics"] == {"chrf": round(chrf.score, 4)}
    stats = np.array([m.segment_stats("bleu", h, [r]) for h, r in zip(HYPS, REFS)])
    assert m.corpus_score("bleu", stats) == bleu.score  # unrounded: the same float
    # A secondary corpus metric is a corpus score too; the primary exact match stays a mean.
    em = np.mean([m.exact_match(h, [r]) for h, r in zip(HYPS, REFS)])
    assert tpl["em_bleu_tpl"]["metrics"] == {"bleu": round(bleu.score, 4), "exact_match": round(float(em), 4)}
    assert tpl["em_bleu_tpl"]["level"] == "example"
    # Not the old convention: the mean of sentence BLEU differs on this set.
    sentence_mean = np.mean([sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)])
    assert abs(sentence_mean - bleu.score) > 1
    # Signatures: what sacreBLEU itself reports for these corpus calls.
    metric = sacrebleu.BLEU()
    metric.corpus_score(HYPS, [REFS])
    assert res["metric_info"]["bleu"] == {"level": "corpus", "source": "sacrebleu corpus_bleu (defaults)",
                                          "signature": str(metric.get_signature())}
    metric = sacrebleu.CHRF()
    metric.corpus_score(HYPS, [REFS])
    assert res["metric_info"]["chrf"]["signature"] == str(metric.get_signature())
    assert tpl["bleu_tpl"]["signatures"] == {"bleu": res["metric_info"]["bleu"]["signature"]}
    assert res["metric_info"]["exact_match"]["level"] == "example" and res["schema"] == "taskmill.eval.results/2"
    # Per-example records keep sentence scores and the segment statistics the corpus score sums.
    examples = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    first = next(e for e in examples if e["template_id"] == "bleu_tpl")
    assert first["scores"]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(HYPS[0], [REFS[0]]).score, abs=1e-12)
    assert len(first["stats"]["bleu"]) == 10
    table = pq.read_table(tmp_path / "out" / "examples.parquet")
    assert json.loads(table.column("stats")[0].as_py()) == examples[0]["stats"]


def _bleu_examples(hyps, refs, metric="bleu"):
    out = []
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = score_generation(_row(i, "t", ("BLEU",) if metric == "bleu" else ("chrF",), r), {"kind": "generate", "prediction": h})
        out.append({"task": "mt", "template_id": "t", "template_name": "t", "format": "zero_shot", **s})
    return out


@pytest.mark.parametrize("metric,corpus_fn", [("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)])
def test_corpus_bootstrap_matches_a_direct_resampling_loop(metric, corpus_fn):
    n_boot, seed = 300, 7
    [tpl] = aggregate(_bleu_examples(HYPS, REFS, metric), n_boot=n_boot, seed=seed)["per_template"]
    # Direct loop: the same generator draws (B, n) indices; each resample is scored by sacreBLEU.
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(HYPS), size=(n_boot, len(HYPS)))
    direct = np.array([corpus_fn([HYPS[i] for i in draw], [[REFS[i] for i in draw]]).score for draw in idx])
    assert tpl["ci95"] == percentile_ci(direct)
    # ...and not what resampling sentence scores would give.
    sentence = np.array([e["scores"][metric] for e in _bleu_examples(HYPS, REFS, metric)])
    assert tpl["ci95"] != percentile_ci(sentence[idx].mean(axis=1))


def test_corpus_draws_are_the_same_in_chunks(monkeypatch):
    stats = np.array([m.segment_stats("chrf", h, [r]) for h, r in zip(HYPS, REFS)])
    idx = np.random.default_rng(0).integers(0, len(HYPS), size=(50, len(HYPS)))
    whole = m.corpus_draws("chrf", stats, idx)
    monkeypatch.setattr(m, "_COUNT_CELLS", 3 * len(HYPS))  # 3 draws per chunk, the last one short
    np.testing.assert_array_equal(m.corpus_draws("chrf", stats, idx), whole)
    assert whole[0] == sacrebleu.corpus_chrf([HYPS[i] for i in idx[0]], [[REFS[i] for i in idx[0]]]).score


def test_paired_delta_draws_recompute_the_corpus_statistic():
    tuned_hyps = [r if i % 2 else h for i, (h, r) in enumerate(zip(HYPS, REFS))]  # half the answers fixed
    stats = {name: np.array([m.segment_stats("bleu", h, [r]) for h, r in zip(hyps, REFS)])
             for name, hyps in (("tuned", tuned_hyps), ("base", HYPS))}
    draws = task_delta_draws([("bleu", stats["tuned"], stats["base"])], 200, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(REFS), size=(200, len(REFS)))
    direct = [sacrebleu.corpus_bleu([tuned_hyps[i] for i in d], [[REFS[i] for i in d]]).score
              - sacrebleu.corpus_bleu([HYPS[i] for i in d], [[REFS[i] for i in d]]).score for d in idx]
    np.testing.assert_allclose(draws, direct, rtol=0, atol=1e-9)


def test_board_delta_and_signature_for_a_bleu_task(tmp_path):
    corpus, answers = _mt_corpus(tmp_path / "c")
    tuned_answers = {p: (REFS[int(p.rsplit("#", 1)[1])] if int(p.rsplit("#", 1)[1]) % 2 else a) for p, a in answers.items()}
    (tmp_path / "ad").mkdir()
    base = _eval(corpus, tmp_path / "base", FixedAnswers(answers), bootstrap=100, tasks=("mt",))
    tuned = _eval(corpus, tmp_path / "tuned", FixedAnswers(tuned_answers, adapter_hash="a"), bootstrap=100,
                  adapter=str(tmp_path / "ad"))
    board = write_report([str(tmp_path / "base"), str(tmp_path / "tuned")], tmp_path / "board", bootstrap=300)
    delta = board["scores"]["zero_shot"]["m + adapter"]["delta"]["tasks"]["mt"]
    assert delta["paired"] and delta["ci95"][0] <= delta["delta"] <= delta["ci95"][1]
    task = lambda res: next(t for t in res["per_task"] if t["task"] == "mt")["score"]  # noqa: E731
    assert delta["delta"] == pytest.approx(task(tuned) - task(base), abs=1e-4) and delta["ci95"][0] > 0
    sig = base["metric_info"]["bleu"]["signature"]
    assert board["metrics"]["bleu"] == {"level": "corpus", "source": "sacrebleu corpus_bleu (defaults)", "signatures": [sig]}
    assert board["runs"][0]["metric_info"]["bleu"]["signature"] == sig
    assert f"`{sig}`" in (tmp_path / "board" / "leaderboard.md").read_text()
    assert f"<code>{sig}</code>" in (tmp_path / "board" / "leaderboard.html").read_text()


def test_edge_cases_single_example_all_empty_hypotheses_and_no_example():
    [one] = aggregate(_bleu_examples(["the cat sat on the mat"], ["the cat sat on the mat"]), n_boot=20)["per_template"]
    assert one["score"] == 100.0 and one["ci95"] == [100.0, 100.0] and one["n"] == 1
    [empty] = aggregate(_bleu_examples(["", "", ""], ["a b c d", "e", ""]), n_boot=20)["per_template"]
    assert empty["score"] == round(sacrebleu.corpus_bleu(["", "", ""], [["a b c d", "e", ""]]).score, 4) == 0.0
    assert empty["ci95"] == [0.0, 0.0]
    assert m.corpus_score("bleu", np.zeros((0, 10), dtype=np.int64)) == 0.0
    with pytest.raises(ValueError, match="carry no 'stats'"):
        aggregate([{"task": "t", "template_id": "t", "template_name": "t", "format": "zero_shot", "primary": "bleu",
                    "scores": {"bleu": 3.0}}], n_boot=0)


# (prediction, reference, squad_v1 F1, squad_v2 F1): the v1.1 script gives 0 whenever no token is
# shared (both-empty included); v2.0 gives 100 when both normalise to nothing, 0 when one does.
SQUAD_CASES = [
    ("", "", 0.0, 100.0),
    ("The", "a", 0.0, 100.0),          # articles normalise away
    ("!!", " ", 0.0, 100.0),            # punctuation and whitespace too
    ("", "Paris", 0.0, 0.0),
    ("an", "the answer", 0.0, 0.0),
    ("Paris!", "", 0.0, 0.0),
    ("the Paris", "paris.", 100.0, 100.0),
]


@pytest.mark.parametrize("pred,ref,v1,v2", SQUAD_CASES)
def test_squad_empty_answers_follow_the_chosen_script(pred, ref, v1, v2):
    assert m.squad_f1(pred, [ref], version="squad_v1") == v1
    assert m.squad_f1(pred, [ref], version="squad_v2") == v2
    assert m.squad_f1(pred, [ref]) == v2  # the default is squad_v2
    both_empty = not m.normalize_squad(pred) and not m.normalize_squad(ref)
    assert m.squad_em(pred, [ref]) == (100.0 if both_empty or m.normalize_squad(pred) == m.normalize_squad(ref) else 0.0)


def test_squad_setting_reaches_results_and_is_validated(tmp_path):
    rows = [_row(i, "q", ("Squad",), ref, task="qa") for i, ref in enumerate(["the", "Paris", ""])]
    corpus = _write_corpus(tmp_path / "c", rows)
    answers = {r.prompt: pred for r, pred in zip(rows, ["", "paris", "a"])}
    v2 = _eval(corpus, tmp_path / "v2", FixedAnswers(answers), bootstrap=0)
    v1 = _eval(corpus, tmp_path / "v1", FixedAnswers(answers), bootstrap=0, squad="squad_v1")
    assert v2["per_template"][0]["score"] == 100.0 and v1["per_template"][0]["score"] == pytest.approx(100 / 3, abs=1e-4)
    assert v1["per_template"][0]["metrics"]["squad_em"] == 100.0  # EM is the same rule in both scripts
    assert "v1.1" in v1["metric_info"]["squad_f1"]["source"] and v1["config"]["squad"] == "squad_v1"
    with pytest.raises(ConfigError, match="squad: 'v3': expected squad_v1 or squad_v2"):
        EvalConfig(corpus=str(corpus), out=str(tmp_path / "x"), model="m", squad="v3").validate()
    bad = CliRunner().invoke(app, ["eval", str(corpus), "--model", "m", "--out", str(tmp_path / "x"), "--squad", "v3"])
    assert bad.exit_code == 2 and "squad: 'v3': expected squad_v1 or squad_v2" in bad.output
    assert not (tmp_path / "x").exists()


def test_old_results_with_averaged_bleu_are_refused_with_one_line(tmp_path):
    corpus, answers = _mt_corpus(tmp_path / "c")
    _eval(corpus, tmp_path / "run", FixedAnswers(answers), bootstrap=0)
    path = tmp_path / "run" / "results.json"
    res = json.loads(path.read_text())
    path.write_text(json.dumps({**res, "schema": "taskmill.eval.results/1"}))
    with pytest.raises(DataError, match=r"averaged sentence-level bleu, chrf: re-run `taskmill eval`"):
        write_report([str(tmp_path / "run")], tmp_path / "board")
    # A /1 file without corpus metrics is still read.
    res["per_template"] = [{**t, "metrics": {"exact_match": 1.0}} for t in res["per_template"]]
    path.write_text(json.dumps({**res, "schema": "taskmill.eval.results/1"}))
    write_report([str(tmp_path / "run")], tmp_path / "board2", bootstrap=0)


def test_every_metric_declares_its_level():
    assert set(m.GENERATION_METRICS) | {"acc", "acc_norm", "acc_calibrated"} == set(m.METRIC_INFO)
    assert {n for n, info in m.METRIC_INFO.items() if info.level == "corpus"} == {"bleu", "chrf"}
    assert all(info.level in ("example", "corpus") and info.source for info in m.METRIC_INFO.values())
