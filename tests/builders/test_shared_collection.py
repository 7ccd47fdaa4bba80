"""The shared example collection (../shared/example-collection.yaml) builds, byte-identically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
EXAMPLE = SHARED / "example-collection.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not EXAMPLE.is_file(), reason="../shared (example collection and data) is absent"),
]


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_example_collection_builds_identically(tmp_path: Path, cache_dir: Path, cli: Any, read_rows: Any) -> None:
    digests = []
    for name, procs in (("a", 1), ("b", 1), ("c", 2)):
        result = cli(["build", EXAMPLE, "--out", tmp_path / name, "--num-proc", procs, "--no-progress",
                      "--cache-dir", cache_dir])
        assert result.exit_code == 0, result.output
        digests.append(_hashes(tmp_path / name))
    assert digests[0] == digests[1] == digests[2]
    rows = read_rows(tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["rows"] == len(rows) > 0
    # max_examples: 1000 caps train (6,920 rows); validation (872 rows) is taken whole.
    for split, expected in (("train", 1000), ("validation", 872)):
        assert len({r["row_index"] for r in rows if r["split"] == split}) == expected
    assert {r["format"] for r in rows} <= {"zero_shot", "few_shot", "zero_shot_options"}
    assert {r["task"] for r in rows} == {"sst2"} and {r["dataset"] for r in rows} == {"glue/sst2"}
    zero = [r for r in rows if r["format"] == "zero_shot"]
    assert all(r["prompt"] and r["completion"] in r["answer_choices"] for r in zero)
