"""Leakage guards between a fold's training rows and its held-out rows.

1. Same source dataset (FLAN's rule): a training task built from the same dataset as a held-out
   task is dropped whole (:mod:`taskmill.clusters.sources` says which datasets are one source).
2. Near-duplicate instances, compared on what the rows' sources said rather than on the rendered
   prompts. Each prompt is cut into its blocks - the few-shot exemplars (input and target) and the
   row's own input - and each block is normalised (NFKC, lower case, punctuation removed,
   whitespace collapsed). Template boilerplate - the words covered by word n-grams found in most
   blocks of one (task, template, options or not) - is dropped, leaving the block's *instance
   words*: the source fields the template printed, so one instance under two templates still
   matches and two instances under one template do not.

   A training row is removed when its normalised prompt equals a held-out row's (exact), or when
   one of its blocks is close to a held-out row's own block: the IDF-weighted overlap of their
   instance words (:func:`taskmill.clusters.instances.similarity`; a word weighs
   ``log((N + 1) / df)`` over the corpus's N distinct blocks) reaches ``threshold``. Weighting is
   what lets a token-level measure see minimal pairs: a swapped pronoun or a changed common word
   moves the similarity of a 12-word sentence by a few hundredths, while two questions that share
   only their frame ("where does the last name X come from") differ in the rare words that carry
   their content. Each distinct word counts once, and the lighter text counts more than the
   heavier (``subset_weight``), so a template that prints fewer fields of the same instance, or
   one field twice, still matches. Blocks with fewer than ``min_words`` instance words, or whose
   words ``generic_rows`` source rows share (a label a template prints alone), are matched only
   by the exact check.

   Candidate pairs come from MinHash LSH over each block's distinctive words (those in at most
   ``common_share`` of the blocks), once per corpus, between blocks of different tasks; every
   candidate is scored exactly, so the decision does not depend on the hash's luck, only which
   pairs get scored does. A fold then only looks up the scored pairs that join its training rows
   to its held-out rows.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskmill.clusters.instances import (
    Tokens,
    boilerplate_ngrams,
    idf_weights,
    instance_blocks,
    normalise,
    similarity,
    strip_boilerplate,
    strip_corpus,
)
from taskmill.errors import ConfigError
from taskmill.records import Row

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DedupConfig", "DuplicateReport", "RowPrints", "band_keys", "boilerplate_ngrams", "candidate_pairs", "fingerprint",
    "find_duplicates", "idf_weights", "instance_blocks", "jaccard", "minhash", "minhash_flat", "normalise", "shingles",
    "similarity", "strip_boilerplate",
]

PRIME_32 = 4294967291  # largest prime below 2^32
_PAIR_CHUNK = 65536  # candidate pairs scored per numpy pass (bounds the temporaries)
_SMALL_BUCKET = 64  # LSH buckets up to this size are paired all at once, larger ones one by one


@dataclass(frozen=True)
class DedupConfig:
    """Near-duplicate detection settings.

    Attributes:
        enabled: Run the near-duplicate guard at all.
        ngram: Words per n-gram when learning template boilerplate.
        threshold: Similarity (:func:`similarity`) of two blocks' instance words at or above
            which a training row is removed. Calibrated on ``../shared/data`` with
            ``bench/near_duplicates.py``: at 0.75 a swapped pronoun is caught in 97.5% and a
            one-word edit in 95.7% of the real rows rendered by one template, while of 25,292
            rows held against other rows of their own dataset only a few dozen that are not the
            same text, a paraphrase or a shared passage are removed.
        subset_weight: How the shorter block counts in the similarity, ``S / (s * W(shorter) +
            (1 - s) * W(longer))``: 0.5 is weighted Dice; 0.8 lets a template that prints fewer
            fields of one instance (the premise alone, or the premise with its choices) still
            match it, while a short text inside a much longer one does not ("see it" in a review).
        min_words: Blocks with fewer instance words (after template removal) are matched only
            by exact equality of the whole prompt: a one-word instance ("positive" in "Write a
            positive review") says nothing about overlap.
        generic_rows: Blocks whose instance words are the same for this many source rows or more
            (a label description a template prints for every row of the class, a fixed
            instruction) are matched only exactly, like short ones: they are no one row's content.
        num_perm: MinHash permutations (``bands * rows_per_band``).
        bands: LSH bands; a pair becomes a candidate when one band matches fully. With 96
            permutations in 32 bands of 3, pairs whose distinctive-word sets have Jaccard 0.5 are
            found with p ~ 0.986, at 0.6 with p > 0.999 (a one-word edit of a block with six
            distinctive words has 0.71).
        common_share: Words in more than this share of blocks are left out of the LSH sets (they
            still count, lightly, in the score): "the" in every block would make every pair a
            candidate.
        boilerplate_share: An n-gram in more than this share of a (task, template)'s blocks is
            template text, not instance text.
        boilerplate_min_rows: Boilerplate is only learned from groups of at least this many blocks.
        with_completion: Compare prompt and completion, not the prompt alone.
        seed: Seed of the MinHash permutations.
    """

    enabled: bool = True
    ngram: int = 3
    threshold: float = 0.75
    min_words: int = 4
    num_perm: int = 96
    bands: int = 32
    common_share: float = 0.05
    boilerplate_share: float = 0.5
    subset_weight: float = 0.8
    generic_rows: int = 10
    boilerplate_min_rows: int = 4
    with_completion: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid field."""
        problems = []
        if self.ngram < 1:
            problems.append(f"dedup.ngram: expected >= 1, got {self.ngram}")
        if not 0 < self.threshold <= 1:
            problems.append(f"dedup.threshold: expected a similarity in (0, 1], got {self.threshold}")
        if self.bands < 1 or self.num_perm % self.bands:
            problems.append(f"dedup.bands: expected a divisor of num_perm ({self.num_perm}), got {self.bands}")
        if not 0.5 <= self.subset_weight <= 1:
            problems.append(f"dedup.subset_weight: expected a weight in [0.5, 1], got {self.subset_weight}")
        if not 0 < self.common_share <= 1:
            problems.append(f"dedup.common_share: expected a share in (0, 1], got {self.common_share}")
        if not 0 < self.boilerplate_share <= 1:
            problems.append(f"dedup.boilerplate_share: expected a share in (0, 1], got {self.boilerplate_share}")
        if self.min_words < 1:
            problems.append(f"dedup.min_words: expected >= 1, got {self.min_words}")
        if self.generic_rows < 2:
            problems.append(f"dedup.generic_rows: expected >= 2, got {self.generic_rows}")
        if self.boilerplate_min_rows < 2:
            problems.append(f"dedup.boilerplate_min_rows: expected >= 2, got {self.boilerplate_min_rows}")
        if problems:
            raise ConfigError(problems)


def shingles(words: Sequence[str], n: int) -> set[int]:
    """CRC32 hashes of the word n-grams of a token list (one shingle when shorter than n)."""
    if len(words) <= n:
        return {zlib.crc32(" ".join(words).encode())} if words else set()
    return {zlib.crc32(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1)}


def minhash(sets: Sequence[frozenset[int]], num_perm: int, seed: int) -> np.ndarray:
    """``(len(sets), num_perm)`` MinHash signatures under ``h -> (a*h + b) mod p``, p < 2^32 prime.

    Empty sets get the maximal signature (they match only each other, and are then re-checked).
    """
    import numpy as np

    values = np.fromiter((h for s in sets for h in s), dtype=np.uint64)
    ptr = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=ptr[1:])
    return minhash_flat(values, ptr, num_perm, seed)


def minhash_flat(values: np.ndarray, ptr: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """:func:`minhash` of the sets ``values[ptr[i]:ptr[i + 1]]`` (one array, no Python sets)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # a, b, h < p < 2^32 keep a*h + b below 2^64: exact in uint64, and a full-range a makes the
    # map scramble the order of h (a small a would keep it, and every minimum would agree).
    a = rng.integers(1, PRIME_32, size=(num_perm, 1), dtype=np.uint64)
    b = rng.integers(0, PRIME_32, size=(num_perm, 1), dtype=np.uint64)
    n = len(ptr) - 1
    out = np.full((n, num_perm), PRIME_32, dtype=np.uint64)
    for start in range(0, n, 2048):  # chunks bound the (num_perm, shingles) temporary
        end = min(n, start + 2048)
        flat = values[ptr[start] : ptr[end]].astype(np.uint64) % np.uint64(PRIME_32)
        if flat.size == 0:
            continue
        sizes = np.diff(ptr[start : end + 1])
        hashed = (a * flat[None, :] + b) % np.uint64(PRIME_32)  # (num_perm, n_shingles)
        nonempty = sizes > 0
        mins = np.minimum.reduceat(hashed, (ptr[start:end] - ptr[start])[nonempty], axis=1)
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


@dataclass
class RowPrints:
    """Fingerprints of every row of a corpus, aligned with ``ids``, and the scored pairs of its blocks.

    A *unit* is one block of one row; units with the same instance words share a *text*.

    Attributes:
        ids: Row ids.
        exact: ``(n_rows,)`` uint64 hash of each normalised prompt (exact-duplicate key).
        unit_row: ``(n_units,)`` the row of each block.
        unit_text: ``(n_units,)`` its text, -1 when it has fewer than ``min_words`` instance words.
        unit_own: ``(n_units,)`` True for a row's own block, False for a few-shot exemplar.
        texts: Instance words of each text.
        pairs: ``(n_pairs, 2)`` texts from different tasks that LSH made candidates (``a < b``).
        scores: ``(n_pairs,)`` their similarity.
        index: Row id -> position.
    """

    ids: list[str]
    exact: np.ndarray
    unit_row: np.ndarray
    unit_text: np.ndarray
    unit_own: np.ndarray
    texts: Tokens
    pairs: np.ndarray
    scores: np.ndarray
    index: dict[str, int] = field(default_factory=dict)


def fingerprint(rows: Sequence[Row], config: DedupConfig) -> RowPrints:
    """Exact keys, instance words per block and the scored candidate pairs of a corpus's rows."""
    import numpy as np

    unit_row: list[int] = []
    unit_own: list[bool] = []
    unit_group: list[int] = []
    lists: list[list[str]] = []
    groups: dict[tuple[str, str, bool], int] = {}
    tasks: dict[str, int] = {}
    instances: dict[tuple[str, str, int], int] = {}
    unit_instance: list[int] = []
    digests = []
    for r, row in enumerate(rows):
        blocks = [normalise(b).split() for b in instance_blocks(row)]
        if config.with_completion:
            blocks[-1] = blocks[-1] + normalise(row.completion).split()
        digests.append(hashlib.blake2b(" ".join(w for b in blocks for w in b).encode(), digest_size=8).digest())
        # options blocks carry their own boilerplate (the OPTIONS list), so they learn it apart
        g = groups.setdefault((row.task, row.template_id, row.format.endswith("_options")), len(groups))
        tasks.setdefault(row.task, len(tasks))
        # the source row each block shows: exemplars are rows of the task's shots split ("shot")
        sources = [(row.task, "shot", i) for i in row.shots][: len(blocks) - 1] + [(row.task, row.split, row.row_index)]
        for k, words in enumerate(blocks):
            unit_row.append(r)
            unit_own.append(k == len(blocks) - 1)
            unit_group.append(g)
            unit_instance.append(instances.setdefault(sources[k], len(instances)))
            lists.append(words)
    rows_arr = np.asarray(unit_row, dtype=np.int64)
    content = strip_corpus(Tokens.from_lists(lists), np.asarray(unit_group, dtype=np.int64), config.ngram,
                           config.boilerplate_share, config.boilerplate_min_rows)
    unit_text, texts = _distinct(content, config.min_words, unit_instance, config.generic_rows)
    row_task = np.fromiter((tasks[r.task] for r in rows), dtype=np.int64, count=len(rows))
    owner = _owners(unit_text, row_task[rows_arr], len(texts.ptr) - 1)
    pairs, scores = _scored_pairs(texts, owner, config)
    exact = np.fromiter((int.from_bytes(d, "big") for d in digests), dtype=np.uint64, count=len(digests))
    ids = [r.id for r in rows]
    return RowPrints(ids, exact, rows_arr, unit_text, np.asarray(unit_own, dtype=bool), texts, pairs, scores,
                     {rid: i for i, rid in enumerate(ids)})


def _distinct(content: Tokens, min_words: int, unit_instance: Sequence[int], generic_rows: int) -> tuple[np.ndarray, Tokens]:
    # Each unit's text id and the distinct texts, in first-seen order. -1: fewer than min_words
    # instance words, or words that generic_rows source rows or more share (a label, a fixed
    # instruction: the same for every row of a class says nothing about any one of them).
    import numpy as np

    lengths = np.diff(content.ptr)
    unit_text = np.full(len(lengths), -1, dtype=np.int64)
    units: dict[bytes, list[int]] = {}
    ptr, ids = content.ptr.tolist(), content.ids
    for u in np.flatnonzero(lengths >= min_words).tolist():
        units.setdefault(ids[ptr[u] : ptr[u + 1]].tobytes(), []).append(u)
    firsts: list[int] = []
    for members in units.values():
        if len(members) >= generic_rows and len({unit_instance[u] for u in members}) >= generic_rows:
            continue
        unit_text[members] = len(firsts)
        firsts.append(members[0])
    sizes = lengths[firsts] if firsts else np.zeros(0, dtype=np.int64)
    text_ptr = np.zeros(len(firsts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=text_ptr[1:])
    flat = np.concatenate([ids[ptr[u] : ptr[u + 1]] for u in firsts]) if firsts else np.zeros(0, dtype=np.int64)
    return unit_text, Tokens(content.vocab, flat, text_ptr)


def _owners(unit_text: np.ndarray, unit_task: np.ndarray, n_texts: int) -> np.ndarray:
    # The task of each text; a text several tasks hold gets an owner of its own (-1 - text), so
    # it pairs with everything (its identity across tasks is itself a match).
    import numpy as np

    has = unit_text >= 0
    low = np.full(n_texts, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(n_texts, -1, dtype=np.int64)
    np.minimum.at(low, unit_text[has], unit_task[has])
    np.maximum.at(high, unit_text[has], unit_task[has])
    return np.where(low == high, low, -1 - np.arange(n_texts))


@dataclass
class _Bags:
    """Each text as its sorted distinct words: ``word[ptr[t]:ptr[t + 1]]``."""

    word: np.ndarray
    ptr: np.ndarray
    key: np.ndarray  # text * vocab size + word, ascending (for lookups)


def _bags(texts: Tokens) -> _Bags:
    import numpy as np

    n = len(texts.ptr) - 1
    text_of = np.repeat(np.arange(n), np.diff(texts.ptr))
    order = np.lexsort((texts.ids, text_of))
    t, w = text_of[order], texts.ids[order]
    first = np.r_[True, (t[1:] != t[:-1]) | (w[1:] != w[:-1])] if len(t) else np.zeros(0, dtype=bool)
    t, w = t[first], w[first]
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(t, minlength=n), out=ptr[1:])
    return _Bags(w, ptr, t * max(len(texts.vocab), 1) + w)


def _scored_pairs(texts: Tokens, owner: np.ndarray, config: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    n = len(texts.ptr) - 1
    if not n:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    bags = _bags(texts)
    text_of = np.repeat(np.arange(n), np.diff(bags.ptr))
    df = np.bincount(bags.word, minlength=len(texts.vocab))
    weight = np.log((n + 1) / np.maximum(df, 1))
    mass = np.bincount(text_of, weights=weight[bags.word], minlength=n)
    # LSH sees each text's distinctive words (in at most common_share of the texts); a text with
    # fewer than two of them keeps all its words
    rare = df[bags.word] <= config.common_share * n
    use = rare | (np.bincount(text_of, weights=rare, minlength=n)[text_of] < 2)
    word_hash = np.fromiter((zlib.crc32(w.encode()) for w in texts.vocab), dtype=np.uint64, count=len(texts.vocab))
    set_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(text_of[use], minlength=n), out=set_ptr[1:])
    signatures = minhash_flat(word_hash[bags.word[use]], set_ptr, config.num_perm, config.seed)
    pairs = candidate_pairs(band_keys(signatures, config.bands), owner)
    scores = np.concatenate([_similarities(pairs[i : i + _PAIR_CHUNK], bags, weight, mass, len(texts.vocab), config.subset_weight)
                             for i in range(0, len(pairs), _PAIR_CHUNK)]) if len(pairs) else np.zeros(0)
    return pairs, scores


def _similarities(pairs: np.ndarray, bags: _Bags, weight: np.ndarray, mass: np.ndarray, vocab: int, subset_weight: float) -> np.ndarray:
    # :func:`similarity` of each pair: the bag with fewer words looked up in the other.
    import numpy as np

    a, b = pairs[:, 0], pairs[:, 1]
    size = np.diff(bags.ptr)
    small = np.where(size[a] <= size[b], a, b)
    other = np.where(size[a] <= size[b], b, a)
    lengths = size[small]
    pair_of = np.repeat(np.arange(len(pairs)), lengths)
    offset = np.arange(len(pair_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    word = bags.word[bags.ptr[small][pair_of] + offset]
    query = other[pair_of] * max(vocab, 1) + word
    found = np.minimum(np.searchsorted(bags.key, query), len(bags.key) - 1)
    hit = bags.key[found] == query
    shared = np.bincount(pair_of[hit], weights=weight[word[hit]], minlength=len(pairs))
    low, high = np.minimum(mass[a], mass[b]), np.maximum(mass[a], mass[b])
    return shared / (subset_weight * low + (1 - subset_weight) * high)


def candidate_pairs(bands: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``(n, 2)`` index pairs ``a < b`` of rows of ``bands`` that share a band key and whose
    ``owner`` differs (``owner``: task of each text; a text shared by tasks gets a unique owner)."""
    import numpy as np

    n = len(owner)
    codes = []
    for b in range(bands.shape[1]):
        order = np.lexsort((owner, bands[:, b]))
        keys = bands[order, b]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        size = np.diff(np.r_[starts, len(keys)])
        # sorted by owner inside a bucket: one owner at both ends means one task only
        mixed = (size > 1) & (owner[order[starts]] != owner[order[starts + size - 1]])
        for k in np.unique(size[mixed]).tolist():
            first = starts[mixed & (size == k)]
            if k <= _SMALL_BUCKET:  # all buckets of this size at once: (buckets, k) members
                i, j = np.triu_indices(k, 1)
                members = order[first[:, None] + np.arange(k)]
                codes.append(_pair_codes(members[:, i].ravel(), members[:, j].ravel(), owner, n))
            else:
                for s in first.tolist():
                    codes += _bucket_pairs(order[s : s + k], owner, n)
    if not codes:
        return np.zeros((0, 2), dtype=np.int64)
    flat = np.unique(np.concatenate(codes))
    return np.stack([flat // n, flat % n], axis=1)


def _pair_codes(x: np.ndarray, y: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    # a * n + b (a < b) of the pairs (x, y) whose owners differ
    import numpy as np

    keep = owner[x] != owner[y]
    x, y = x[keep], y[keep]
    return np.minimum(x, y).astype(np.int64) * n + np.maximum(x, y)


def _bucket_pairs(members: np.ndarray, owner: np.ndarray, n: int) -> list[np.ndarray]:
    # Codes a * n + b of the pairs of one bucket's members with different owners.
    import numpy as np

    if len(members) <= 2048:
        i, j = np.triu_indices(len(members), 1)
        firsts, seconds = [i], [j]
    else:  # one member at a time keeps the temporary linear in the bucket size
        firsts = [np.full(len(members) - x - 1, x) for x in range(len(members) - 1)]
        seconds = [np.arange(x + 1, len(members)) for x in range(len(members) - 1)]
    return [_pair_codes(members[i], members[j], owner, n) for i, j in zip(firsts, seconds)]


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """|a & b| / |a | b| (0 for two empty sets: nothing in common to leak)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0




@dataclass
class DuplicateReport:
    """Training rows that duplicate held-out rows.

    Attributes:
        exact: Training row ids whose normalised prompt equals a held-out row's.
        near: Training row ids with a block at similarity >= threshold to a held-out row's own
            block (and not exact).
        pairs: (train id, held-out id, similarity) for every removed row, its best match.
        kept: (train id, held-out id, similarity) of the closest training rows kept, best first.
        words: Row id -> the instance words of the block that matched (for the rows in ``pairs``
            and ``kept``).
    """

    exact: list[str] = field(default_factory=list)
    near: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str, float]] = field(default_factory=list)
    kept: list[tuple[str, str, float]] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)


def find_duplicates(prints: RowPrints, train: Sequence[int], test: Sequence[int], threshold: float, keep: int = 5) -> DuplicateReport:
    """Training rows (indices into ``prints``) that duplicate any held-out row.

    Everything is a lookup into the pairs scored once per corpus: the fold marks its held-out
    rows' own blocks, takes each text's best score against them (1 for a text a held-out row
    holds itself) and each training row's best block.

    Args:
        prints: :func:`fingerprint` of the corpus.
        train: Training rows.
        test: Held-out rows.
        threshold: Similarity at which a training row is removed.
        keep: How many of the closest kept pairs to report.
    """
    import numpy as np

    report = DuplicateReport()
    if not len(train) or not len(test):
        return report
    test_arr, train_arr = np.asarray(test, dtype=np.int64), np.asarray(train, dtype=np.int64)
    exact = prints.exact
    exact_hit = np.isin(exact[train_arr], exact[test_arr])
    exact_of = {int(exact[j]): int(j) for j in test_arr[::-1]}  # first held-out row per text wins
    for i in train_arr[exact_hit].tolist():
        report.exact.append(prints.ids[i])
        report.pairs.append((prints.ids[i], prints.ids[exact_of[int(exact[i])]], 1.0))
    best, partner, test_row = _best_against(prints, test_arr)
    row_sim, row_text, row_partner = _best_per_row(prints, train_arr, best, partner)
    order = np.argsort(-row_sim, kind="stable")  # best first; train order among equals
    near = (row_sim >= threshold) & ~exact_hit
    for i in np.flatnonzero(near).tolist():
        report.near.append(prints.ids[train_arr[i]])
        report.pairs.append(_pair(prints, report, train_arr[i], row_text[i], test_row[row_partner[i]], row_partner[i], row_sim[i]))
    for i in [k for k in order.tolist() if 0 < row_sim[k] < threshold and not exact_hit[k]][:keep]:
        report.kept.append(_pair(prints, report, train_arr[i], row_text[i], test_row[row_partner[i]], row_partner[i], row_sim[i]))
    return report


def _best_against(prints: RowPrints, test_arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Per text: best similarity to a held-out own block, that block's text, and per held-out text
    # its first held-out row.
    import numpy as np

    n = len(prints.texts.ptr) - 1
    in_test = np.zeros(len(prints.ids), dtype=bool)
    in_test[test_arr] = True
    own = np.flatnonzero(prints.unit_own & (prints.unit_text >= 0) & in_test[prints.unit_row])
    test_texts, first = np.unique(prints.unit_text[own], return_index=True)
    test_row = np.full(n, -1, dtype=np.int64)
    test_row[test_texts] = prints.unit_row[own[first]]
    is_test = test_row >= 0
    a, b = prints.pairs[:, 0], prints.pairs[:, 1]
    hit_b, hit_a = is_test[b], is_test[a]
    text = np.concatenate([a[hit_b], b[hit_a], test_texts])
    other = np.concatenate([b[hit_b], a[hit_a], test_texts])
    score = np.concatenate([prints.scores[hit_b], prints.scores[hit_a], np.ones(len(test_texts))])
    best = np.zeros(n)
    partner = np.full(n, -1, dtype=np.int64)
    if len(text):
        order = np.lexsort((other, -score, text))  # per text: best score, then lowest partner
        text, other, score = text[order], other[order], score[order]
        firsts = np.flatnonzero(np.r_[True, text[1:] != text[:-1]])
        best[text[firsts]], partner[text[firsts]] = score[firsts], other[firsts]
    return best, partner, test_row


def _best_per_row(prints: RowPrints, train_arr: np.ndarray, best: np.ndarray, partner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Per training row (in train_arr order): its best block's score, text and partner text.
    import numpy as np

    position = np.full(len(prints.ids), -1, dtype=np.int64)
    position[train_arr] = np.arange(len(train_arr))
    units = np.flatnonzero((prints.unit_text >= 0) & (position[prints.unit_row] >= 0))
    rows, texts = position[prints.unit_row[units]], prints.unit_text[units]
    score = best[texts]
    row_sim = np.zeros(len(train_arr))
    row_text = np.full(len(train_arr), -1, dtype=np.int64)
    row_partner = np.full(len(train_arr), -1, dtype=np.int64)
    hit = score > 0
    rows, texts, score = rows[hit], texts[hit], score[hit]
    if len(rows):
        order = np.lexsort((-score, rows))  # per row: the best block first (block order among equals)
        rows, texts, score = rows[order], texts[order], score[order]
        firsts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        row_sim[rows[firsts]], row_text[rows[firsts]] = score[firsts], texts[firsts]
        row_partner[rows[firsts]] = partner[texts[firsts]]
    return row_sim, row_text, row_partner


def _pair(prints: RowPrints, report: DuplicateReport, train_row: int, text: int, test_row: int, test_text: int, score: float) -> tuple[str, str, float]:
    train_id, test_id = prints.ids[int(train_row)], prints.ids[int(test_row)]
    report.words[train_id] = " ".join(prints.texts.words(int(text)))
    report.words[test_id] = " ".join(prints.texts.words(int(test_text)))
    return train_id, test_id, round(float(score), 4)
