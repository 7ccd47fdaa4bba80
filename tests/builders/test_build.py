"""End-to-end builds of the tiny collection: formats, provenance, skips, determinism, outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmill.builders.build import build_collection
from taskmill.fileio import MARKER
from taskmill.templates import compile_template, load_template_file

FORMATS = ["zero_shot", "few_shot", "zero_shot_options", "few_shot_options", "cot"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def built(project: Path, cache_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "corpus"
    build_collection(project / "collection.yaml", out, progress=False, cache_dir=cache_dir)
    return out


@pytest.fixture()
def source(project: Path) -> dict[str, Any]:
    templates = {t.id: t for t in load_template_file(project / "templates.yaml").templates}
    splits = {s: _jsonl(project / "tiny" / f"{s}.jsonl") for s in ("train", "validation")}
    return {"templates": templates, "splits": splits}


def test_zero_shot_rows_are_exactly_the_rendered_template(built: Path, source: dict[str, Any], read_rows: Any) -> None:
    rows = [r for r in read_rows(built) if r["format"] == "zero_shot"]
    assert rows
    for row in rows:
        template = source["templates"][row["template_id"]]
        rendered = compile_template(template).render(source["splits"][row["split"]][row["row_index"]])
        assert (row["prompt"], row["completion"]) == (rendered.input, rendered.target)
        assert row["messages"] == [{"role": "user", "content": rendered.input},
                                   {"role": "assistant", "content": rendered.target}]
        assert row["answer_choices"] == (list(rendered.answer_choices) if rendered.answer_choices else None)
        assert row["target_index"] == rendered.target_index
        assert (row["task"], row["dataset"], row["template_name"]) == ("tiny", "tiny", template.name)
        assert row["metrics"] == list(template.metadata.metrics)
        assert row["original_task"] == template.metadata.original_task
        assert row["shots"] == [] and len(row["id"]) == 16


def test_every_format_is_built_and_ids_are_unique(built: Path, read_rows: Any) -> None:
    rows = read_rows(built)
    assert {r["format"] for r in rows} == set(FORMATS)
    assert len({r["id"] for r in rows}) == len(rows)


def test_template_rendering_empty_is_skipped_and_counted(built: Path, source: dict[str, Any], read_rows: Any) -> None:
    rows = [r for r in read_rows(built) if r["template_id"] == "tiny-positive-only" and r["format"] == "zero_shot"]
    train = source["splits"]["train"]
    assert sorted(r["row_index"] for r in rows if r["split"] == "train") == [i for i, x in enumerate(train) if x["label"] == 1]
    negatives = sum(1 for x in train if x["label"] == 0)
    card = (built / "card.md").read_text()
    assert f"skipped {negatives} rows of train / zero_shot: template renders empty for this row" in card


def test_few_shot_uses_train_exemplars_never_the_instance(built: Path, source: dict[str, Any], read_rows: Any) -> None:
    rows = [r for r in read_rows(built) if r["format"] == "few_shot"]
    assert {r["split"] for r in rows} == {"train", "validation"}
    train = source["splits"]["train"]
    for row in rows:
        compiled = compile_template(source["templates"][row["template_id"]])
        assert len(row["shots"]) == 2 and len(set(row["shots"])) == 2
        if row["split"] == "train":
            assert row["row_index"] not in row["shots"]
        blocks = []
        for j in row["shots"]:
            ex = compiled.render(train[j])
            assert ex.input and ex.target  # exemplars never render empty
            blocks.append(f"{ex.input}\n{ex.target}")
        instance = compiled.render(source["splits"][row["split"]][row["row_index"]])
        assert row["prompt"] == "\n\n".join([*blocks, instance.input])
        assert row["completion"] == instance.target


def test_options_only_where_the_template_does_not_show_them(built: Path, source: dict[str, Any], read_rows: Any) -> None:
    rows = [r for r in read_rows(built) if r["format"] == "zero_shot_options"]
    assert {r["template_id"] for r in rows} == {"tiny-plain"}  # mood shows its choices; positive-only has none
    for row in rows:
        rendered = compile_template(source["templates"]["tiny-plain"]).render(source["splits"][row["split"]][row["row_index"]])
        assert row["prompt"] == rendered.input + "\n\nOPTIONS:\n- negative\n- positive"
    card = (built / "card.md").read_text()
    assert "zero_shot_options: choices already in the prompt (choices_in_prompt)" in card
    assert "zero_shot_options: no answer_choices to show as options" in card
    few = [r for r in read_rows(built) if r["format"] == "few_shot_options"]
    assert few and all(r["prompt"].count("OPTIONS:\n- negative\n- positive") == 3 for r in few)


def test_cot_target_from_the_template(built: Path, source: dict[str, Any], read_rows: Any) -> None:
    rows = [r for r in read_rows(built) if r["format"] == "cot"]
    assert {r["template_id"] for r in rows} == {"tiny-plain"}
    for row in rows:
        compiled = compile_template(source["templates"]["tiny-plain"])
        data = source["splits"][row["split"]][row["row_index"]]
        assert row["completion"] == compiled.render_cot(data)
        assert row["prompt"] == compiled.render(data).input
    assert "cot: template has no cot_target" in (built / "card.md").read_text()


def test_byte_identical_across_runs_and_process_counts(project: Path, cache_dir: Path, tmp_path: Path) -> None:
    outs = []
    for name, procs in (("a", 1), ("b", 1), ("c", 2)):
        build_collection(project / "collection.yaml", tmp_path / name, num_proc=procs, progress=False, cache_dir=cache_dir)
        outs.append(_hashes(tmp_path / name))
    assert set(outs[0]) == {"corpus.jsonl", "parquet/corpus-00000-of-00001.parquet", "card.md", "manifest.json", MARKER}
    assert outs[0] == outs[1] == outs[2]


def test_manifest_hashes_versions_and_config(built: Path, project: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    for name, digest in manifest["outputs"].items():
        assert hashlib.sha256((built / name).read_bytes()).hexdigest() == digest
    inputs = {i["path"]: i["sha256"] for i in manifest["inputs"] + manifest["templates"]}
    for rel in ("tiny/train.jsonl", "tiny/validation.jsonl", "templates.yaml"):
        assert inputs[rel] == hashlib.sha256((project / rel).read_bytes()).hexdigest()
    assert set(manifest["versions"]) == {"taskmill", "datasets", "jinja2", "pyarrow"}
    assert manifest["seed"] == 7 and manifest["config"]["tasks"][0]["templates"] == "templates.yaml"
    assert str(project) not in (built / "manifest.json").read_text()  # no machine-specific paths


def test_parquet_holds_the_same_rows(built: Path, read_rows: Any) -> None:
    import pyarrow.parquet as pq

    assert pq.read_table(built / "parquet").to_pylist() == read_rows(built)  # the folder, as users read it


def test_seeded_sample_under_max_examples(project: Path, cache_dir: Path, tmp_path: Path, read_rows: Any) -> None:
    text = (project / "collection.yaml").read_text()
    (project / "capped.yaml").write_text(text.replace("templates: templates.yaml", "templates: templates.yaml\n    max_examples: 4")
                                         .replace("formats: [zero_shot, few_shot, zero_shot_options, few_shot_options, cot]",
                                                  "formats: [zero_shot]"))
    picked = []
    for name in ("a", "b"):
        build_collection(project / "capped.yaml", tmp_path / name, progress=False, cache_dir=cache_dir)
        picked.append(sorted({(r["split"], r["row_index"]) for r in read_rows(tmp_path / name)}))
    assert picked[0] == picked[1]
    assert sum(1 for s, _ in picked[0] if s == "train") == 4 and sum(1 for s, _ in picked[0] if s == "validation") == 4


def test_format_override_and_library_templates(project: Path, cache_dir: Path, tmp_path: Path, cli: Any,
                                               read_rows: Any) -> None:
    from taskmill.builders.collection import library_file

    collection = {"seed": 0, "tasks": [{"name": "sst2_like", "dataset": "glue/sst2",
                                         "data_files": {"train": "tiny/train.jsonl"}}]}
    (project / "lib.yaml").write_text(yaml.safe_dump(collection))
    result = cli(["build", project / "lib.yaml", "--out", tmp_path / "out", "--format", "zero_shot",
                  "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out")
    library = [t.id for t in load_template_file(library_file("glue/sst2")).templates]
    assert {r["format"] for r in rows} == {"zero_shot"}
    assert [r["template_id"] for r in rows if r["row_index"] == 0] == [
        t for t in library if any(r["template_id"] == t for r in rows)]
    assert {r["template_id"] for r in rows} <= set(library) and len({r["template_id"] for r in rows}) > 1


def test_save_to_disk_loads_with_datasets(project: Path, cache_dir: Path, tmp_path: Path, read_rows: Any) -> None:
    import datasets

    digests = []
    for name in ("a", "b"):
        build_collection(project / "collection.yaml", tmp_path / name, save_to_disk=True, progress=False,
                         cache_dir=cache_dir, formats=["zero_shot"])
        digests.append(_hashes(tmp_path / name))
    assert digests[0] == digests[1]
    loaded = datasets.load_from_disk(str(tmp_path / "a" / "hf_dataset"))
    assert loaded.to_list() == read_rows(tmp_path / "a")


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_csv_and_parquet_sources_give_the_same_corpus(project: Path, cache_dir: Path, tmp_path: Path, ext: str) -> None:
    import pandas as pd

    for split in ("train", "validation"):
        frame = pd.read_json(project / "tiny" / f"{split}.jsonl", lines=True)
        getattr(frame, f"to_{ext}")(project / "tiny" / f"{split}.{ext}", index=False)
    (project / f"{ext}.yaml").write_text((project / "collection.yaml").read_text().replace(".jsonl", f".{ext}"))
    build_collection(project / "collection.yaml", tmp_path / "jsonl", progress=False, cache_dir=cache_dir)
    build_collection(project / f"{ext}.yaml", tmp_path / ext, progress=False, cache_dir=cache_dir)
    for name in ("corpus.jsonl", "parquet/corpus-00000-of-00001.parquet"):
        assert (tmp_path / "jsonl" / name).read_bytes() == (tmp_path / ext / name).read_bytes()
    cards = [(tmp_path / d / "card.md").read_text().splitlines()[1:] for d in ("jsonl", ext)]  # line 0: file name
    assert cards[0] == cards[1]


def test_no_collection_builds_the_embedded_starter(tmp_path: Path, cache_dir: Path, cli: Any, read_rows: Any) -> None:
    from taskmill.builders.collection import load_collection, starter_collection

    result = cli(["build", "--out", tmp_path / "corpus", "--format", "zero_shot", "--no-progress", "--cache-dir", cache_dir])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert manifest["collection"]["sha256"] == hashlib.sha256(starter_collection().read_bytes()).hexdigest()
    assert {r["task"] for r in read_rows(tmp_path / "corpus")} == {t.name for t in load_collection(starter_collection()).tasks}


def test_size_parsing() -> None:
    from taskmill.builders.build import DEFAULT_MAX_SIZE, parse_size
    from taskmill.errors import ConfigError

    assert [parse_size(s) for s in ("1.5GB", "500 MB", "2g", "300kB", "123", "1GiB")] == [
        1_500_000_000, 500_000_000, 2_000_000_000, 300_000, 123, 2**30]
    assert parse_size("0") is None and parse_size("none") is None
    assert DEFAULT_MAX_SIZE == 1_000_000_000  # a 1.68 GB corpus is refused unless --max-size is raised
    with pytest.raises(ConfigError):
        parse_size("-1GB")


def test_projected_size_and_progress_rate_on_stderr(project: Path, cache_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Before writing: the corpus's rows and JSONL size on stderr; while rendering: a bar with rows/s."""
    import io

    from rich.console import Console

    from taskmill.builders import build as build_module

    screen = Console(file=io.StringIO(), force_terminal=True, width=160)
    monkeypatch.setattr(build_module, "progress_console", lambda: screen)
    result = build_collection(project / "collection.yaml", tmp_path / "out", progress=True, cache_dir=cache_dir)
    size = (tmp_path / "out" / "corpus.jsonl").stat().st_size
    err = capsys.readouterr().err
    assert f"writing {result.rows} rows, corpus.jsonl {size / 1000:.1f} kB (limit 1.00 GB) to {tmp_path / 'out'}" in err
    bar = screen.file.getvalue()
    assert "rendering rows" in bar and "rows/s" in bar and f"{result.rendered} rows" in bar


def test_cot_with_no_cot_target_anywhere_is_an_error(project: Path, cache_dir: Path, tmp_path: Path) -> None:
    from taskmill.errors import TaskmillError

    data = yaml.safe_load((project / "collection.yaml").read_text())
    data["tasks"][0]["template_ids"] = ["tiny-mood", "tiny-positive-only"]  # the two without a cot_target
    (project / "collection.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(TaskmillError) as info:
        build_collection(project / "collection.yaml", tmp_path / "out", formats=["cot"], progress=False,
                         cache_dir=cache_dir)
    assert info.value.line() == (
        f"{project / 'collection.yaml'}: no rows to write; task 'tiny' (templates.yaml): cot: none of the 2 "
        "templates has a cot_target, so this task has no cot rows; expected at least one row")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("procs", ["1", "2"])
def test_a_real_build_process_exits_at_once_with_every_file_complete(project: Path, cache_dir: Path, tmp_path: Path,
                                                                     procs: str) -> None:
    """The CLI skips freeing the parent's rows at exit after a successful local build: its output
    (stdout too) must still be complete, with exit status 0, and no worker left running."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_DATASETS_CACHE": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "taskmill", "build", str(project / "collection.yaml"), "--out",
                           str(tmp_path / "out"), "--num-proc", procs, "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote ") and proc.stdout.endswith(f"to {tmp_path / 'out'}\n")
    build_collection(project / "collection.yaml", tmp_path / "here", progress=False, cache_dir=cache_dir)
    assert _hashes(tmp_path / "out") == _hashes(tmp_path / "here")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "out") not in ps  # its workers ended with it
