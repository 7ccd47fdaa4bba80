"""Generation metrics, each ``(prediction, references) -> score in [0, 100]``, best over references.

- ``exact_match``: Super-NaturalInstructions' rule: lower-case, drop ASCII punctuation, collapse
  whitespace (articles are kept), then compare.
- ``rougeL``: ROUGE-L F-measure from the ``rouge-score`` package with its default tokenizer and the
  Porter stemmer, exactly Super-NaturalInstructions' English scorer.
- ``squad_f1`` / ``squad_em``: SQuAD v1.1's token F1 and exact match (its normalisation also drops
  the articles a/an/the).
- ``bleu`` / ``chrf``: sentence-level sacreBLEU scores (corpus-level BLEU is not an average of
  these; per-example values are what bootstrap intervals resample).

Template metadata names (PromptSource's ``metrics``) map to these through :func:`metrics_for`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache
from typing import Callable, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_sni(text: str) -> str:
    """Super-NaturalInstructions' answer normalisation (SQuAD's without article removal)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(text.split())


def normalize_squad(text: str) -> str:
    """SQuAD v1.1's answer normalisation: lower, drop punctuation and articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """100 when the normalised prediction equals a normalised reference, else 0."""
    pred = normalize_sni(prediction)
    return 100.0 * any(pred == normalize_sni(ref) for ref in references)


@lru_cache(maxsize=1)
def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        from taskmill.errors import TaskmillError

        raise TaskmillError("ROUGE needs rouge-score, which is not installed: pip install taskmill[eval]") from None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure x 100, best over references."""
    scorer = _rouge_scorer()
    return max((100.0 * scorer.score(ref, prediction)["rougeL"].fmeasure for ref in references), default=0.0)


def _squad_f1_one(prediction: str, reference: str) -> float:
    pred, ref = normalize_squad(prediction).split(), normalize_squad(reference).split()
    if not pred or not ref:
        return 100.0 * (pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 100.0 * 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token-overlap F1 x 100, best over references."""
    return max((_squad_f1_one(prediction, ref) for ref in references), default=0.0)


def squad_em(prediction: str, references: Sequence[str]) -> float:
    """SQuAD exact match x 100 (articles dropped before comparing)."""
    pred = normalize_squad(prediction)
    return 100.0 * any(pred == normalize_squad(ref) for ref in references)


def bleu(prediction: str, references: Sequence[str]) -> float:
    """Sentence BLEU (sacreBLEU defaults, exponential smoothing) against all references."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, list(references)).score)


def chrf(prediction: str, references: Sequence[str]) -> float:
    """Sentence chrF (sacreBLEU defaults) against all references."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, list(references)).score)


GENERATION_METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "exact_match": exact_match,
    "rougeL": rouge_l,
    "squad_f1": squad_f1,
    "squad_em": squad_em,
    "bleu": bleu,
    "chrf": chrf,
}

# Template metadata name (lower-cased) -> generation metrics, the first one primary.
_METADATA_TO_METRICS: dict[str, tuple[str, ...]] = {
    "accuracy": ("exact_match",),
    "rouge": ("rougeL",),
    "squad": ("squad_f1", "squad_em"),
    "bleu": ("bleu",),
    "chrf": ("chrf",),
    "exact match": ("exact_match",),
    "exact_match": ("exact_match",),
}


def metrics_for(names: Sequence[str]) -> tuple[str, ...]:
    """Generation metrics for a row's template metadata ``metrics``; unknown names fall back to
    exact match + ROUGE-L (Super-NaturalInstructions' pair)."""
    out: list[str] = []
    for name in names:
        for metric in _METADATA_TO_METRICS.get(name.strip().lower(), ()):
            if metric not in out:
                out.append(metric)
    return tuple(out) or ("exact_match", "rougeL")
