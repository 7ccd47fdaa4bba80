"""Fixtures for the builder tests: the tiny assets, a private datasets cache, a CLI runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

ASSETS = Path(__file__).resolve().parent / "assets"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the assets folder (tests edit their own copy)."""
    dest = tmp_path / "project"
    shutil.copytree(ASSETS, dest)
    return dest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The datasets cache, moved out of the user's home for the tests."""
    return tmp_path_factory.mktemp("hf_datasets_cache")


def _read_rows(folder: Path) -> list[dict[str, Any]]:
    with (folder / "corpus.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture()
def read_rows() -> Any:
    """Function: the rows of DIR/corpus.jsonl."""
    return _read_rows


def _run_cli(args: list[str]) -> Any:
    from taskmill.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture()
def cli() -> Any:
    """Function: run ``taskmill ARGS`` in-process; returns click's Result (stdout, stderr, exit_code)."""
    return _run_cli
