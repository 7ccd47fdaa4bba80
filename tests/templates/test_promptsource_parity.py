"""Byte-identity with PromptSource's own ``Template.apply`` for every PromptSource template of every
dataset in ../shared/data, on the first rows of each split (``bench/promptsource_parity.py`` runs all rows).

A render PromptSource itself fails on must fail in taskmill too (reported, never skipped).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from taskmill.templates.parity import (
    ParityReport,
    compare_template,
    discover,
    load_promptsource_reference,
    read_split,
    splits,
)
from taskmill.templates.promptsource import load_promptsource

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
ROWS_PER_SPLIT = 12


@pytest.mark.slow
def test_every_promptsource_template_renders_identically() -> None:
    if not (SHARED / "data").is_dir() or not (SHARED / "promptsource_templates").is_dir():
        pytest.skip(f"{SHARED} absent (CI has ../shared beside the clone)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # promptsource imports the deprecated pkg_resources
        pytest.importorskip("promptsource.templates", reason="promptsource 0.2.3 is not installed")
    pairs, _ = discover(SHARED.resolve())
    total = ParityReport()
    for pair in pairs:
        reference = load_promptsource_reference(pair.templates_file)
        ours = {t.id: t for t in load_promptsource(pair.templates_file).templates}
        assert set(ours) == set(reference), pair.name
        for split in splits(pair):
            rows = read_split(pair.data_dir / f"{split}.jsonl", ROWS_PER_SPLIT)
            for template_id, ps_template in reference.items():
                total.merge(compare_template(pair.name, split, ps_template, ours[template_id], rows))
    examples = {k: [f"{f.dataset}/{f.template}/{f.split}:{f.row}: {f.error}" for f in v[:3]] for k, v in total.examples.items()}
    assert total.mismatches == 0, examples
    assert total.ours_failed_only == 0, examples
    assert total.ps_failed == total.ours_failed_too, examples
    assert len(pairs) >= 20 and len(total.templates) >= 200
    assert total.identical + total.ps_failed == total.renders > 4000
