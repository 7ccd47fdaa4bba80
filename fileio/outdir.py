"""The output-folder guard every writing command goes through before it does any work.

Rules (README, "Bad input"):

- a folder that does not exist is created;
- an existing folder is written to only when it is empty, or when its marker file
  (:data:`MARKER`) says it is this command's own earlier output; a folder that is *replaced*
  whole (``replace`` mode: build, cluster run, folds, report, ...) must moreover hold nothing but
  what the marker lists. Anything else is refused with one line naming the folder and
  ``--overwrite``, which forces it;
- never, not even with ``--overwrite``: the current directory, the home directory, the file-system
  root, or a folder that equals or contains one of them or one of the command's input paths;
- writability is checked here, before the work, not after it;
- temp files and folders that killed runs left in or beside the folder are removed.

``update`` mode is for commands that resume inside their folder (train, eval, loco, run): they never
delete the folder, so only its ownership is checked, and the marker is written as soon as the
folder is claimed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from taskmill.errors import TaskmillError
from taskmill.fileio.atomic import TEMP_SUFFIX, host_tag, temp_path, write_json

MARKER = ".taskmill-output.json"
SCHEMA = "taskmill.output/1"
Mode = Literal["replace", "update"]
# .<name>.<host>-<pid>.<8 hex>.tmp, as written by taskmill.fileio.atomic.temp_path
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.\-]+)-(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")


class OutputFolderError(TaskmillError):
    """An output folder that the command must not write to."""


@dataclass(frozen=True)
class OutputFolder:
    """A claimed output folder.

    Attributes:
        path: The folder (absolute).
        command: The command that owns it (``build``, ``eval``, ...).
        mode: ``replace`` (written whole through :meth:`write_marker` and ``atomic_dir``) or
            ``update`` (resumed in place).
    """

    path: Path
    command: str
    mode: Mode

    def ensure(self) -> Path:
        """Create the folder and its marker (``update`` mode: call right before the first write,
        so that a command failing on bad input leaves no folder behind). Returns the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        if (read_marker(self.path) or {}).get("command") != self.command:
            self.write_marker()
        return self.path

    def write_marker(self, folder: Path | None = None) -> None:
        """Write the marker into ``folder`` (default: the claimed folder), listing its entries."""
        folder = self.path if folder is None else folder
        entries = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
        write_json(folder / MARKER, {"schema": SCHEMA, "command": self.command, "entries": entries})


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder``, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def _forbidden(out: Path, inputs: Iterable[str | Path]) -> str | None:
    """Why ``out`` may never be an output folder, or None."""
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if out.parent == out:
        return "it is the file-system root"
    if _is_within(cwd, out):
        return "it is or contains the current directory"
    if _is_within(home, out):
        return "it is or contains the home directory"
    for item in inputs:
        path = Path(item).expanduser().resolve()
        if path.exists() and _is_within(path, out):  # a hub id or absent file cannot be clobbered
            return f"it is or contains the input {item}"
    return None


def _ownership_problem(out: Path, command: str, mode: Mode) -> str | None:
    """Why an existing, non-empty ``out`` is not this command's to write, or None."""
    marker = read_marker(out)
    if marker is None:
        return f"it exists, is not empty and is not taskmill {command}'s output (no {MARKER})"
    if marker.get("command") != command:
        return f"it is the output of taskmill {marker.get('command')}, not of taskmill {command}"
    if mode == "replace":
        listed = set(marker.get("entries") or ())
        foreign = sorted(p.name for p in out.iterdir() if p.name != MARKER and p.name not in listed
                         and not _TEMP.match(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            return f"it holds files taskmill {command} did not write ({shown}), which replacing it would delete"
    return None


def _check_writable(folder: Path, out: Path) -> None:
    """Create and remove a temp file in ``folder`` (or its nearest existing ancestor, so nothing is
    created yet) so that a read-only place fails now, not after the work."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        probe = temp_path(folder / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputFolderError(f"cannot write the output folder: {err.strerror or err}", file=str(out)) from None


def _alive(host: str, pid: int) -> bool:
    if host != host_tag():
        return True  # another machine's writer: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: Path, *, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Remove temp files and folders in ``folder`` left by dead processes of this host.

    Args:
        folder: Where to look.
        name: Only temps of this target name (the siblings of one output folder).
        recursive: Also look in every sub-folder (a resumable run's own folder).

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        for entry in dirs + files:
            m = _TEMP.match(entry)
            if m is None or (name is not None and m["name"] != name) or _alive(m["host"], int(m["pid"])):
                continue
            path = Path(root) / entry
            if entry in dirs:
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(entry)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        if not recursive:
            break
    return removed


def claim_output(out: str | Path, command: str, *, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                 mode: Mode = "replace") -> OutputFolder:
    """Check that ``command`` may write ``out`` and prepare it; call before any work.

    Args:
        out: The output folder.
        command: The command's name, as recorded in the marker (``build``, ``cluster run``, ...).
        inputs: Paths the command reads; the output may not equal or contain any of them.
        overwrite: Write even into a folder that is not this command's output (``--overwrite``).
        mode: ``replace`` for commands that swap in a whole new folder, ``update`` for those that
            resume inside it.

    Returns:
        The claimed folder (not created yet: ``atomic_dir`` creates a ``replace`` folder, and
        :meth:`OutputFolder.ensure` an ``update`` one).

    Raises:
        OutputFolderError: One line naming the folder, why, and ``--overwrite`` where it helps.
    """
    given = Path(out).expanduser()
    path = given.resolve()
    why = _forbidden(path, inputs)
    if why is not None:
        raise OutputFolderError(f"refusing to use this as an output folder: {why}; choose another --out",
                                file=str(given))
    if path.exists() and not path.is_dir():
        raise OutputFolderError("the output path exists and is not a folder; expected a folder", file=str(given))
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        why = _ownership_problem(path, command, mode)
        if why is not None:
            raise OutputFolderError(f"refusing to write here: {why}; choose a new folder or pass --overwrite",
                                    file=str(given))
    claimed = OutputFolder(path, command, mode)
    if mode == "replace":
        _check_writable(path.parent, given)
        sweep_stale(path.parent, name=path.name)
    else:
        _check_writable(path, given)
        if path.is_dir():
            sweep_stale(path, recursive=True)
    return claimed
