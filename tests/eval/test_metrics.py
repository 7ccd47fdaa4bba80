"""Generation metrics: normalisation rules and reference values."""

from __future__ import annotations

import pytest

from taskmill.eval import metrics as m


def test_exact_match_uses_sni_normalisation_keeping_articles():
    assert m.exact_match("  The Answer!! ", ["the answer"]) == 100.0
    assert m.exact_match("answer", ["the answer"]) == 0.0  # SNI keeps articles
    assert m.exact_match("b", ["a", "B."]) == 100.0


def test_squad_scores_drop_articles_and_count_overlap():
    assert m.squad_em("answer", ["The answer"]) == 100.0
    # pred tokens {paris, france}, ref {paris}: P=1/2, R=1 -> F1 = 2/3
    assert m.squad_f1("Paris, France", ["Paris"]) == pytest.approx(100 * 2 / 3)
    assert m.squad_f1("london", ["Paris", "london city"]) == pytest.approx(100 * 2 / 3)
    assert m.squad_f1("", [""]) == 100.0


def test_rouge_l_matches_lcs_fmeasure_with_stemming():
    # LCS("the cats sat", "the cat sat down") with stemming cats->cat = 3; P=3/3, R=3/4
    assert m.rouge_l("the cats sat", ["the cat sat down"]) == pytest.approx(100 * 2 * 1 * 0.75 / 1.75)
    assert m.rouge_l("nothing shared", ["entirely different"]) == 0.0


def test_bleu_and_chrf_perfect_and_disjoint():
    assert m.bleu("the quick brown fox jumps", ["the quick brown fox jumps"]) == pytest.approx(100.0)
    assert m.chrf("the quick brown fox", ["the quick brown fox"]) == pytest.approx(100.0)
    assert m.chrf("zzzz", ["the quick brown fox"]) < 10


def test_metrics_for_maps_template_metadata():
    assert m.metrics_for(["ROUGE"]) == ("rougeL",)
    assert m.metrics_for(["Squad"]) == ("squad_f1", "squad_em")
    assert m.metrics_for(["Accuracy", "BLEU"]) == ("exact_match", "bleu")
    assert m.metrics_for(["Other"]) == ("exact_match", "rougeL")
    assert m.metrics_for([]) == ("exact_match", "rougeL")
