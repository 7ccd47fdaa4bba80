"""Generation metrics, each ``(prediction, references) -> score in [0, 100]``, best over references.

Every metric declares its *level* (:data:`METRIC_INFO`):

- **example** metrics score each example and are averaged over a template's examples:
  ``exact_match`` (Super-NaturalInstructions' rule: lower-case, drop ASCII punctuation, collapse
  whitespace, articles kept), ``rougeL`` (``rouge-score``'s ROUGE-L F-measure with its default
  tokenizer and the Porter stemmer, SNI's English scorer), ``squad_f1`` / ``squad_em`` (the SQuAD
  scripts' token F1 and exact match; normalisation also drops the articles a/an/the; the empty-
  answer rule is :data:`SQUAD_VERSIONS`, see :func:`squad_f1`).
- **corpus** metrics are computed once over all examples of a (task, template, format), as papers
  report them: ``bleu`` (sacreBLEU ``corpus_bleu`` defaults) and ``chrf`` (``corpus_chrf``
  defaults). Each example keeps its sacreBLEU *segment statistics* (n-gram match counts and
  lengths); the corpus score is computed from their sum, exactly as sacreBLEU does, so a bootstrap
  resample is scored by summing the resampled examples' statistics (:func:`corpus_draws`). The
  per-example ``bleu``/``chrf`` values are sentence scores (sacreBLEU ``sentence_bleu`` /
  ``sentence_chrf``), kept for inspection only; a corpus score is not their mean.

Template metadata names (PromptSource's ``metrics``) map to these through :func:`metrics_for`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

SQUAD_VERSIONS: tuple[str, ...] = ("squad_v1", "squad_v2")
# squad_v2 by default: under v1.1's rule an empty answer to an empty reference (both normalise to
# nothing) gets exact match 100 but F1 0; v2.0's rule gives both 100, so F1 >= EM always holds.
DEFAULT_SQUAD = "squad_v2"


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is and how it aggregates.

    Attributes:
        name: The metric's name in ``scores`` and results.
        level: ``example`` (mean of per-example scores) or ``corpus`` (computed once over the set).
        source: The implementation it follows (package and function, or the rule's origin).
    """

    name: str
    level: str
    source: str


METRIC_INFO: dict[str, MetricInfo] = {
    "acc": MetricInfo("acc", "example", "rank classification, summed log-probability (T0)"),
    "acc_norm": MetricInfo("acc_norm", "example", "rank classification, log-probability per character (lm-evaluation-harness)"),
    "acc_calibrated": MetricInfo("acc_calibrated", "example", "rank classification minus content-free log-probability (Zhao et al. 2021)"),
    "exact_match": MetricInfo("exact_match", "example", "Super-NaturalInstructions exact match (normalised)"),
    "rougeL": MetricInfo("rougeL", "example", "rouge-score RougeScorer(['rougeL'], use_stemmer=True) F-measure"),
    "squad_f1": MetricInfo("squad_f1", "example", "SQuAD official script token F1 (empty answers: --squad rule)"),
    "squad_em": MetricInfo("squad_em", "example", "SQuAD official script exact match"),
    "bleu": MetricInfo("bleu", "corpus", "sacrebleu corpus_bleu (defaults)"),
    "chrf": MetricInfo("chrf", "corpus", "sacrebleu corpus_chrf (defaults)"),
}


def metric_level(name: str) -> str:
    """``corpus`` or ``example``; a metric taskmill does not define is treated as per-example."""
    info = METRIC_INFO.get(name)
    return info.level if info else "example"


def normalize_sni(text: str) -> str:
    """Super-NaturalInstructions' answer normalisation (SQuAD's without article removal)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(text.split())


def normalize_squad(text: str) -> str:
    """SQuAD's answer normalisation (v1.1 and v2.0 alike): lower, drop punctuation and articles,
    collapse spaces."""
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


def _squad_f1_one(prediction: str, reference: str, version: str) -> float:
    pred, ref = normalize_squad(prediction).split(), normalize_squad(reference).split()
    if version == "squad_v2" and (not pred or not ref):
        # v2.0 script: an empty side scores 1 exactly when both are empty (a correct abstention).
        return 100.0 * (pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:  # v1.1 script: no shared token -> 0, including both empty
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 100.0 * 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, references: Sequence[str], version: str = DEFAULT_SQUAD) -> float:
    """SQuAD token-overlap F1 x 100, best over references.

    Args:
        prediction: The model's answer.
        references: Gold answers.
        version: ``squad_v2`` (default): when the prediction or the reference normalises to no
            token, F1 is 100 if both do, else 0 (the SQuAD 2.0 script). ``squad_v1``: the v1.1
            script, where no shared token means 0, even when both are empty. The two differ only
            on pairs that both normalise to nothing ("", "The", "!").
    """
    if version not in SQUAD_VERSIONS:
        raise ValueError(f"squad version '{version}': expected one of {', '.join(SQUAD_VERSIONS)}")
    return max((_squad_f1_one(prediction, ref, version) for ref in references), default=0.0)


def squad_em(prediction: str, references: Sequence[str]) -> float:
    """SQuAD exact match x 100 (articles dropped before comparing; the same in v1.1 and v2.0)."""
    pred = normalize_squad(prediction)
    return 100.0 * any(pred == normalize_squad(ref) for ref in references)


# --- corpus-level metrics (sacreBLEU) -----------------------------------------------------------


def _new_sacrebleu_metric(name: str, sentence: bool = False) -> Any:
    """A sacreBLEU metric object as ``corpus_bleu``/``corpus_chrf`` build it (or, ``sentence``, as
    ``sentence_bleu``/``sentence_chrf`` do: BLEU there uses the effective n-gram order)."""
    from sacrebleu.metrics import BLEU, CHRF

    if name == "bleu":
        return BLEU(effective_order=sentence)
    if name == "chrf":
        return CHRF()
    raise KeyError(f"'{name}' is not a corpus-level metric")


@lru_cache(maxsize=None)
def _sacrebleu_metric(name: str, sentence: bool = False) -> Any:
    return _new_sacrebleu_metric(name, sentence)


def segment_stats(name: str, prediction: str, references: Sequence[str]) -> list[int]:
    """sacreBLEU's sufficient statistics of one example for corpus metric ``name``.

    BLEU: ``[hyp_len, ref_len, correct_1..4, total_1..4]``; chrF: ``[hyp, ref, match]`` counts per
    n-gram order. A corpus score is a function of their sum over the corpus.
    """
    metric = _sacrebleu_metric(name)
    [stats] = metric._extract_corpus_statistics([prediction], [[ref] for ref in references])
    return [int(x) for x in stats]


def sentence_from_stats(name: str, stats: Sequence[int]) -> float:
    """The sentence score (``sentence_bleu``/``sentence_chrf``) of one example's statistics."""
    return float(_sacrebleu_metric(name, sentence=True)._compute_score_from_stats(list(stats)).score)


def corpus_from_stats(name: str, summed: Sequence[float]) -> float:
    """The corpus score of summed segment statistics (sacreBLEU's own last step)."""
    return float(_sacrebleu_metric(name)._compute_score_from_stats([int(round(x)) for x in summed]).score)


def corpus_score(name: str, stats: np.ndarray) -> float:
    """The corpus score of a set of examples from their statistics ``(n, k)``; 0 for no example."""
    if len(stats) == 0:
        return 0.0
    return corpus_from_stats(name, stats.sum(axis=0))


_COUNT_CELLS = 1 << 22  # cells of one chunk's count matrix in corpus_draws (32 MB of int64)


def corpus_draws(name: str, stats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B,) corpus scores of bootstrap resamples: ``idx`` (B, n) example indices into ``stats`` (n, k).

    Each draw's statistics are the sum over the examples it drew (with repetition), i.e. the
    resampled set is scored as a corpus, not as an average of sentence scores.
    """
    n_boot, n = idx.shape
    stats = stats.astype(np.int64)
    summed = np.empty((n_boot, stats.shape[1]), dtype=np.int64)
    step = max(1, _COUNT_CELLS // max(n, 1))  # draws per chunk, so the (chunk, n) count matrix stays small
    for start in range(0, n_boot, step):
        part = idx[start : start + step]
        rows = len(part)
        # counts[b, i] = times example i is in draw b; (b, n) @ (n, k) -> (b, k) summed statistics.
        counts = np.bincount((np.arange(rows)[:, None] * n + part).ravel(), minlength=rows * n).reshape(rows, n)
        summed[start : start + rows] = counts @ stats
    return np.array([corpus_from_stats(name, row) for row in summed], dtype=float)


@lru_cache(maxsize=None)
def signature(name: str, n_refs: int = 1) -> str:
    """The sacreBLEU signature of corpus metric ``name`` with ``n_refs`` references per example."""
    metric = _new_sacrebleu_metric(name)
    metric.corpus_score(["a"], [["a"]] * n_refs)  # the signature's nrefs is set by scoring
    return str(metric.get_signature())


def describe_metrics(names: Sequence[str], squad: str = DEFAULT_SQUAD) -> dict[str, dict[str, str]]:
    """results.json's ``metric_info``: per metric its ``level``, ``source`` and, for corpus-level
    metrics, the sacreBLEU ``signature``."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        info = METRIC_INFO.get(name, MetricInfo(name, "example", "unknown"))
        entry = {"level": info.level, "source": info.source}
        if name == "squad_f1":
            entry["source"] = f"SQuAD {'v2.0' if squad == 'squad_v2' else 'v1.1'} official script token F1 ({squad})"
        if info.level == "corpus":
            entry["signature"] = signature(name)
        out[name] = entry
    return out


def bleu(prediction: str, references: Sequence[str]) -> float:
    """Sentence BLEU (sacreBLEU defaults, exponential smoothing) against all references."""
    return sentence_from_stats("bleu", segment_stats("bleu", prediction, references))


def chrf(prediction: str, references: Sequence[str]) -> float:
    """Sentence chrF (sacreBLEU defaults) against all references."""
    return sentence_from_stats("chrf", segment_stats("chrf", prediction, references))


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
