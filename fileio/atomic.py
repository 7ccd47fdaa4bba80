"""Atomic files and folders: write under a temp name beside the target, then rename.

Temp names are ``.<name>.<host>-<pid>.<random>.tmp``: hidden, in the target's own folder (so the
rename never crosses a file system), and carrying the writer's host and pid so that
:func:`taskmill.fileio.outdir.sweep_stale` can remove exactly the leftovers of processes that died
(SIGKILL runs no cleanup) and never those of a writer still at work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
TEMP_SUFFIX = ".tmp"


def host_tag() -> str:
    # Dots would make the name ambiguous to parse; hosts rarely need them to stay distinct.
    return socket.gethostname().split(".")[0].replace("-", "_") or "host"


def temp_path(target: Path) -> Path:
    """A fresh temp name beside ``target``, tagged with this host and process."""
    token = secrets.token_hex(4)
    return target.with_name(f".{target.name}.{host_tag()}-{os.getpid()}.{token}{TEMP_SUFFIX}")


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` on a temp path beside ``path``, then rename it onto ``path``.

    Args:
        path: The file to (re)place; its folder is created.
        write: Writes the whole content to the path it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 with ``\\n`` line ends, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int = 2, sort_keys: bool = False) -> None:
    """Write ``obj`` as indented JSON (UTF-8 kept, trailing newline), atomically."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write one compact JSON object per line (UTF-8 kept), atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    write_atomic(path, write)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap the finished folder ``tmp`` into ``final``; the old ``final`` is moved aside, then deleted.

    If the swap fails the old folder is put back, so ``final`` is always either old or new.
    """
    old = None
    if final.exists():
        old = temp_path(final)
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, marker: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temp folder beside ``out`` that replaces ``out`` only if the block succeeds.

    Args:
        out: The folder to (re)place. Claim it first (:func:`taskmill.fileio.claim_output`):
            this function replaces whatever is there.
        marker: Called with the finished temp folder just before the swap (writes the
            output-folder marker listing what the folder holds).

    Yields:
        The temp folder to fill.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    tmp.mkdir()
    try:
        yield tmp
        if marker is not None:
            marker(tmp)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
