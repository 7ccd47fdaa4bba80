"""The ``taskmill`` command line: thin wrappers that parse arguments and call one function each.

Heavy libraries (torch, datasets, sentence-transformers) are imported inside the functions called,
so ``taskmill --help`` starts fast and works without them. Every :class:`TaskmillError` becomes one
line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from taskmill.errors import TaskmillError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    help="Instruction-tuning corpora, task clusters, SFT/LoRA training and leave-one-cluster-out evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
templates_app = typer.Typer(help="Lint, show and convert prompt templates.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


def user_errors(func: F) -> F:
    """Turn a :class:`TaskmillError` into one line on stderr and its exit code (2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TaskmillError as err:
            typer.echo(f"taskmill: error: {err.line()}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


# --- templates ------------------------------------------------------------------------------------


# --- builders -------------------------------------------------------------------------------------


# --- clusters -------------------------------------------------------------------------------------


# --- trainer --------------------------------------------------------------------------------------


# --- eval -----------------------------------------------------------------------------------------


def main() -> None:
    """Entry point for ``python -m taskmill``."""
    app()


if __name__ == "__main__":
    main()
