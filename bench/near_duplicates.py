"""Calibrate the near-duplicate guard on ../shared/data: minimal pairs caught, unrelated rows kept.

Two measurements, both on corpora built by ``taskmill build`` from ``examples/shared-data.yaml``
(every shared dataset, the template library, four formats, mixing cap):

1. **Recall on constructed minimal pairs.** For every dataset, sampled source rows that the corpus
   holds are copied into sibling datasets with (a) one gendered pronoun swapped (he/she, him/her,
   his/her, himself/herself: rows without one are left out), (b) one word of the main text field
   replaced, (c) two words replaced (replacements drawn from the dataset's own words). The copies
   are built with the same templates and formats as the original - sampled independently, as a
   sibling config would be - and each original task is held out against its copies. Recall: the
   share of copy rows whose source row the held-out task shows that the guard removes.
2. **False removals among unrelated rows of one task.** The rows of every task of the shared-data
   corpus are split in two halves by source row, and one half is held out against the other:
   everything removed is a pair of *different* source rows of one dataset. Pairs holding the same
   text (the dataset has it twice) are counted apart; the others are printed with their instance
   words to be read.

Usage::

    python bench/near_duplicates.py --out .bench/neardup [--cap 600] [--per-task 150] [--corpus DIR]

``--corpus`` reuses a built shared-data corpus for measurement 2 (``taskmill build
examples/shared-data.yaml --out DIR``); without it the script builds one.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import yaml

from taskmill.clusters.corpus import rows_by_task
from taskmill.clusters.leakage import DedupConfig, find_duplicates, fingerprint
from taskmill.records import Row

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "shared-data.yaml"
LIBRARY = REPO / "templates" / "library"
SWAP = {"he": "she", "she": "he", "him": "her", "her": "him", "his": "her", "hers": "his", "himself": "herself", "herself": "himself"}
PRONOUN = re.compile(r"\b(" + "|".join(SWAP) + r")\b", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z]{2,}")
KINDS = ("swap", "edit1", "edit2")


def load_example(only: list[str] | None = None) -> dict:
    """The shared-data collection with absolute data paths (so it can be written elsewhere)."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    if only:
        raw["tasks"] = [t for t in raw["tasks"] if t["name"] in only]
    for task in raw["tasks"]:
        task["data_files"] = {s: str((EXAMPLE.parent / p).resolve()) for s, p in task["data_files"].items()}
    return raw


def build(collection: dict, folder: Path) -> Path:
    """``taskmill build`` of a collection mapping into ``folder/corpus``."""
    from taskmill.builders.build import build_collection

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "collection.yaml"
    text = yaml.safe_dump(collection, sort_keys=False)
    if path.is_file() and path.read_text(encoding="utf-8") == text and (folder / "corpus" / "corpus.jsonl").is_file():
        print(f"  reusing {folder / 'corpus'} (same collection)", flush=True)
        return folder / "corpus"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    result = build_collection(path, folder / "corpus", progress=False, overwrite=True)
    print(f"  built {result.rows} rows -> {folder / 'corpus'} ({time.perf_counter() - start:.0f} s)", flush=True)
    return folder / "corpus"


def _strings(value, path=()):
    # (path, text) of every string inside a row (fields, lists, dicts)
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, path + (i,))


def _set(row: dict, path: tuple, text: str) -> dict:
    row = json.loads(json.dumps(row))
    target = row
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = text
    return row


def swap_pronoun(row: dict, rng: random.Random) -> dict | None:
    """The row with one gendered pronoun swapped (case kept), or None if it has none."""
    spots = [(path, m) for path, text in _strings(row) for m in PRONOUN.finditer(text)]
    if not spots:
        return None
    path, m = rng.choice(spots)
    text = dict(_strings(row))[path]
    word = SWAP[m.group(0).lower()]
    word = word.capitalize() if m.group(0)[0].isupper() else word
    return _set(row, path, text[: m.start()] + word + text[m.end() :])


def edit_words(row: dict, k: int, vocab: list[str], rng: random.Random) -> dict | None:
    """The row with ``k`` words of its longest text field replaced by words of the dataset."""
    fields = [(path, text) for path, text in _strings(row) if len(WORD.findall(text)) > k]
    if not fields:
        return None
    path, text = max(fields, key=lambda f: len(f[1]))
    spots = sorted(rng.sample(list(WORD.finditer(text)), k), key=lambda m: m.start(), reverse=True)
    for m in spots:
        new = rng.choice(vocab)
        while new.lower() == m.group(0).lower():
            new = rng.choice(vocab)
        text = text[: m.start()] + new + text[m.end() :]
    return _set(row, path, text)


def own_instances(rows: list[Row]) -> set[tuple[str, int]]:
    return {(r.split, r.row_index) for r in rows}


def write_copies(base: dict, corpus: Path, work: Path, per_task: int, seed: int) -> tuple[dict, dict]:
    """Sibling copies of sampled source rows; returns (collection with copies, copy task -> row map)."""
    groups = rows_by_task(corpus)
    rng = random.Random(seed)
    tasks, mapping = list(base["tasks"]), {}
    for task in base["tasks"]:
        split = task["splits"][0]
        source = [json.loads(x) for x in Path(task["data_files"][split]).read_text(encoding="utf-8").split("\n") if x.strip()]
        present = sorted(i for s, i in own_instances(groups[task["name"]]) if s == split)
        vocab = [w for r in source[:2000] for _, t in _strings(r) for w in WORD.findall(t)]
        template = task.get("templates") or str(LIBRARY / (task["dataset"].replace("/", "__") + ".yaml"))
        for kind in KINDS:
            made, origin = [], []
            for i in rng.sample(present, len(present)):
                edited = swap_pronoun(source[i], rng) if kind == "swap" else edit_words(source[i], int(kind[-1]), vocab, rng)
                if edited is not None and edited != source[i]:
                    made.append(edited)
                    origin.append(i)
                if len(made) == per_task:
                    break
            if not made:
                continue
            order = sorted(range(len(made)), key=lambda j: origin[j])
            name = f"{task['name']}~{kind}"
            path = work / "data" / f"{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(made[j], ensure_ascii=False) + "\n" for j in order), encoding="utf-8")
            copy = {k: v for k, v in task.items() if k not in ("shots_split",)}
            copy.update(name=name, dataset=f"minimal-pairs/{name.replace('~', '-')}", subset=None,
                        data_files={"train": str(path)}, splits=["train"], templates=template, shots_split="train")
            copy.pop("max_examples", None)
            tasks.append(copy)
            mapping[name] = (task["name"], split, [origin[j] for j in order])
    return {**base, "tasks": tasks}, mapping


def _own_text(prints) -> np.ndarray:
    # each row's own block's text (-1: too short or generic, matched only exactly)
    own = np.full(len(prints.ids), -1, dtype=np.int64)
    units = np.flatnonzero(prints.unit_own)
    own[prints.unit_row[units]] = prints.unit_text[units]
    return own


def recall(corpus: Path, mapping: dict, config: DedupConfig, thresholds: list[float]) -> None:
    """Measurement 1, per kind and threshold: (a) pair recall - a copy row's own block scored against
    the held-out rows of its own source row (all templates, and those under the same template); (b)
    the copy rows a fold holding the original out removes for any reason (an exemplar too)."""
    groups = rows_by_task(corpus)
    rows = [r for t in groups for r in groups[t]]
    start = time.perf_counter()
    prints = fingerprint(rows, config)
    print(f"  fingerprint of {len(rows)} rows: {time.perf_counter() - start:.1f} s; {len(prints.pairs)} candidate pairs scored", flush=True)
    pair_score = dict(zip(map(tuple, prints.pairs.tolist()), prints.scores.tolist()))
    own = _own_text(prints)

    def score(i: int, j: int) -> float:
        a, b = int(own[i]), int(own[j])
        if prints.exact[i] == prints.exact[j] or (a >= 0 and a == b):
            return 1.0
        return pair_score.get((min(a, b), max(a, b)), 0.0) if a >= 0 and b >= 0 else 0.0

    got: dict[str, list[tuple[float, float | None, float, Row, bool]]] = defaultdict(list)
    for name, (orig, split, origin) in sorted(mapping.items()):
        of_source = defaultdict(list)
        for r in groups[orig]:
            of_source[(r.split, r.row_index)].append(r)
        copies = [r for r in groups[name] if (split, origin[r.row_index]) in of_source]
        report = find_duplicates(prints, [prints.index[r.id] for r in copies], [prints.index[r.id] for r in groups[orig]],
                                 min(thresholds), keep=len(copies))
        removed = {p[0]: p[2] for p in report.pairs} | {p[0]: p[2] for p in report.kept}
        for r in copies:
            tests = of_source[(split, origin[r.row_index])]
            i = prints.index[r.id]
            best = max(score(i, prints.index[t.id]) for t in tests)
            same = [score(i, prints.index[t.id]) for t in tests if t.template_id == r.template_id]
            got[name.split("~")[1]].append((best, max(same) if same else None, removed.get(r.id, 0.0), r, own[i] < 0))
    pct = lambda v, t: f"{np.mean(np.asarray(v) >= t):.1%}" if len(v) else "-"
    for kind in KINDS:
        rows_k = got[kind]
        best = [g[0] for g in rows_k]
        same = [g[1] for g in rows_k if g[1] is not None]
        other = [g[0] for g in rows_k if g[1] is None]
        guard = [g[2] for g in rows_k]
        print(f"  {kind}: {len(rows_k)} copy rows of {len({g[3].task for g in rows_k})} tasks "
              f"({sum(g[4] for g in rows_k)} with an own block too short or generic to compare)")
        for label, values in (("pair caught, any template", best), ("  same template as a held-out row of the source row", same),
                              ("  only other templates", other), ("removed by the fold (any block)", guard)):
            print(f"    {label} [{len(values)}]: " + ", ".join(f"{t}: {pct(values, t)}" for t in thresholds))
        t = config.threshold
        for label, key in (("format", lambda r: r.format), ("task", lambda r: r.task.split("~")[0])):
            split_by = defaultdict(list)
            for g in rows_k:
                split_by[key(g[3])].append(g[0])
            shown = sorted(split_by.items(), key=lambda kv: np.mean(np.asarray(kv[1]) >= t))[: 8 if label == "task" else None]
            print(f"    pair caught at {t} by {label}{' (lowest)' if label == 'task' else ''}: " + ", ".join(f"{k} {pct(v, t)} of {len(v)}" for k, v in shown))


def halves(rows: list[Row]) -> list[Row]:
    """Rows renamed ``task#A`` / ``task#B`` by a hash of their source row (tasks of their own)."""
    from dataclasses import replace

    return [replace(r, task=f"{r.task}#{'AB'[zlib.crc32(f'{r.task}/{r.split}/{r.row_index}'.encode()) % 2]}") for r in rows]


def false_removals(corpus: Path, config: DedupConfig, thresholds: list[float], show: int) -> None:
    """Measurement 2: hold half of each task's source rows out against the other half (own blocks only:
    a few-shot row's exemplars may be source rows of the other half)."""
    groups = rows_by_task(corpus)
    rows = halves([r for t in groups for r in groups[t]])
    start = time.perf_counter()
    prints = fingerprint(rows, config)
    prints.unit_text[~prints.unit_own] = -1
    print(f"  fingerprint of {len(rows)} rows (tasks split in halves): {time.perf_counter() - start:.1f} s; "
          f"{len(prints.pairs)} candidate pairs scored", flush=True)
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_task[r.task].append(i)
    examined, found = Counter(), []
    for task in sorted(groups):
        a, b = by_task.get(f"{task}#A", []), by_task.get(f"{task}#B", [])
        report = find_duplicates(prints, b, a, min(thresholds), keep=0)
        examined[task] = len(b)
        exact = set(report.exact)
        found += [(task, p, p[0] in exact, report.words.get(p[0], ""), report.words.get(p[1], "")) for p in report.pairs]
    print(f"  rows examined: {sum(examined.values())} held-in rows of {len(examined)} tasks against {sum(len(by_task[t + '#A']) for t in groups)} held-out rows")
    for t in thresholds:
        hit = [f for f in found if f[1][2] >= t]
        same = [f for f in hit if f[2] or f[3] == f[4]]
        per = Counter(f[0] for f in hit if not (f[2] or f[3] == f[4]))
        print(f"  at {t}: {len(hit)} removed; {len(same)} hold the same text as a held-out row (exact or identical instance words: "
              f"the dataset has it twice); the other {len(hit) - len(same)} by task: " + ", ".join(f"{k} {n}" for k, n in per.most_common()))
    print(f"  the other removed pairs at {config.threshold}, lowest similarity first ({show} per task):")
    seen: Counter = Counter()
    for task, (train, test, score), exact, x, y in sorted(found, key=lambda f: (f[0], f[1][2])):
        if exact or x == y or score < config.threshold or seen[task] >= show:
            continue
        seen[task] += 1
        print(f"    {task} {score:.3f}: {x[:110]!r}\n{'':>{len(task) + 11}}~ {y[:110]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cap", type=int, default=600, help="mixing cap of the recall corpus (rows per task)")
    parser.add_argument("--per-task", type=int, default=150, help="copied source rows per task and kind")
    parser.add_argument("--corpus", type=Path, help="a built shared-data corpus for measurement 2")
    parser.add_argument("--threshold", type=float, default=DedupConfig().threshold)
    parser.add_argument("--also", default="0.7,0.75,0.85", help="more thresholds to report (comma-separated)")
    parser.add_argument("--show", type=int, default=4, help="removed pairs printed per task in measurement 2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", help="comma-separated task names of the collection (default: all)")
    args = parser.parse_args()
    config = DedupConfig(threshold=args.threshold)
    thresholds = sorted({args.threshold, *(float(x) for x in args.also.split(",") if x)})
    only = args.tasks.split(",") if args.tasks else None
    base = load_example(only)
    base["mixing"] = {**base.get("mixing", {}), "cap": args.cap}
    print(f"1. minimal pairs (cap {args.cap}, {args.per_task} copied source rows per task and kind, threshold {config.threshold})", flush=True)
    originals = build(base, args.out / "originals")
    collection, mapping = write_copies(base, originals, args.out / "copies", args.per_task, args.seed)
    recall(build(collection, args.out / "with-copies"), mapping, config, thresholds)
    print(f"2. unrelated rows of one task (threshold {config.threshold})", flush=True)
    corpus = args.corpus or build(load_example(only), args.out / "shared-data")
    false_removals(corpus, config, thresholds, args.show)


if __name__ == "__main__":
    main()
