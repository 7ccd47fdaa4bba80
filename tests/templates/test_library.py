"""The template library renders cleanly on the ../shared/data rows of every dataset it covers.

Every file in ``templates/library`` is loaded with the real loader and every template is rendered
with the real engine on the first rows of every split of its dataset (from ../shared/data, which
CI has beside the clone; skipped with a reason when absent).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from taskmill.templates.engine import compile_template
from taskmill.templates.fileformat import load_template_file
from taskmill.templates.lint import lint_paths

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "templates" / "library"
SHARED_DATA = REPO / ".." / "shared" / "data"
ROWS_PER_SPLIT = 50
METRICS = {"Accuracy", "ROUGE", "BLEU", "Squad", "Exact Match"}
# A single-brace {name} left in rendered text is a field reference that was never rendered.
SINGLE_BRACE = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}(?!\})")

LIBRARY_FILES = sorted(LIBRARY.glob("*.yaml"))
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent (CI has it beside the clone)")


def _folder_name(dataset: str, subset: str | None) -> str:
    return dataset.replace("/", "__") + (f"__{subset}" if subset else "")


def _rows(folder: Path) -> dict[str, list[dict]]:
    out = {}
    for split in sorted(folder.glob("*.jsonl")):
        with split.open(encoding="utf-8") as fh:
            out[split.stem] = [json.loads(line) for line in itertools.islice(fh, ROWS_PER_SPLIT)]
    return out


def _leftover_braces(text: str, row: dict) -> list[str]:
    """Single-brace field references in ``text`` that do not come from the row's own values."""
    raw = json.dumps(row, ensure_ascii=False)
    return [m.group(0) for m in SINGLE_BRACE.finditer(text) if m.group(1).split(".")[0] in row and m.group(0) not in raw]


def test_library_has_a_file_for_every_shared_dataset() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (CI has it beside the clone)")
    folders = sorted(p.name for p in SHARED_DATA.iterdir() if p.is_dir())
    assert sorted(p.stem for p in LIBRARY_FILES) == folders


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_file_names_its_dataset_and_has_complete_metadata(path: Path) -> None:
    tf = load_template_file(path)
    assert _folder_name(tf.dataset, tf.subset) == path.stem, "file name must be <hf id>__<config>.yaml"
    assert len(tf.templates) >= 5
    assert any(t.metadata.original_task is False for t in tf.templates) or path.stem in _ORIGINAL_ONLY
    for t in tf.templates:
        m = t.metadata
        assert isinstance(m.original_task, bool) and isinstance(m.choices_in_prompt, bool), t.id
        assert m.metrics and set(m.metrics) <= METRICS, (t.id, m.metrics)
        assert m.languages == ("en",), t.id
        assert t.id.split("-")[0] == tf.templates[0].id.split("-")[0], f"{t.id}: one id prefix per file"
        if m.choices_in_prompt:
            assert t.answer_choices is not None, f"{t.id}: shows choices but has no answer_choices"


# Datasets whose rows give no sensible non-original task (the label is all there is).
_ORIGINAL_ONLY = {"glue__cola", "super_glue__wsc"}


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_every_template_renders_on_the_shared_rows(path: Path) -> None:
    tf = load_template_file(path)
    splits = _rows(SHARED_DATA / path.stem)
    assert splits, f"no data for {path.stem}"
    for t in tf.templates:
        compiled = compile_template(t)
        for split, rows in splits.items():
            for i, row in enumerate(rows):
                where = f"{t.id} on {split} row {i}"
                r = compiled.render(row, seed=0)
                assert r.input and r.target, f"{where}: empty input or target"
                if t.answer_choices is not None:
                    assert r.answer_choices and all(r.answer_choices), f"{where}: empty answer choice"
                    assert r.target in r.answer_choices, f"{where}: target {r.target!r} not in choices"
                for text in (r.input, r.target):
                    assert "{{" not in text and "{%" not in text, f"{where}: unrendered Jinja"
                    assert not _leftover_braces(text, row), f"{where}: {_leftover_braces(text, row)}"
                if t.cot_target is not None:
                    cot = compiled.render_cot(row, seed=0)
                    assert cot and r.target in cot, f"{where}: chain-of-thought target lacks the answer"


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.stem)
def test_lint_is_clean_on_every_split(path: Path) -> None:
    """``taskmill templates lint FILE --data SPLIT`` finds nothing (no error, no warning)."""
    for split in sorted((SHARED_DATA / path.stem).glob("*.jsonl")):
        report = lint_paths([path], split, rows=ROWS_PER_SPLIT)
        assert report.rows and not report.findings, [f.line() for f in report.findings]


@needs_shared
@pytest.mark.slow
def test_lint_command_exits_clean() -> None:
    from typer.testing import CliRunner

    from taskmill.cli import app

    data = SHARED_DATA / "glue__sst2" / "validation.jsonl"
    result = CliRunner().invoke(app, ["templates", "lint", str(LIBRARY / "glue__sst2.yaml"), "--data", str(data), "--plain"])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


@needs_shared
@pytest.mark.slow
def test_shared_data_collection_builds_with_every_task_and_template(tmp_path: Path) -> None:
    """examples/shared-data.yaml (every shared dataset, library templates, four formats, caps of
    2,000 rows per task) builds, and its corpus has rows for every task and every template."""
    from collections import Counter

    import yaml

    from taskmill.builders.build import build_collection

    collection = REPO / "examples" / "shared-data.yaml"
    build_collection(collection, tmp_path / "corpus", progress=False)
    per_template: Counter[tuple[str, str]] = Counter()
    formats: Counter[str] = Counter()
    with (tmp_path / "corpus" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            per_template[(row["task"], row["template_id"])] += 1
            formats[row["format"]] += 1
    tasks = yaml.safe_load(collection.read_text(encoding="utf-8"))["tasks"]
    assert sorted(_folder_name(t["dataset"], None) for t in tasks) == sorted(p.stem for p in LIBRARY_FILES)
    for task in tasks:
        templates = load_template_file(LIBRARY / f"{_folder_name(task['dataset'], None)}.yaml").templates
        counts = [per_template[(task["name"], t.id)] for t in templates]
        assert all(counts), f"{task['name']}: templates without rows: {[t.id for t, n in zip(templates, counts) if not n]}"
        assert sum(counts) <= 2000, f"{task['name']}: {sum(counts)} rows exceed the cap"
    assert set(formats) == {"zero_shot", "few_shot", "zero_shot_options", "few_shot_options"}
    assert "| 0 |" not in (tmp_path / "corpus" / "card.md").read_text(encoding="utf-8")
