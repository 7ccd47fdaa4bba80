"""The output-folder guard (taskmill.fileio.outdir) on its own: ownership, forbidden places, temps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmill.fileio import MARKER, atomic_dir, claim_output, temp_path
from taskmill.fileio.outdir import OutputFolderError, sweep_stale


def _replace(out: Path, files: dict[str, str], command: str = "build", **kw) -> None:
    target = claim_output(out, command, **kw)
    with atomic_dir(out, marker=target.write_marker) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_new_folder_is_created_with_a_marker_listing_its_entries(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    _replace(out, {"x.txt": "1", "y.txt": "2"})
    marker = json.loads((out / MARKER).read_text())
    assert marker == {"schema": "taskmill.output/1", "command": "build", "entries": ["x.txt", "y.txt"]}
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "x.txt", "y.txt"])
    assert [p.name for p in tmp_path.joinpath("a").iterdir()] == ["b"]  # no temp left beside it


def test_own_output_is_replaced_but_a_foreign_file_or_another_command_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _replace(out, {"x.txt": "1"})
    _replace(out, {"x.txt": "2"})
    assert (out / "x.txt").read_text() == "2"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"did not write \(notes.txt\).*--overwrite"):
        _replace(out, {"x.txt": "3"})
    assert (out / "notes.txt").read_text() == "mine" and (out / "x.txt").read_text() == "2"
    (out / "notes.txt").unlink()
    with pytest.raises(OutputFolderError, match="output of taskmill build, not of taskmill report"):
        _replace(out, {"x.txt": "3"}, command="report")
    _replace(out, {"x.txt": "3"}, command="report", overwrite=True)
    assert json.loads((out / MARKER).read_text())["command"] == "report"


def test_unmarked_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.jsonl").write_text("{}\n")
    with pytest.raises(OutputFolderError) as err:
        claim_output(out, "build")
    assert str(out) in err.value.line() and "--overwrite" in err.value.line() and f"no {MARKER}" in err.value.line()
    _replace(out, {"x.txt": "1"}, overwrite=True)
    assert not (out / "keep.jsonl").exists()


def test_empty_existing_folder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _replace(tmp_path / "empty", {"x.txt": "1"})
    assert (tmp_path / "empty" / "x.txt").is_file()


@pytest.mark.parametrize("where", ["cwd", "cwd_parent", "home", "root", "input", "input_parent"])
def test_forbidden_places_are_refused_even_with_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    (work / "data").mkdir(parents=True)
    home.mkdir()
    (work / "data" / "train.jsonl").write_text("{}\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    out = {"cwd": Path("."), "cwd_parent": tmp_path, "home": home, "root": Path("/"),
           "input": work / "data" / "train.jsonl", "input_parent": work / "data"}[where]
    with pytest.raises(OutputFolderError, match="refusing to use this as an output folder"):
        claim_output(out, "build", inputs=[work / "data" / "train.jsonl"], overwrite=True)
    assert (work / "data" / "train.jsonl").read_text() == "{}\n"


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError, match="not a folder"):
        claim_output(tmp_path / "f", "build", overwrite=True)


def test_unwritable_place_fails_at_claim_time(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError, match="cannot write the output folder"):
        claim_output(tmp_path / "f" / "sub", "build")  # a file as a parent: nothing can be created
    with pytest.raises(OutputFolderError, match="cannot write the output folder"):
        claim_output("/proc/taskmill-out", "eval", mode="update")  # /proc takes no files, not even from root


def test_update_mode_creates_nothing_until_ensure_then_marks(tmp_path: Path) -> None:
    out = tmp_path / "run"
    target = claim_output(out, "eval", mode="update")
    assert not out.exists()
    target.ensure()
    (out / "results.json").write_text("{}")
    assert json.loads((out / MARKER).read_text())["command"] == "eval"
    claim_output(out, "eval", mode="update")  # own folder with its files: resumed, not refused
    with pytest.raises(OutputFolderError, match="not of taskmill train"):
        claim_output(out, "train", mode="update")


def test_stale_temps_of_dead_processes_are_swept_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = temp_path(out).name.replace(f"-{os.getpid()}.", f"-{_dead_pid()}.")
    (tmp_path / dead).mkdir()
    (tmp_path / dead / "corpus.jsonl").write_text("half")
    live = temp_path(out)
    live.mkdir()
    other = tmp_path / ".other.tmp"
    other.mkdir()
    _replace(out, {"x.txt": "1"})
    assert not (tmp_path / dead).exists()
    assert live.exists() and other.exists()
    inner_dead = out / temp_path(out / "cache.jsonl").name.replace(f"-{os.getpid()}.", f"-{_dead_pid()}.")
    inner_dead.write_text("x")
    assert sweep_stale(out) == [inner_dead]


_KILLED = """
import os, signal, sys
from pathlib import Path
from taskmill.fileio import atomic_dir
with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "corpus.jsonl").write_text("half written")
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
"""


def _run_killed(out: Path, sig: str) -> int:
    code = _KILLED
    if sig == "SIGTERM":  # as the CLI does for every command
        code = "import signal\nfrom taskmill.cli import _terminate\nsignal.signal(signal.SIGTERM, _terminate)\n" + code
    return subprocess.run([sys.executable, "-c", code, str(out), sig], timeout=120).returncode


def test_sigterm_leaves_no_temp_and_sigkill_leftovers_are_cleaned_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    assert _run_killed(out, "SIGTERM") == 143
    assert list(tmp_path.iterdir()) == []  # the handler turned SIGTERM into cleanup
    assert _run_killed(out, "SIGKILL") == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".corpus.") and not out.exists()
    _replace(out, {"x.txt": "1"})
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]
