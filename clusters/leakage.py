"""Leakage guards between a fold's training rows and its held-out rows.

1. Same source dataset (FLAN's rule): a training task built from the same dataset as a held-out
   task is dropped whole. ``source_aliases`` lets one source have several ids (``glue/rte`` and
   ``super_glue/rte`` hold the same pairs).
2. Near-duplicate instances: each row's prompt is normalised (NFKC, lower case, punctuation
   removed, whitespace collapsed). Template boilerplate - the words covered by word n-grams found
   in most rows of one (task, template) - is dropped, and the rest is cut into word n-gram
   shingles, so the same instance under two different templates still matches, and two different
   instances under one template do not.
   A training row is removed when its normalised text equals a held-out row's, or when the Jaccard
   similarity of their shingle sets reaches ``threshold``. MinHash signatures with LSH banding
   find the candidate pairs; every candidate is then checked with the exact Jaccard, so the
   decision does not depend on the hash's luck, only which pairs get checked does.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskmill.errors import ConfigError
from taskmill.records import Row

if TYPE_CHECKING:
    import numpy as np

PRIME_32 = 4294967291  # largest prime below 2^32
_PUNCT = re.compile(r"[^\w\s]+")
# Penn-Treebank tokenisation (SST, e-SNLI) splits "isn't" into "is n't" and "it's" into "it 's";
# joining them back makes tokenised and raw copies of one sentence agree.
_PTB_CLITIC = re.compile(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b")
_APOSTROPHE = re.compile(r"[\u2019']")


@dataclass(frozen=True)
class DedupConfig:
    """Near-duplicate detection settings.

    Attributes:
        enabled: Run the near-duplicate guard at all.
        ngram: Words per shingle (texts shorter than this are one shingle). Instances are short
            (a review, a premise), so 3 words rather than the 5-13 used for whole documents.
        threshold: Jaccard similarity at or above which a training row is removed. 0.75 keeps
            one-word changes to short questions apart ("what is the origin of the word X":
            0.71 between two X) while tokenisation and leftover-template differences of one
            sentence stay above it.
        min_words: Rows whose instance text (after template removal) has fewer words are
            matched only by exact equality of the whole prompt: a one-word instance ("positive"
            in "Write a positive review") says nothing about overlap.
        num_perm: MinHash permutations (``bands * rows_per_band``).
        bands: LSH bands; a pair becomes a candidate when one band matches fully. With 64
            permutations in 16 bands of 4, pairs at Jaccard 0.5 are found with p ~ 0.64, at 0.7
            with p ~ 0.98 and at 0.8 with p > 0.999.
        boilerplate_share: An n-gram in more than this share of a (task, template)'s rows is
            template text, not instance text.
        boilerplate_min_rows: Boilerplate is only learned from groups of at least this many rows.
        with_completion: Compare prompt and completion, not the prompt alone.
        seed: Seed of the MinHash permutations.
    """

    enabled: bool = True
    ngram: int = 3
    threshold: float = 0.75
    min_words: int = 4
    num_perm: int = 64
    bands: int = 16
    boilerplate_share: float = 0.5
    boilerplate_min_rows: int = 4
    with_completion: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field."""
        problems = []
        if self.ngram < 1:
            problems.append(f"dedup.ngram: expected >= 1, got {self.ngram}")
        if not 0 < self.threshold <= 1:
            problems.append(f"dedup.threshold: expected a Jaccard in (0, 1], got {self.threshold}")
        if self.bands < 1 or self.num_perm % self.bands:
            problems.append(f"dedup.bands: expected a divisor of num_perm ({self.num_perm}), got {self.bands}")
        if not 0 < self.boilerplate_share <= 1:
            problems.append(f"dedup.boilerplate_share: expected a share in (0, 1], got {self.boilerplate_share}")
        if self.min_words < 1:
            problems.append(f"dedup.min_words: expected >= 1, got {self.min_words}")
        if self.boilerplate_min_rows < 2:
            problems.append(f"dedup.boilerplate_min_rows: expected >= 2, got {self.boilerplate_min_rows}")
        if problems:
            raise ConfigError(problems)


def normalise(text: str) -> str:
    """NFKC, lower case, PTB clitics rejoined, apostrophes dropped, other punctuation removed,
    whitespace collapsed (``"It is n't"`` and ``"it isn't!"`` both give ``"it isnt"``)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _APOSTROPHE.sub("", _PTB_CLITIC.sub(r"\1", text))
    return " ".join(_PUNCT.sub(" ", text).split())


def shingles(words: Sequence[str], n: int) -> set[int]:
    """CRC32 hashes of the word n-grams of a token list (one shingle when shorter than n)."""
    if len(words) <= n:
        return {zlib.crc32(" ".join(words).encode())} if words else set()
    return {zlib.crc32(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1)}


def _ngrams(words: Sequence[str], n: int) -> list[str]:
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def boilerplate_ngrams(token_lists: Sequence[Sequence[str]], n: int, share: float) -> set[str]:
    """Word n-grams found in more than ``share`` of the given rows (one template's rows)."""
    counts = Counter(g for words in token_lists for g in set(_ngrams(words, n)))
    return {g for g, c in counts.items() if c > share * len(token_lists)}


def strip_boilerplate(words: Sequence[str], boiler: set[str], n: int) -> list[str]:
    """Drop every token covered by a boilerplate n-gram, keeping the instance's own words.

    Dropping tokens (not just shingles) matters: shingles that straddle template and instance
    text differ between templates and would otherwise pull a true duplicate below threshold.
    """
    if not boiler:
        return list(words)
    covered = [False] * len(words)
    for i, gram in enumerate(_ngrams(words, n)):
        if gram in boiler:
            covered[i : i + n] = [True] * n
    return [w for w, c in zip(words, covered) if not c]


@dataclass
class RowPrints:
    """Fingerprints of every row of a corpus, aligned with ``ids``.

    Attributes:
        ids: Row ids.
        exact: ``(n_rows,)`` uint64 hash of each normalised text (exact-duplicate key).
        sets: Shingle set of each row, boilerplate removed.
        bands: ``(n_rows, bands)`` uint64 LSH band keys.
        nonempty: ``(n_rows,)`` bool, the row has shingles (the others are matched only exactly).
        index: Row id -> position.
    """

    ids: list[str]
    exact: np.ndarray
    sets: list[frozenset[int]]
    bands: np.ndarray
    nonempty: np.ndarray
    index: dict[str, int] = field(default_factory=dict)


def _content_tokens(rows: Sequence[Row], tokens: list[list[str]], config: DedupConfig) -> list[list[str]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row.task, row.template_id), []).append(i)
    out = list(tokens)
    for members in groups.values():
        if len(members) < config.boilerplate_min_rows:
            continue  # too few rows to tell template text from instance text
        boiler = boilerplate_ngrams([tokens[i] for i in members], config.ngram, config.boilerplate_share)
        for i in members:
            out[i] = strip_boilerplate(tokens[i], boiler, config.ngram)
    return out


def minhash(sets: Sequence[frozenset[int]], num_perm: int, seed: int) -> np.ndarray:
    """``(len(sets), num_perm)`` MinHash signatures under ``h -> (a*h + b) mod p``, p < 2^32 prime.

    Empty sets get the maximal signature (they match only each other, and are then re-checked).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    # a, b, h < p < 2^32 keep a*h + b below 2^64: exact in uint64, and a full-range a makes the
    # map scramble the order of h (a small a would keep it, and every minimum would agree).
    a = rng.integers(1, PRIME_32, size=(num_perm, 1), dtype=np.uint64)
    b = rng.integers(0, PRIME_32, size=(num_perm, 1), dtype=np.uint64)
    out = np.full((len(sets), num_perm), PRIME_32, dtype=np.uint64)
    for start in range(0, len(sets), 2048):  # chunks bound the (num_perm, shingles) temporary
        block = sets[start : start + 2048]
        flat = np.fromiter((h for s in block for h in s), dtype=np.uint64) % np.uint64(PRIME_32)
        sizes = np.array([len(s) for s in block])
        if flat.size == 0:
            continue
        values = (a * flat[None, :] + b) % np.uint64(PRIME_32)  # (num_perm, n_shingles)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        nonempty = sizes > 0
        mins = np.minimum.reduceat(values, starts[nonempty], axis=1)  # (num_perm, n_nonempty)
        out[start + np.flatnonzero(nonempty)] = mins.T
    return out


def band_keys(signatures: np.ndarray, bands: int) -> np.ndarray:
    """``(n, bands)`` uint64 keys, one per band of ``rows_per_band`` signature values."""
    import numpy as np

    n, num_perm = signatures.shape
    per = num_perm // bands
    mix = np.random.default_rng(12345).integers(1, 1 << 62, size=per, dtype=np.uint64) | np.uint64(1)
    reshaped = signatures.reshape(n, bands, per)
    # Wrapping uint64 arithmetic is intended: this is a hash of the band's values.
    with np.errstate(over="ignore"):
        return (reshaped * mix).sum(axis=2, dtype=np.uint64)


def fingerprint(rows: Sequence[Row], config: DedupConfig) -> RowPrints:
    """Fingerprints (exact key, boilerplate-free shingles, LSH bands) of every row."""
    import numpy as np

    texts = [normalise(f"{r.prompt}\n{r.completion}" if config.with_completion else r.prompt) for r in rows]
    content = _content_tokens(rows, [t.split() for t in texts], config)
    # Too-short instance text gets no shingles: only the exact whole-prompt check applies to it.
    sets = [frozenset(shingles(words, config.ngram)) if len(words) >= config.min_words else frozenset() for words in content]
    exact = np.fromiter((int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big") for t in texts), dtype=np.uint64, count=len(texts))
    bands = band_keys(minhash(sets, config.num_perm, config.seed), config.bands) if rows else np.zeros((0, config.bands), np.uint64)
    nonempty = np.fromiter((len(s) > 0 for s in sets), dtype=bool, count=len(sets))
    ids = [r.id for r in rows]
    return RowPrints(ids, exact, sets, bands, nonempty, {rid: i for i, rid in enumerate(ids)})


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """|a & b| / |a | b| (0 for two empty sets: nothing in common to leak)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass
class DuplicateReport:
    """Training rows that duplicate held-out rows.

    Attributes:
        exact: Training row ids whose normalised text equals a held-out row's.
        near: Training row ids with Jaccard >= threshold to a held-out row (and not exact).
        pairs: (train id, held-out id, Jaccard) for every removed row, the best match.
    """

    exact: list[str] = field(default_factory=list)
    near: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str, float]] = field(default_factory=list)


def find_duplicates(prints: RowPrints, train: Sequence[int], test: Sequence[int], threshold: float) -> DuplicateReport:
    """Training rows (indices into ``prints``) that duplicate any held-out row.

    Candidate rows are found with vectorised band-key membership over all training rows; only
    candidates reach the exact Jaccard check in Python.
    """
    import numpy as np

    report = DuplicateReport()
    if not len(train) or not len(test):
        return report
    test_arr, train_arr = np.asarray(test, dtype=np.int64), np.asarray(train, dtype=np.int64)
    exact = prints.exact
    exact_hit = np.isin(exact[train_arr], exact[test_arr])
    # Rows with no instance shingles all share one signature; only the exact check applies to them.
    nonempty = prints.nonempty
    test_sh = test_arr[nonempty[test_arr]]
    candidate = np.zeros(len(train_arr), dtype=bool)
    for b in range(prints.bands.shape[1]):
        candidate |= np.isin(prints.bands[train_arr, b], prints.bands[test_sh, b])
    candidate &= nonempty[train_arr] & ~exact_hit
    exact_of = {int(exact[j]): int(j) for j in test_arr[::-1]}  # first held-out row per text wins
    for i in train_arr[exact_hit].tolist():
        report.exact.append(prints.ids[i])
        report.pairs.append((prints.ids[i], prints.ids[exact_of[int(exact[i])]], 1.0))
    band_index: list[dict[int, list[int]]] = [{} for _ in range(prints.bands.shape[1])]
    for j, keys in zip(test_sh.tolist(), prints.bands[test_sh].tolist()):
        for b, key in enumerate(keys):
            band_index[b].setdefault(key, []).append(j)
    for i in train_arr[candidate].tolist():
        matches = {j for b, key in enumerate(prints.bands[i].tolist()) for j in band_index[b].get(key, ())}
        best = max(((jaccard(prints.sets[i], prints.sets[j]), prints.ids[j]) for j in sorted(matches)), default=(0.0, ""))
        if best[0] >= threshold:
            report.near.append(prints.ids[i])
            report.pairs.append((prints.ids[i], best[1], round(best[0], 4)))
    return report
