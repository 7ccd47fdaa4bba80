"""Byte-identity of taskmill's promptsource dialect against PromptSource's ``Template.apply``, on ALL rows.

For every PromptSource template of every dataset in ``../shared/data`` (folder ``a__b`` ->
``promptsource_templates/a/b/templates.yaml``) and every row of every split, render with
PromptSource (``random.seed(i)`` before ``apply``) and with taskmill (``render_parts(row, seed=i)``),
``i`` being the row's index in its split, and compare the part lists exactly. Renders PromptSource
itself fails on are reported (with whether taskmill refuses them too), not skipped.

PromptSource re-compiles the template source on every ``apply`` (about 500 renders/s here, so all
2.1 million renders take over an hour). By default each worker therefore memoises PromptSource's
``env.from_string`` by source string: ``apply`` itself runs unchanged (its truncation rewrite, pipe
escaping, answer choices, render and split), only Jinja's compilation of an identical string is
reused. One catch: Jinja constant-folds ``[0, 1, 2, 3] | choice`` at compile time, drawing from the
global RNG then, so a source whose compilation moves ``random``'s state is never cached (it is
compiled afresh on every call, exactly as PromptSource does). ``--no-memo`` runs PromptSource
untouched (use it with ``--rows`` to keep it short).

Needs promptsource 0.2.3 importable (``pip install --no-deps promptsource==0.2.3`` plus
``setuptools<81`` for ``pkg_resources``).

Usage::

    python bench/promptsource_parity.py [--shared ../shared] [--procs 2] [--rows N] [--no-memo] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable

from taskmill.templates.parity import (
    DatasetPair,
    ParityReport,
    compare_template,
    discover,
    load_promptsource_reference,
    read_split,
    splits,
)
from taskmill.templates.promptsource import load_promptsource

ROWS_LIMIT: int | None = None


@lru_cache(maxsize=128)
def _rows(data_dir: Path, split: str) -> list[dict[str, Any]]:
    return read_split(data_dir / f"{split}.jsonl", ROWS_LIMIT)


@lru_cache(maxsize=32)
def _templates(templates_file: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    reference = load_promptsource_reference(templates_file)
    ours = {t.id: t for t in load_promptsource(templates_file).templates}
    return reference, ours


def _init(limit: int | None, memo: bool) -> None:
    global ROWS_LIMIT
    ROWS_LIMIT = limit
    warnings.filterwarnings("ignore")  # pkg_resources deprecation from promptsource's import
    if memo:
        import promptsource.templates as pst

        pst.env.from_string = _memo_compile(pst.env.from_string)


def _memo_compile(compile_source: Callable[..., Any]) -> Callable[..., Any]:
    """``from_string`` that reuses the compiled template of a source whose compile is RNG-free."""
    cache: dict[str, Any] = {}
    volatile: set[str] = set()

    def from_string(source: str, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or source in volatile:
            return compile_source(source, *args, **kwargs)
        if source in cache:
            return cache[source]
        before = random.getstate()
        compiled = compile_source(source)
        if random.getstate() != before:  # a constant-folded `choice` drew from the RNG at compile
            volatile.add(source)
        else:
            cache[source] = compiled
        return compiled

    return from_string


def _unit(unit: tuple[DatasetPair, str, str]) -> ParityReport:
    pair, template_id, split = unit
    reference, ours = _templates(pair.templates_file)
    return compare_template(pair.name, split, reference[template_id], ours[template_id], _rows(pair.data_dir, split))


def _units(pairs: list[DatasetPair], limit: int | None) -> tuple[list[tuple[DatasetPair, str, str]], int]:
    """(pair, template id, split) work units, largest first so two workers finish together."""
    sized, rows = [], 0
    for pair in pairs:
        ids = [t.id for t in load_promptsource(pair.templates_file).templates]
        for split in splits(pair):
            with (pair.data_dir / f"{split}.jsonl").open(encoding="utf-8") as fh:
                n = sum(1 for _ in fh)
            n = min(n, limit) if limit is not None else n
            rows += n
            sized += [(n, (pair, tid, split)) for tid in ids]
    sized.sort(key=lambda item: -item[0])
    return [unit for _, unit in sized], rows


def run(shared: Path, procs: int, limit: int | None, memo: bool = True) -> tuple[ParityReport, list[str], int, float]:
    """Compare every unit over ``procs`` processes; returns report, datasets without templates, rows, wall s."""
    from tqdm import tqdm

    pairs, missing = discover(shared)
    units, rows = _units(pairs, limit)
    total = ParityReport()
    start = time.perf_counter()
    with Pool(procs, initializer=_init, initargs=(limit, memo)) as pool:
        for report in tqdm(pool.imap_unordered(_unit, units), total=len(units), desc="template x split", file=sys.stderr):
            total.merge(report)
    return total, missing, rows, time.perf_counter() - start


def _print(report: ParityReport, missing: list[str], rows: int, wall: float, datasets: int, memo: bool) -> None:
    failed_templates = sorted({(f.dataset, f.template) for f in report.examples.get("ps_failed", [])})
    print(f"datasets with PromptSource templates: {datasets} (none for: {', '.join(missing) or '-'})")
    print(f"templates compared:      {len(report.templates)}")
    print(f"dataset rows:            {rows}")
    print(f"renders (template x row): {report.renders}")
    print(f"identical:               {report.identical}")
    print(f"mismatches:              {report.mismatches}")
    print(f"PromptSource failed on:  {report.ps_failed} renders"
          f" (taskmill refused {report.ours_failed_too} of them too)")
    print(f"taskmill failed only:    {report.ours_failed_only}")
    print(f"PromptSource apply time: {report.ps_seconds:.1f} s  taskmill render time: {report.ours_seconds:.1f} s"
          f"  ratio {report.ps_seconds / max(report.ours_seconds, 1e-9):.1f}x (summed over workers"
          f"{'; PromptSource memoised, so not its real speed' if memo else ''})")
    print(f"wall: {wall:.1f} s")
    if failed_templates:
        print(f"templates PromptSource fails on (from the kept examples): {failed_templates}")
    for kind, items in sorted(report.examples.items()):
        for f in items[:10]:
            print(f"  {kind}: {f.dataset} / {f.template} / {f.split} row {f.row}: {f.error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rows", type=int, default=None, help="first N rows per split (default: all)")
    parser.add_argument("--no-memo", action="store_true", help="do not memoise PromptSource's Jinja compile")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = parser.parse_args(argv)
    print("PromptSource mode:", "untouched" if args.no_memo else "env.from_string memoised per source string")
    report, missing, rows, wall = run(args.shared.resolve(), args.procs, args.rows, memo=not args.no_memo)
    _print(report, missing, rows, wall, len(discover(args.shared.resolve())[0]), not args.no_memo)
    if args.json:
        counts = {k: getattr(report, k) for k in ("renders", "identical", "mismatches", "ps_failed",
                                                  "ours_failed_too", "ours_failed_only")}
        counts |= {"templates": len(report.templates), "rows": rows, "wall_s": round(wall, 1),
                   "examples": {k: [vars(f) for f in v] for k, v in report.examples.items()}}
        args.json.write_text(json.dumps(counts, indent=2, default=str) + "\n", encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
