"""The hot-path encoders agree with their plain definitions."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from taskmill.builders import keys
from taskmill.builders.build import build_collection
from taskmill.builders.lines import LineEncoder
from taskmill.records import Row

TEXTS = ["plain", "", "quote \" backslash \\ slash /", "tab\tnewline\n\r\x00\x1f\x7f", "é ü 中文 😀 \u2028\u2029",
         "|||", "{{ not jinja }}"]


def test_line_encoder_matches_json_dumps_of_row() -> None:
    for i, (prompt, completion, task) in enumerate(itertools.product(TEXTS, TEXTS[:4], ["t", "ta\"sk é"])):
        choices = None if i % 3 == 0 else (completion, prompt, "c")
        row = Row(id=f"{i:016x}", task=task, dataset="owner/set/conf", split=["train", "validation ü"][i % 2],
                  row_index=i, template_id=f"id-{i % 5}\"", template_name=TEXTS[i % len(TEXTS)],
                  format=["zero_shot", "few_shot", "cot"][i % 3], prompt=prompt, completion=completion,
                  messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}),
                  answer_choices=choices, target_index=None if i % 4 == 0 else i % 3, shots=tuple(range(i % 3)),
                  metrics=("Accuracy", "ROUGE")[: i % 3], original_task=[None, True, False][i % 3])
        encoder = LineEncoder(row.task, row.dataset)
        encoder.template(row.template_id, row.template_name, row.metrics, row.original_task)
        line = encoder.line(row.id, row.split, row.row_index, row.template_id, row.format, row.prompt, row.completion,
                            row.answer_choices, row.target_index, row.shots)
        assert line == json.dumps(row.to_json(), ensure_ascii=False)
        assert Row.from_json(json.loads(line)) == row


def test_split_keys_match_row_digest() -> None:
    for seed, task, split, idx, tid in [(0, "sst2", "train", 5, "abc"), (7, "t é\"", "val", 0, "x\"y"), (-3, "", "", 99, "")]:
        assert keys.SplitKeys(seed, task, split).row(idx, tid) == keys.row_digest(seed, task, split, idx, tid)
        assert keys.row_digest(seed, task, split, idx, tid) == keys.digest(seed, task, split, idx, tid)


def test_draws_are_stable_and_in_range() -> None:
    digest = keys.row_digest(0, "t", "train", 1, "a")
    first = list(itertools.islice(keys.draws(digest, 7), 50))
    assert first == list(itertools.islice(keys.draws(digest, 7), 50))
    assert all(0 <= j < 7 for j in first) and len(set(first)) == 7


def test_text_key_is_unambiguous() -> None:
    assert keys.text_key("a", "bc", "") != keys.text_key("a", "b", "c")
    assert keys.text_key("train", "p", "c") == keys.text_key("train", "p", "c")


def test_corpus_lines_parse_back_to_rows(project: Path, cache_dir: Path, tmp_path: Path) -> None:
    build_collection(project / "collection.yaml", tmp_path / "out", progress=False, cache_dir=cache_dir)
    for line in (tmp_path / "out" / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        obj: dict[str, Any] = json.loads(line)
        assert json.dumps(Row.from_json(obj).to_json(), ensure_ascii=False) == line


def _batches(n: int, size: int, prompts: list[str]) -> list[Any]:
    from taskmill.builders.writer import corpus_batch

    info = {"t": ("name", ("Accuracy",), True)}
    out = []
    for lo in range(0, n, size):
        ix = range(lo, min(lo + size, n))
        out.append(corpus_batch({"id": [f"{i:016x}" for i in ix], "split": ["train"] * len(ix), "row_index": list(ix),
                                 "template_id": ["t"] * len(ix), "format": ["zero_shot"] * len(ix),
                                 "prompt": [prompts[i] for i in ix], "completion": ["c"] * len(ix),
                                 "answer_choices": [None] * len(ix), "target_index": [None] * len(ix),
                                 "shots": [()] * len(ix)}, "task", "ds", info))
    return out


def _chunk_lines(batches: list[Any], keep: set[int]) -> list[tuple[list[int], list[int] | None]]:
    """Per batch: fake JSONL line offsets (a line's length grows with its prompt) and kept rows."""
    out, start = [], 0
    for batch in batches:
        sizes = [len(p) + 40 for p in batch.column("prompt").to_pylist()]
        offsets = [0, *itertools.accumulate(sizes)]
        rows = [i for i in range(batch.num_rows) if start + i in keep]
        out.append((offsets, None if len(rows) == batch.num_rows else rows))
        start += batch.num_rows
    return out


def test_parquet_shards_do_not_depend_on_chunking(tmp_path: Path) -> None:
    import hashlib as hl

    import pyarrow.parquet as pq

    from taskmill.builders.writer import plan_parquet_shards, write_parquet_shard

    n = 12_000  # ~2.6 MB of distinct prompts: past Parquet's 1 MiB dictionary page limit
    prompts = [hl.sha256(str(i).encode()).hexdigest() * 3 for i in range(n)]
    keep = {i for i in range(n) if i % 7}
    digests: set[tuple[str, ...]] = set()
    for size in (n, 1000, 333):
        batches = _batches(n, size, prompts)
        parts = plan_parquet_shards(_chunk_lines(batches, keep), shard_bytes=600_000)
        folder = tmp_path / str(size)
        folder.mkdir()
        # Written in reverse order, as workers taking shards as they come free may.
        digests.add(tuple(write_parquet_shard(batches.__getitem__, part, folder / part.name) for part in parts[::-1]))
        assert [p.name for p in parts] == [f"corpus-{i:05d}-of-00004.parquet" for i in range(4)]
        rows = [r for p in sorted(folder.iterdir()) for r in pq.read_table(p).column("row_index").to_pylist()]
        assert rows == sorted(keep)
    assert len(digests) == 1


def test_parquet_shards_cut_by_where_lines_start() -> None:
    from taskmill.builders.writer import plan_parquet_shards

    # Two chunks of lines 4, 4, 4 and 10, 1 bytes; the second drops its first line.
    chunks = [([0, 4, 8, 12], None), ([0, 10, 11], [1])]
    parts = plan_parquet_shards(chunks, shard_bytes=8)
    # Kept lines start at 0, 4, 8, 12 in corpus.jsonl: shards [0, 8) and [8, 16).
    assert [(p.pieces, p.rows, p.size) for p in parts] == [
        (((0, ((0, 2),)),), 2, 8), (((0, ((2, 3),)), (1, ((1, 2),))), 2, 5)]
    long_line = plan_parquet_shards([([0, 30, 31], None)], shard_bytes=8)  # 30 bytes: one shard, next renumbered
    assert [p.name for p in long_line] == ["corpus-00000-of-00002.parquet", "corpus-00001-of-00002.parquet"]
    assert [p.rows for p in plan_parquet_shards([([0], None)], shard_bytes=8)] == [0]  # nothing kept: one empty shard


def test_kept_runs_written_at_their_offsets_in_any_order_make_exactly_the_kept_lines(tmp_path: Path) -> None:
    import hashlib as hl
    import itertools
    import random

    from taskmill.builders.writer import byte_runs, write_runs
    from taskmill.fileio import sha256_file

    rng = random.Random(0)
    lines = [f'{{"n": {i}, "t": "{"é" * rng.randrange(5)}"}}'.encode() for i in range(300)]
    chunks, i = [], 0
    for size in (1, 0, 7, 50, 3, 100, 139):
        part = lines[i:i + size]
        offsets = [0, *itertools.accumulate(len(line) + 1 for line in part)]
        chunks.append((i, b"".join(line + b"\n" for line in part), offsets))
        i += size
    for keep in (list(range(300)), sorted(rng.sample(range(300), 120)), list(range(5, 200)), [], [299]):
        kept = set(keep)
        runs = [byte_runs(offsets, None if len(keep) == 300 else [j for j in range(len(offsets) - 1) if start + j in kept])
                for start, _, offsets in chunks]
        starts = list(itertools.accumulate((sum(b - a for a, b in r) for r in runs), initial=0))
        path = tmp_path / "x.jsonl"
        with path.open("wb") as fh:
            fh.truncate(starts[-1])
        for n in rng.sample(range(len(chunks)), len(chunks)):  # workers finish in any order
            write_runs(path, starts[n], chunks[n][1], runs[n])
        expected = b"".join(lines[p] + b"\n" for p in keep)
        assert path.read_bytes() == expected
        assert sha256_file(path) == hl.sha256(expected).hexdigest()


def test_prefix_hasher_equals_sha256_of_the_file_filled_in_any_order(tmp_path: Path) -> None:
    import hashlib as hl
    import random

    from taskmill.builders.writer import PrefixHasher

    rng = random.Random(3)
    data = bytes(rng.randrange(256) for _ in range(300_000))
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0" * len(data))  # at its final size, as the build truncates it
    cuts = sorted(rng.sample(range(1, len(data)), 20))
    pieces = list(zip([0, *cuts], [*cuts, len(data)]))
    hasher = PrefixHasher(path)
    done, frontier = [False] * len(pieces), 0
    for k in rng.sample(range(len(pieces)), len(pieces)):  # pieces land out of order
        start, stop = pieces[k]
        with path.open("r+b") as fh:
            fh.seek(start)
            fh.write(data[start:stop])
        done[k] = True
        while frontier < len(pieces) and done[frontier]:
            frontier += 1
        hasher.written(pieces[frontier - 1][1] if frontier else 0)
    assert hasher.hexdigest() == hl.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert PrefixHasher(empty).hexdigest() == hl.sha256(b"").hexdigest()
