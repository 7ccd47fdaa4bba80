"""A corpus row's *instance words*: what its source fields said, with the template's text removed.

Rows carry rendered prompts, not source fields. The fields come back in three steps:

1. :func:`instance_blocks` cuts a prompt into its blocks: the few-shot exemplars (input and target)
   and the row's own input (every other format is one block).
2. :func:`normalise` folds case, Unicode forms, punctuation and Penn-Treebank clitics, so
   tokenised and raw copies of one sentence agree.
3. Template boilerplate - the words covered by word n-grams found in more than a share of the
   blocks of one (task, template, options or not) - is dropped (:func:`boilerplate_ngrams` and
   :func:`strip_boilerplate` say the rule on one group; :func:`strip_corpus` applies it to a whole
   corpus at once with numpy, which is what a 60k-row corpus needs).

:func:`similarity` is the measure the near-duplicate guard applies to two blocks' words.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskmill.builders.formats import EXEMPLAR_SEPARATOR
from taskmill.records import Row

if TYPE_CHECKING:
    import numpy as np

_PUNCT = re.compile(r"[^\w\s]+")
# Penn-Treebank tokenisation (SST, e-SNLI) splits "isn't" into "is n't" and "it's" into "it 's";
# joining them back makes tokenised and raw copies of one sentence agree.
_PTB_CLITIC = re.compile(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b")
_APOSTROPHE = re.compile(r"[\u2019']")
# The ASCII characters _PUNCT replaces, as a str.translate table (an ASCII text skips the regex).
_ASCII_PUNCT = str.maketrans({chr(c): " " for c in range(128) if _PUNCT.match(chr(c))})


def normalise(text: str) -> str:
    """NFKC, lower case, PTB clitics rejoined, apostrophes dropped, other punctuation removed,
    whitespace collapsed (``"It is n't"`` and ``"it isn't!"`` both give ``"it isnt"``)."""
    ascii_only = text.isascii()  # NFKC and the Unicode classes are no-ops there; translate is faster
    if not ascii_only:
        text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    text = text.lower()
    if "'" in text:
        text = _APOSTROPHE.sub("", _PTB_CLITIC.sub(r"\1", text))
    return " ".join((text.translate(_ASCII_PUNCT) if ascii_only else _PUNCT.sub(" ", text)).split())


def instance_blocks(row: Row) -> list[str]:
    """A row's prompt cut into blocks: each few-shot exemplar (its input and target), then the row's own input.

    ``few_shot_prompt`` joins ``len(shots) + 1`` blocks of one template with blank lines, so the
    blank-line pieces split into that many equal runs unless a field or target holds a blank line
    of its own; such a prompt, and every other format, is one block.
    """
    if not row.shots or not row.format.startswith("few_shot"):
        return [row.prompt]
    pieces = row.prompt.split(EXEMPLAR_SEPARATOR)
    blocks = len(row.shots) + 1
    if len(pieces) % blocks:
        return [row.prompt]
    per = len(pieces) // blocks
    return [EXEMPLAR_SEPARATOR.join(pieces[i * per : (i + 1) * per]) for i in range(blocks)]


def _ngrams(words: Sequence[str], n: int) -> list[str]:
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def boilerplate_ngrams(token_lists: Sequence[Sequence[str]], n: int, share: float) -> set[str]:
    """Word n-grams found in more than ``share`` of the given blocks (one template's blocks)."""
    counts = Counter(g for words in token_lists for g in set(_ngrams(words, n)))
    return {g for g, c in counts.items() if c > share * len(token_lists)}


def strip_boilerplate(words: Sequence[str], boiler: set[str], n: int) -> list[str]:
    """Drop every token covered by a boilerplate n-gram, keeping the instance's own words.

    Dropping tokens (not just n-grams) matters: n-grams that straddle template and instance text
    differ between templates and would otherwise keep template words in the instance.
    """
    if not boiler:
        return list(words)
    covered = [False] * len(words)
    for i, gram in enumerate(_ngrams(words, n)):
        if gram in boiler:
            covered[i : i + n] = [True] * n
    return [w for w, c in zip(words, covered) if not c]


@dataclass
class Tokens:
    """Token lists as one array: ``ids[ptr[i]:ptr[i + 1]]`` are list ``i``'s words (``vocab`` ids)."""

    vocab: list[str]
    ids: np.ndarray
    ptr: np.ndarray

    def words(self, i: int) -> list[str]:
        """List ``i`` as words."""
        return [self.vocab[k] for k in self.ids[self.ptr[i] : self.ptr[i + 1]].tolist()]

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[str]]) -> Tokens:
        """Encode word lists (ids in order of first appearance)."""
        import numpy as np

        index: dict[str, int] = {}
        ids = np.fromiter((index.setdefault(w, len(index)) for words in lists for w in words), dtype=np.int64)
        ptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(words) for words in lists], out=ptr[1:])
        return cls(list(index), ids, ptr)


def _gram_codes(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray]:
    # (start position, code) of every n-gram inside one list; equal n-grams get equal codes.
    import numpy as np

    lengths = np.diff(tokens.ptr)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    total = len(tokens.ids)
    if total < n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.arange(total - n + 1)
    starts = starts[owner[starts] == owner[starts + n - 1]]
    base = max(len(tokens.vocab), 1)
    if base ** n < 2**62:  # exact: the n ids as digits of one number
        code = np.zeros(len(starts), dtype=np.int64)
        for k in range(n):
            code = code * base + tokens.ids[starts + k]
        return starts, code
    # Too many words for exact digits: a 64-bit polynomial hash (a collision needs ~2^32 n-grams).
    code = np.zeros(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            code = code * np.uint64(1_000_003) + tokens.ids[starts + k].astype(np.uint64) + np.uint64(1)
    return starts, code.view(np.int64)


def strip_corpus(tokens: Tokens, group: np.ndarray, n: int, share: float, min_lists: int) -> Tokens:
    """:func:`strip_boilerplate` of every list with its group's :func:`boilerplate_ngrams`, vectorised.

    Args:
        tokens: The blocks' words.
        group: ``(n_lists,)`` the group (task, template, options) of each list.
        n: Words per n-gram.
        share: Share of a group's lists above which an n-gram is boilerplate.
        min_lists: Groups with fewer lists learn no boilerplate.

    Returns:
        The same lists without the boilerplate-covered words (same ``vocab``).
    """
    import numpy as np

    lengths = np.diff(tokens.ptr)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    size = np.bincount(group, minlength=int(group.max()) + 1 if len(group) else 0)
    keep = ~_covered(tokens, owner, group, size, n, share, min_lists)
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=len(lengths)), out=ptr[1:])
    return Tokens(tokens.vocab, tokens.ids[keep], ptr)


def _covered(tokens: Tokens, owner: np.ndarray, group: np.ndarray, size: np.ndarray, n: int, share: float, min_lists: int) -> np.ndarray:
    # Tokens covered by an n-gram found in more than `share` of its group's lists.
    import numpy as np

    covered = np.zeros(len(tokens.ids), dtype=bool)
    starts, code = _gram_codes(tokens, n)
    gram_list = owner[starts]
    learn = size[group[gram_list]] >= min_lists
    starts, code, gram_list = starts[learn], code[learn], gram_list[learn]
    if not len(starts):
        return covered
    _, rank = np.unique(code, return_inverse=True)
    key = group[gram_list].astype(np.int64) * (int(rank.max()) + 1) + rank
    # each list counts an n-gram once: drop repeats of (list, key), then count lists per key
    order = np.lexsort((key, gram_list))
    k, g = key[order], gram_list[order]
    fresh = np.r_[True, (k[1:] != k[:-1]) | (g[1:] != g[:-1])]
    keys, lists = np.unique(k[fresh], return_counts=True)
    groups_of_key = keys // (int(rank.max()) + 1)
    boiler = keys[lists > share * size[groups_of_key]]
    hit = starts[np.isin(key, boiler)]
    # every token of a boilerplate n-gram is covered: +1 where one starts, -1 after it ends
    edges = np.bincount(hit, minlength=len(tokens.ids) + n) - np.bincount(hit + n, minlength=len(tokens.ids) + n)
    return np.cumsum(edges)[: len(tokens.ids)] > 0


def idf_weights(texts: Sequence[Sequence[str]]) -> dict[str, float]:
    """Word -> ``log((N + 1) / df)`` over ``texts`` (N of them; df: texts holding the word).

    The +1 keeps a word found in every text above zero, so a corpus of near-identical texts
    degrades to plain (unweighted) Dice instead of dividing by zero.
    """
    df = Counter(w for t in texts for w in set(t))
    return {w: math.log((len(texts) + 1) / c) for w, c in df.items()}


def similarity(a: Sequence[str], b: Sequence[str], weight: dict[str, float], subset_weight: float = 0.5) -> float:
    """IDF-weighted overlap of two texts' distinct words: ``S / (s * W(lighter) + (1 - s) * W(heavier))``.

    ``S`` is the weight of the words both hold, ``W`` a text's total (each distinct word once: a
    template that prints a field twice does not double it) and ``s`` the ``subset_weight``: 0.5
    gives weighted Dice (``2S / (W(a) + W(b))``), 1 the share of the lighter text found in the
    other. 1 for equal word sets; a one-word substitution costs about that word's weight over the
    text's, so frequent words (pronouns, articles) cost little and content words much. Words
    missing from ``weight`` weigh 0.
    """
    sa, sb = set(a), set(b)
    wa = sum(weight.get(w, 0.0) for w in sa)
    wb = sum(weight.get(w, 0.0) for w in sb)
    if wa + wb <= 0:
        return 1.0 if sa == sb else 0.0
    shared = sum(weight.get(w, 0.0) for w in sa & sb)
    return shared / (subset_weight * min(wa, wb) + (1 - subset_weight) * max(wa, wb))
