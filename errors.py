"""Errors that reach the user as one clear line and exit code 2."""

from __future__ import annotations


class TaskmillError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message names where the problem is (file, task, template, row) and what was expected.

    Args:
        message: What is wrong and what was expected.
        file: The file involved, if any.
        task: The collection task involved, if any.
        template: The template name or id involved, if any.
        row: The row (split and index, or line number) involved, if any.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        task: str | None = None,
        template: str | None = None,
        row: str | int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.task = task
        self.template = template
        self.row = row
        super().__init__(self.line())

    def line(self) -> str:
        """The one-line report: ``file: task 'x': template 'y': row z: message``."""
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.task:
            parts.append(f"task '{self.task}'")
        if self.template:
            parts.append(f"template '{self.template}'")
        if self.row is not None:
            parts.append(f"row {self.row}")
        parts.append(" ".join(self.message.split()))
        return ": ".join(parts)


class ConfigError(TaskmillError):
    """A config or collection file failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str], *, file: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems), file=file)


class TemplateError(TaskmillError):
    """A template failed to parse or render."""


class DataError(TaskmillError):
    """A dataset, split or row is missing or malformed."""
