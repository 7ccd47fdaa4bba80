"""Generate the starter collection's data: ``data/<task>/{train,validation}.jsonl``.

Every sentence comes from the hand-written banks beside this script (``banks_*.py``), combined with
one seeded :class:`random.Random` per task, so the output is the same on every machine. The data
ships inside the package; re-run this script only after editing a bank::

    python builders/starter/make_data.py            # rewrite data/
    python builders/starter/make_data.py --check    # exit 1 if data/ differs from what it would write

Rows are HF-style: integer class labels (ClassLabel indices), SQuAD-style ``answers`` dicts,
ARC-style ``choices`` dicts. Each task has up to 160 rows (at least 120): the first three quarters
drawn go to train (an even number, so paired rows stay together), the rest to validation.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from taskmill.fileio import write_text  # noqa: E402
import gen_classify  # noqa: E402
import gen_qa  # noqa: E402
import gen_reasoning  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS, MIN_ROWS = 160, 120
Row = dict[str, Any]

GENERATORS: dict[str, Callable[[random.Random], Iterator[Row]]] = {
    "product_reviews": gen_classify.product_reviews,
    "restaurant_reviews": gen_classify.restaurant_reviews,
    "news_topics": gen_classify.news_topics,
    "support_intents": gen_classify.support_intents,
    "everyday_nli": gen_reasoning.everyday_nli,
    "paraphrase_pairs": gen_reasoning.paraphrase_pairs,
    "cause_effect": gen_reasoning.cause_effect,
    "science_quiz": gen_qa.science_quiz,
    "biography_qa": gen_qa.biography_qa,
    "word_problems": gen_qa.word_problems,
    "headline_writing": gen_classify.headline_writing,
}


def _content_key(row: Row) -> str:
    """What makes two rows the same item: their text, ignoring ids, labels and the order of options."""
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items() if k != "label"}
        return sorted(value) if isinstance(value, list) else value

    return json.dumps({k: norm(v) for k, v in row.items() if k not in ("id", "label", "answerKey")}, sort_keys=True)


def task_rows(name: str) -> list[Row]:
    """The task's rows: distinct items, drawn until there are :data:`ROWS`."""
    rng = random.Random(zlib.crc32(name.encode()))
    seen: set[str] = set()
    rows: list[Row] = []
    for row in GENERATORS[name](rng):
        key = _content_key(row)
        if key not in seen:
            seen.add(key)
            rows.append(row)
        if len(rows) == ROWS:
            break
    if len(rows) < MIN_ROWS:
        raise RuntimeError(f"{name}: the generator ran dry after {len(rows)} distinct rows")
    return rows


def files(name: str) -> dict[Path, str]:
    """File path -> exact text for one task."""
    rows = task_rows(name)
    train = len(rows) * 3 // 4 // 2 * 2
    out = {}
    for split, part in (("train", rows[:train]), ("validation", rows[train:])):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        out[HERE / "data" / name / f"{split}.jsonl"] = text
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with data/ instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name in GENERATORS:
        for path, text in files(name).items():
            if args.check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(HERE)))
                continue
            write_text(path, text)
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
