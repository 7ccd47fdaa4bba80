"""Collection parsing, mixing and dedup, Super-NaturalInstructions tasks, chunking independence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskmill.builders import build as build_module
from taskmill.builders.build import build_collection
from taskmill.builders.collection import load_collection, parse_collection
from taskmill.builders.mixing import quotas
from taskmill.builders.sni import sni_prompt
from taskmill.errors import ConfigError


def _parquet_rows(folder: Path) -> list[dict[str, Any]]:
    from taskmill.builders.writer import read_parquet

    return read_parquet(folder).to_pylist()


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dataset_ids_and_defaults(project: Path) -> None:
    raw = {"tasks": [
        {"name": "a", "dataset": "glue/sst2", "data_files": {"train": "tiny/train.jsonl"}},
        {"name": "b", "dataset": "SetFit/sst5", "subset": None, "data_files": {"train": "tiny/train.jsonl"}},
        {"name": "c", "dataset": "owner/name/config", "splits": ["test"], "templates": "templates.yaml"},
    ]}
    c = parse_collection(raw, project / "x.yaml")
    assert [(t.hf_id, t.subset, t.dataset) for t in c.tasks] == [
        ("glue", "sst2", "glue/sst2"), ("SetFit/sst5", None, "SetFit/sst5"), ("owner/name", "config", "owner/name/config")]
    assert c.tasks[0].splits == ("train",) and c.tasks[0].templates is None and c.formats == ("zero_shot",)


def test_all_problems_reported_at_once(project: Path) -> None:
    raw = {"shots": -2, "mixing": {"temperature": 0, "cap": "big"}, "tasks": [
        {"name": "a", "dataset": "tiny", "data_files": {"train": "missing.jsonl"}, "templates": "templates.yaml",
         "formats": ["few_shot"], "shots_split": "dev"},
        {"name": "a", "sni": "nope.json"},
    ]}
    with pytest.raises(ConfigError) as info:
        parse_collection(raw, project / "x.yaml")
    problems = info.value.problems
    expected = ["shots must be an integer >= 0", "temperature must be a number > 0", "cap must be an integer >= 1",
                "data file not found", "need exemplars from split 'dev'", "SNI task file not found",
                "task name 'a' is used more than once"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


def test_quotas_follow_capped_tempered_weights() -> None:
    sizes = [1000, 100, 10]
    assert quotas(sizes, cap=None, temperature=1.0, total=None) == sizes
    capped = quotas(sizes, cap=200, temperature=1.0, total=None)
    assert capped == [200, 100, 10]
    flat = quotas(sizes, cap=None, temperature=1e9, total=300)  # temperature -> inf: uniform
    assert flat == [100, 100, 100]
    warm = quotas(sizes, cap=None, temperature=2.0, total=1110)
    weights = [n ** 0.5 for n in sizes]
    assert sum(warm) == 1110
    assert all(abs(q - 1110 * w / sum(weights)) < 1 for q, w in zip(warm, weights))


def _two_task_collection(project: Path, **mixing: Any) -> Path:
    task = {"dataset": "tiny", "data_files": {"train": "tiny/train.jsonl"}, "templates": "templates.yaml"}
    data = {"seed": 3, "formats": ["zero_shot"], "tasks": [{"name": "big", **task},
                                                            {"name": "small", **task, "max_examples": 4}]}
    if mixing:
        data["mixing"] = mixing
    path = project / "mix.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_exact_duplicates_are_removed_once(project: Path, cache_dir: Path, tmp_path: Path, read_rows: Any) -> None:
    # Task "small" renders rows identical to some of "big": the same (split, prompt, completion).
    build_collection(_two_task_collection(project), tmp_path / "out", progress=False, cache_dir=cache_dir)
    rows = read_rows(tmp_path / "out")
    keys = [(r["split"], r["prompt"], r["completion"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["task"] for r in rows} == {"big"}  # every row of "small" duplicates one of "big"
    assert _parquet_rows(tmp_path / "out") == rows
    assert "exact duplicates removed" in (tmp_path / "out" / "card.md").read_text()


def test_mixing_with_cap_keeps_quota_rows(project: Path, cache_dir: Path, tmp_path: Path, read_rows: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.builders import writer

    monkeypatch.setattr(writer, "MAX_SLICES", 0)  # Parquet rows selected with take() rather than slices
    text = (project / "tiny" / "train.jsonl").read_text()
    (project / "tiny" / "train2.jsonl").write_text(text.replace(" .", " !"))  # distinct text, same labels
    path = _two_task_collection(project, cap=6, temperature=1.0)
    data = yaml.safe_load(path.read_text())
    data["tasks"][1]["data_files"] = {"train": "tiny/train2.jsonl"}
    path.write_text(yaml.safe_dump(data))
    build_collection(path, tmp_path / "out", progress=False, cache_dir=cache_dir)
    rows = read_rows(tmp_path / "out")
    # big: 10 rows x 3 templates minus 5 empty = 25 rows; small: 4 rows x 3 templates minus empties.
    counts = {t: sum(1 for r in rows if r["task"] == t) for t in ("big", "small")}
    assert counts["big"] == 6 and 0 < counts["small"] <= 6
    assert _parquet_rows(tmp_path / "out") == rows
    assert "## Mixing" in (tmp_path / "out" / "card.md").read_text()


def test_sni_task_in_its_own_format(project: Path, cache_dir: Path, tmp_path: Path, read_rows: Any) -> None:
    (project / "sni.yaml").write_text(yaml.safe_dump({"seed": 0, "shots": 2, "formats": ["zero_shot", "few_shot", "cot"],
                                                      "tasks": [{"name": "review_sentiment", "sni": "sni_task.json",
                                                                 "negative_examples": 1}]}))
    build_collection(project / "sni.yaml", tmp_path / "out", progress=False, cache_dir=cache_dir)
    rows = read_rows(tmp_path / "out")
    task = json.loads((project / "sni_task.json").read_text())
    assert [(r["format"], r["row_index"]) for r in rows] == [(f, i) for i in range(3) for f in ("zero_shot", "few_shot")]
    assert [r["completion"] for r in rows if r["format"] == "zero_shot"] == ["positive", "negative", "positive"]
    few = next(r for r in rows if r["format"] == "few_shot" and r["row_index"] == 1)
    assert few["prompt"] == (
        "Definition: Given a one-line film review, answer \"positive\" if the reviewer liked the film and "
        "\"negative\" otherwise.\n\n"
        " Positive Example 1 -\nInput: a warm , funny and moving film .\n Output: positive.\n\n"
        " Positive Example 2 -\nInput: dull and far too long.\n Output: negative.\n\n"
        " Negative Example 1 -\nInput: the cast is superb .\n Output: superb.\n\n"
        "Now complete the following example -\nInput: tedious and predictable.\nOutput:")
    assert few["prompt"] == sni_prompt(task, task["Instances"][1]["input"], 2, 1)
    assert few["dataset"] == "sni/sni_task" and few["template_id"] == "sni-pos2-neg1"
    assert "cot: format does not apply to an SNI task" in (tmp_path / "out" / "card.md").read_text()


def test_output_does_not_depend_on_chunking(project: Path, cache_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    build_collection(project / "collection.yaml", tmp_path / "whole", progress=False, cache_dir=cache_dir)
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 3)  # one row per chunk: 14 chunks over 2 processes
    build_collection(project / "collection.yaml", tmp_path / "split", num_proc=2, progress=False, cache_dir=cache_dir)
    assert _hashes(tmp_path / "whole") == _hashes(tmp_path / "split")


def test_seed_changes_draws_but_not_zero_shot_text(project: Path, cache_dir: Path, tmp_path: Path, read_rows: Any) -> None:
    other = yaml.safe_load((project / "collection.yaml").read_text())
    other["seed"] = 8
    (project / "seed8.yaml").write_text(yaml.safe_dump(other))
    build_collection(project / "collection.yaml", tmp_path / "a", progress=False, cache_dir=cache_dir)
    build_collection(project / "seed8.yaml", tmp_path / "b", progress=False, cache_dir=cache_dir)
    a, b = read_rows(tmp_path / "a"), read_rows(tmp_path / "b")
    zero = lambda rows: [(r["prompt"], r["completion"]) for r in rows if r["format"] == "zero_shot"]  # noqa: E731
    assert zero(a) == zero(b)
    assert [r["shots"] for r in a if r["format"] == "few_shot"] != [r["shots"] for r in b if r["format"] == "few_shot"]
    assert {r["id"] for r in a}.isdisjoint({r["id"] for r in b})


def test_load_collection_reads_the_assets(project: Path) -> None:
    c = load_collection(project / "collection.yaml")
    assert c.seed == 7 and c.tasks[0].data_files == {"train": ("tiny/train.jsonl",), "validation": ("tiny/validation.jsonl",)}


def test_owner_name_hub_ids_are_one_repo_not_name_and_config(project: Path) -> None:
    """``knkarthick/dialogsum`` is a hub repo (HF's owner/name), not dataset ``knkarthick`` config
    ``dialogsum``; ``a/b`` is name/config only when taskmill's or the task's template files say so."""
    (project / "emoji.yaml").write_text("dataset: tweet_eval\nsubset: emoji\ntemplates:\n"
                                        "  - {id: e, name: e, input: '{{ sentence }}', target: 'x'}\n")
    files = {"data_files": {"train": "tiny/train.jsonl"}}
    raw = {"tasks": [
        {"name": "dialogsum", "dataset": "knkarthick/dialogsum", "templates": "templates.yaml", **files},
        {"name": "hub", "dataset": "knkarthick/dialogsum", "splits": ["train"], "templates": "templates.yaml"},
        {"name": "sst2", "dataset": "glue/sst2", **files},                    # library glue__sst2.yaml: glue + sst2
        {"name": "ax", "dataset": "glue/ax", "templates": "templates.yaml", **files},  # glue has configs in the library
        {"name": "sst5", "dataset": "SetFit/sst5", **files},                  # library SetFit__sst5.yaml: owner/name
        {"name": "emoji", "dataset": "tweet_eval/emoji", "templates": "emoji.yaml", **files},  # the file's header
        {"name": "cfg", "dataset": "knkarthick/dialogsum", "subset": "default", "templates": "templates.yaml", **files},
        {"name": "three", "dataset": "knkarthick/dialogsum/default", "templates": "templates.yaml", **files},
    ]}
    c = parse_collection(raw, project / "x.yaml")
    assert [(t.hf_id, t.subset, t.dataset) for t in c.tasks] == [
        ("knkarthick/dialogsum", None, "knkarthick/dialogsum"),
        ("knkarthick/dialogsum", None, "knkarthick/dialogsum"),
        ("glue", "sst2", "glue/sst2"),
        ("glue", "ax", "glue/ax"),
        ("SetFit/sst5", None, "SetFit/sst5"),
        ("tweet_eval", "emoji", "tweet_eval/emoji"),
        ("knkarthick/dialogsum", "default", "knkarthick/dialogsum/default"),
        ("knkarthick/dialogsum", "default", "knkarthick/dialogsum/default"),
    ]
    assert {t["name"]: (t["hf_id"], t["subset"]) for t in c.resolved()["tasks"]}["dialogsum"] == ("knkarthick/dialogsum", None)


def test_owner_name_hub_id_is_loaded_as_one_repo(project: Path, cache_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub is asked for repo ``knkarthick/dialogsum`` with no config, as ``load_dataset`` expects."""
    import datasets

    calls = []

    class _Split:
        def to_list(self) -> list[dict[str, Any]]:
            return [{"sentence": "a fine film .", "label": 1, "idx": 0}]

    def fake_load(path: str, name: str | None = None, **kwargs: Any) -> _Split:
        calls.append((path, name, kwargs.get("split")))
        return _Split()

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    (project / "hub.yaml").write_text(yaml.safe_dump({"formats": ["zero_shot"], "tasks": [
        {"name": "dialogsum", "dataset": "knkarthick/dialogsum", "splits": ["train"], "templates": "templates.yaml"}]}))
    build_collection(project / "hub.yaml", tmp_path / "out", progress=False, cache_dir=cache_dir)
    assert calls == [("knkarthick/dialogsum", None, "train")]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    task = manifest["config"]["tasks"][0]
    assert (task["hf_id"], task["subset"], manifest["sources"][0]["dataset"]) == ("knkarthick/dialogsum", None,
                                                                                   "knkarthick/dialogsum")
    from taskmill.errors import DataError

    def missing(path: str, name: str | None = None, **kwargs: Any) -> None:
        raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(DataError, match="write dataset: knkarthick and subset: dialogsum"):
        build_collection(project / "hub.yaml", tmp_path / "out2", progress=False, cache_dir=cache_dir)


def test_mix_keeps_the_smallest_ids_per_task_ties_in_corpus_order_and_unmixed_splits_whole() -> None:
    """mix() on hand-made chunks against the rule written out row by row: per (task, mixed split),
    the quota's smallest ids (equal ids: the earlier row), rows dedup removed never counted, rows
    of splits not mixed all kept."""
    from dataclasses import dataclass as dc

    from taskmill.builders.collection import MixingConfig
    from taskmill.builders.mixing import ID_SIZE, mix, quotas

    @dc
    class Chunk:
        task: int
        split: str
        ids: bytes

        @property
        def rows(self) -> int:
            return len(self.ids) // ID_SIZE

    def ids(*names: str) -> bytes:
        return b"".join(n.encode() * ID_SIZE for n in names)

    chunks = [Chunk(0, "train", ids("d", "b", "b", "a")), Chunk(0, "train", ids("c", "a")),
              Chunk(0, "test", ids("z", "y")), Chunk(1, "train", ids("e", "f", "g"))]
    positions = [0, 1, 2, 4, 5, 6, 7, 8, 10]  # 3 and 9 removed as duplicates
    config = MixingConfig(cap=2, temperature=1.0, total=None, splits=("train",))
    kept, report = mix(positions, chunks, config, 2)

    starts = [0, 4, 6, 8]
    rows = [(c.task, c.split, c.ids[ID_SIZE * (p - starts[n]):ID_SIZE * (p - starts[n] + 1)], p)
            for p in positions for n, c in enumerate(chunks) if starts[n] <= p < starts[n] + c.rows]
    wanted = quotas([5, 2], 2, 1.0, None)
    expected = [p for t, s, _, p in rows if s == "test"]
    for task in (0, 1):
        group = sorted((i, p) for t, s, i, p in rows if t == task and s == "train")
        expected += [p for _, p in group[: wanted[task]]]
    assert kept == sorted(expected) == [1, 5, 6, 7, 8, 10]
    assert report.available == {(0, "train"): 5, (1, "train"): 2} and report.kept == {(0, "train"): 2, (1, "train"): 2}
