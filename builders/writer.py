"""Writing a corpus folder: JSONL, Parquet, card, manifest, optional HF ``save_to_disk``.

The folder is filled inside :func:`taskmill.fileio.atomic_dir` (a hidden sibling of ``DIR``
renamed into place at the end), so a failed build leaves either no ``DIR`` or the previous one
untouched. Every file is deterministic: the
Parquet shards carry no timestamps (their only metadata is the Arrow schema and the writer version).
"""

from __future__ import annotations

import hashlib
import itertools
import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa


CORPUS_JSONL = "corpus.jsonl"
PARQUET_DIR = "parquet"
# Rows go to Parquet shard k when their line starts in corpus.jsonl bytes [k * S, (k + 1) * S):
# the cut depends on the corpus alone (never on the number of workers), and shards small enough
# that any worker can take the next one keep the workers even at the end of a build.
PARQUET_SHARD_BYTES = 32 << 20
CARD = "card.md"
MANIFEST = "manifest.json"
HF_DIR = "hf_dataset"
_HASH_BLOCK = 1 << 24
MAX_SLICES = 4096  # above this many kept runs, one take() beats concatenating slices

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
# Column types of the Parquet shards, in Row schema order.
PARQUET_SCHEMA = pa.schema([
    ("id", pa.string()), ("task", pa.string()), ("dataset", pa.string()), ("split", pa.string()),
    ("row_index", pa.int64()), ("template_id", pa.string()), ("template_name", pa.string()),
    ("format", pa.string()), ("prompt", pa.string()), ("completion", pa.string()),
    ("messages", pa.list_(_MESSAGE)), ("answer_choices", pa.list_(pa.string())),
    ("target_index", pa.int64()), ("shots", pa.list_(pa.int64())), ("metrics", pa.list_(pa.string())),
    ("original_task", pa.bool_()),
])


def byte_runs(offsets: Sequence[int], kept: Sequence[int] | None) -> list[tuple[int, int]]:
    """Byte ranges ``[start, stop)`` of a chunk's kept lines, neighbours merged.

    Args:
        offsets: Byte offset of each line in the chunk's JSONL bytes, plus their length.
        kept: Kept lines (positions in the chunk, ascending), or None for all of them.
    """
    if kept is None or len(kept) == len(offsets) - 1:
        return [(0, offsets[-1])] if offsets[-1] else []
    runs: list[tuple[int, int]] = []
    for line in kept:
        start, stop = offsets[line], offsets[line + 1]
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def write_runs(path: Path, offset: int, blob: bytes | memoryview, runs: Sequence[tuple[int, int]]) -> None:
    """Write the ``runs`` of ``blob`` one after another into the existing file ``path``, from ``offset``.

    Each worker writes its chunks' kept lines at the offsets the parent fixed, so corpus.jsonl is
    assembled in parallel without its bytes passing through the parent.
    """
    view = memoryview(blob)
    fd = os.open(path, os.O_WRONLY)
    try:
        for start, stop in runs:
            piece = view[start:stop]
            while piece:
                written = os.pwrite(fd, piece, offset)
                offset += written
                piece = piece[written:]
    finally:
        os.close(fd)


class PrefixHasher:
    """sha256 of a file that is being filled out of order, hashed in a thread as its written prefix
    grows (hashlib releases the GIL), so the digest is ready soon after the last byte lands.

    Args:
        path: The file, already at its final size.
    """

    def __init__(self, path: Path) -> None:
        import queue
        import threading

        self._path = path
        self._todo: queue.Queue[int | None] = queue.Queue()
        self._digest = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="jsonl-sha256", daemon=True)
        self._thread.start()

    def written(self, stop: int) -> None:
        """Bytes ``[0, stop)`` are all written."""
        self._todo.put(stop)

    def hexdigest(self) -> str:
        """The digest once every byte is written (call after the last :meth:`written`)."""
        self._todo.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest

    def _run(self) -> None:
        h = hashlib.sha256()
        try:
            with self._path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
                try:
                    view, done = memoryview(data) if data is not None else memoryview(b""), 0
                    while (stop := self._todo.get()) is not None:
                        for start in range(done, stop, _HASH_BLOCK):
                            h.update(view[start:min(stop, start + _HASH_BLOCK)])
                        done = max(done, stop)
                    view.release()
                finally:
                    if data is not None:
                        data.close()
        except BaseException as err:  # raised to the caller by hexdigest
            self._error = err
            while self._todo.get() is not None:
                pass
        self._digest = h.hexdigest()


def spill_batch(folder: Path, number: int, batch: pa.RecordBatch) -> None:
    """Write a rendered chunk's Arrow batch to ``folder`` for the parent to read.

    Workers spill instead of piping batches back: the parent would otherwise unpickle every byte
    of the corpus on one core while the workers wait.
    """
    with pa.OSFile(str(folder / f"{number:07d}.arrow"), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as out:
        out.write_batch(batch)


def load_batch(folder: Path, number: int) -> pa.RecordBatch:
    """A spilled chunk's Arrow batch, memory-mapped (no copy: a Parquet shard copies only the rows
    it keeps). The file stays: a chunk can straddle two Parquet shards."""
    source = pa.memory_map(str(folder / f"{number:07d}.arrow"))  # stays mapped while the batch lives
    return pa.ipc.open_file(source).get_batch(0)


def string_array(texts: Sequence[str]) -> pa.StringArray:
    """``pa.array(texts, pa.string())``, built from one joined UTF-8 buffer (about 3x faster for
    long texts than converting string by string)."""
    data = "".join(texts).encode("utf-8")
    sizes = (len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts)
    small = len(data) < 2**31  # int32 offsets, as pa.string() has
    offsets = pa.array([0, *itertools.accumulate(sizes)], pa.int32() if small else pa.int64())
    kind = pa.StringArray if small else pa.LargeStringArray
    array = kind.from_buffers(len(texts), offsets.buffers()[1], pa.py_buffer(data))
    return array if small else array.cast(pa.string())


def corpus_batch(columns: dict[str, list[Any]], task: str, dataset: str,
                 templates: dict[str, tuple[str, tuple[str, ...], bool | None]]) -> pa.RecordBatch:
    """The rows of one chunk as an Arrow batch of :data:`PARQUET_SCHEMA`.

    Args:
        columns: Per-row values: id, split, row_index, template_id, format, prompt, completion,
            answer_choices, target_index, shots.
        task: Task name (same on every row).
        dataset: Dataset provenance (same on every row).
        templates: Template id -> (name, metrics, original_task).
    """
    n = len(columns["id"])
    tids = columns["template_id"]
    prompts, completions = string_array(columns["prompt"]), string_array(columns["completion"])
    contents = string_array([text for pair in zip(columns["prompt"], columns["completion"]) for text in pair])
    message = pa.StructArray.from_arrays([pa.array(["user", "assistant"] * n, pa.string()), contents],
                                         fields=list(_MESSAGE))
    messages = pa.ListArray.from_arrays(pa.array(range(0, 2 * n + 1, 2), pa.int32()), message,
                                        type=pa.list_(_MESSAGE))
    arrays = [
        pa.array(columns["id"], pa.string()), pa.array([task] * n, pa.string()), pa.array([dataset] * n, pa.string()),
        pa.array(columns["split"], pa.string()), pa.array(columns["row_index"], pa.int64()),
        pa.array(tids, pa.string()), pa.array([templates[t][0] for t in tids], pa.string()),
        pa.array(columns["format"], pa.string()), prompts, completions, messages,
        pa.array(columns["answer_choices"], pa.list_(pa.string())), pa.array(columns["target_index"], pa.int64()),
        pa.array(columns["shots"], pa.list_(pa.int64())), pa.array([templates[t][1] for t in tids], pa.list_(pa.string())),
        pa.array([templates[t][2] for t in tids], pa.bool_()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=PARQUET_SCHEMA)


@dataclass(frozen=True)
class ParquetShard:
    """One file of the corpus's Parquet shards: which rows of which chunks it holds.

    Attributes:
        name: File name inside :data:`PARQUET_DIR` (``corpus-00000-of-00004.parquet``).
        pieces: (chunk number, ``[start, stop)`` row runs in that chunk's batch), in corpus order.
        rows: Rows in the shard.
        size: Their bytes in corpus.jsonl (the cost that schedules the shards).
    """

    name: str
    pieces: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]
    rows: int
    size: int


def plan_parquet_shards(chunks: Sequence[tuple[Sequence[int], Sequence[int] | None]],
                        shard_bytes: int = PARQUET_SHARD_BYTES) -> list[ParquetShard]:
    """Cut the kept rows into Parquet shards by where their lines start in corpus.jsonl.

    Args:
        chunks: Per chunk, in corpus order: the byte offset of each of its JSONL lines plus their
            length, and its kept rows (ascending positions; None: all of them).
        shard_bytes: Bytes of corpus.jsonl per shard (a row is never split; a line longer than
            this makes a shard of its own).

    Returns:
        The shards, in corpus order (one empty shard when no row is kept, so that the folder
        always has the schema).
    """
    import numpy as np

    pieces: dict[int, list[tuple[int, tuple[tuple[int, int], ...]]]] = {}
    rows: dict[int, int] = {}
    sizes: dict[int, int] = {}
    base = 0
    for number, (offsets, kept) in enumerate(chunks):
        ends = np.asarray(offsets, dtype=np.int64)
        lines = np.diff(ends) if kept is None else np.diff(ends)[np.asarray(kept, dtype=np.int64)]
        if not len(lines):
            continue
        positions = np.arange(len(lines)) if kept is None else np.asarray(kept, dtype=np.int64)
        starts = base + np.concatenate(([0], np.cumsum(lines)[:-1]))
        shard_of = starts // shard_bytes
        cuts = np.flatnonzero(np.diff(shard_of)) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(lines)]):
            k = int(shard_of[lo])
            pieces.setdefault(k, []).append((number, tuple(_runs(positions[lo:hi].tolist()))))
            rows[k] = rows.get(k, 0) + hi - lo
            sizes[k] = sizes.get(k, 0) + int(lines[lo:hi].sum())
        base += int(lines.sum())
    order = sorted(pieces)  # a line longer than shard_bytes leaves shard numbers unused: renumber
    if not order:
        return [ParquetShard("corpus-00000-of-00001.parquet", (), 0, 0)]
    return [ParquetShard(f"corpus-{i:05d}-of-{len(order):05d}.parquet", tuple(pieces[k]), rows[k], sizes[k])
            for i, k in enumerate(order)]


def write_parquet_shard(batch: Callable[[int], pa.RecordBatch], shard: ParquetShard, path: Path) -> str:
    """Write one Parquet shard from the chunks' batches; returns its sha256.

    Parquet's bytes depend on the in-memory chunking (the writer decides dictionary-page fallback
    at chunk boundaries), so the rows are made one contiguous table first: the file is the same
    however rows were cut into work chunks, and whichever worker writes it.

    Args:
        batch: Chunk number -> its Arrow batch (from memory, or memory-mapped from a spill file).
        shard: Which rows.
        path: The file to write.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # The system allocator: Arrow's default (mimalloc) measured 4-5x slower here for these few
    # large one-shot buffers (page faults on memory it had returned to the OS).
    pool = pa.system_memory_pool()
    parts = []
    for number, runs in shard.pieces:
        table = pa.Table.from_batches([batch(number)], schema=PARQUET_SCHEMA)
        if len(runs) <= MAX_SLICES:
            parts += [table.slice(start, stop - start) for start, stop in runs]
        else:
            rows = [i for start, stop in runs for i in range(start, stop)]
            parts.append(pc.take(table, pa.array(rows, pa.int64()), memory_pool=pool))
    table = pa.concat_tables(parts) if parts else PARQUET_SCHEMA.empty_table()
    # Encoded in memory (a shard is a few MiB), then hashed and written: the file is not read back.
    sink = pa.BufferOutputStream()
    pq.write_table(table.combine_chunks(memory_pool=pool), sink, compression="zstd")
    encoded = memoryview(sink.getvalue())
    path.write_bytes(encoded)
    return hashlib.sha256(encoded).hexdigest()


def read_parquet(folder: Path) -> pa.Table:
    """A corpus folder's Parquet shards as one table, in corpus order."""
    import pyarrow.parquet as pq

    files = sorted((folder / PARQUET_DIR).glob("corpus-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else PARQUET_SCHEMA.empty_table()


def _runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal ``[start, stop)`` runs of consecutive positions."""
    runs: list[tuple[int, int]] = []
    for pos in positions:
        if runs and runs[-1][1] == pos:
            runs[-1] = (runs[-1][0], pos + 1)
        else:
            runs.append((pos, pos + 1))
    return runs


def save_to_disk(corpus: Path, folder: Path, fingerprint: str) -> None:
    """The corpus (its Parquet shards in ``corpus``) as an HF ``datasets`` folder
    (``Dataset.load_from_disk`` reads it).

    The fingerprint is fixed (the corpus hash) so the folder does not vary between runs.
    """
    import datasets

    datasets.disable_progress_bars()
    dataset = datasets.Dataset(read_parquet(corpus).combine_chunks(), fingerprint=fingerprint[:16])
    dataset.save_to_disk(str(folder))
