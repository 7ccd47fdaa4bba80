"""Hand-written instructions as a source: plain JSONL or YAML files of instruction/input/output.

```yaml
# instructions.yaml (or one JSON object per line in a .jsonl file)
- instruction: Rewrite the sentence in the passive voice.
  input: The cat chased the mouse.      # optional
  output: The mouse was chased by the cat.
```

A YAML file holds a list of such mappings (or a mapping with an ``instructions`` list). Extra keys
(``id``, ``provenance``, ...) are allowed and ignored. In a collection::

    - name: my_instructions
      instructions: data/instructions.yaml   # the file is the task's one split (default `train`)
      templates: my_templates.yaml           # optional; default: the built-in template below

The built-in template (``handwritten.yaml`` beside this module) renders the prompt as the
instruction, then a blank line and the input when there is one; the completion is the output
(metric ROUGE). Rows then flow through the same formats, caps, dedup and mixing as any dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskmill.errors import DataError, TaskmillError

INSTRUCTION_EXTENSIONS = (".jsonl", ".json", ".yaml", ".yml")
_NOT_FOUND = "instruction file not found"
_NO_RECORDS = "no instructions (expected at least one)"


def builtin_templates() -> Path:
    """The template file used when a hand-written task names none."""
    return Path(__file__).resolve().parent / "handwritten.yaml"


def _records(path: Path) -> list[Any]:
    from taskmill.fileio import read_text, utf8_problem

    if path.suffix.lower() not in (".yaml", ".yml"):
        from taskmill.fileio import read_jsonl

        # Records are checked afterwards by _problem, which says what each one lacks.
        try:
            return read_jsonl(path, lambda record: True, "", missing=_NOT_FOUND, empty=_NO_RECORDS)
        except UnicodeDecodeError:
            raise DataError(utf8_problem(path) or "not valid UTF-8", file=str(path)) from None
    import yaml

    try:
        text = read_text(path, missing=_NOT_FOUND)
    except TaskmillError as err:  # a DataError, so load_handwritten names the task
        raise DataError(err.message, file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DataError(f"not valid YAML: {' '.join(str(err).split())}", file=str(path)) from None
    data = data.get("instructions") if isinstance(data, dict) else data
    if not isinstance(data, list):
        raise DataError("expected a list of {instruction, input, output} (or a mapping with 'instructions')", file=str(path))
    return data


def _problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "expected a mapping with instruction, input, output"
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            return f"'{key}' must be a non-empty string"
    if record.get("input") is not None and not isinstance(record["input"], str):
        return "'input' must be a string when given"
    return None


def read_instructions(path: str | Path) -> list[dict[str, str]]:
    """Validated rows ``{instruction, input, output}`` (input ``""`` when absent), in file order.

    Raises:
        DataError: unreadable file, or a record without a non-empty instruction and output
            (the first bad record is named: its line in JSONL, its position in YAML).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(_NOT_FOUND, file=str(path))
    records = _records(path)
    jsonl = path.suffix.lower() not in (".yaml", ".yml")
    for i, record in enumerate(records):
        problem = _problem(record)
        if problem:
            where = f"record {i + 1}" if not jsonl else f"record {i + 1} (non-empty lines)"
            raise DataError(problem, file=str(path), row=where)
    if not records:
        raise DataError(_NO_RECORDS, file=str(path))
    return [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in records]


def load_handwritten(task: Any, collection: Any) -> Any:
    """The task's one split from its instruction file (a :class:`~taskmill.builders.sources.SourceData`)."""
    from taskmill.builders.sources import SourceData

    path = collection.resolve(task.instructions)
    try:
        rows = read_instructions(path)
    except DataError as err:
        err.task = err.task or task.name
        raise
    return SourceData({task.splits[0]: rows}, "handwritten")


def instruction_source(raw: dict[str, Any], root: Path, where: str, problems: list[str]) -> dict[str, Any]:
    """The source keys of a collection task with ``instructions:`` (appends config problems)."""
    path = raw["instructions"]
    ok = isinstance(path, str) and bool(path)
    if not ok:
        problems.append(f"{where}instructions must be the path of a JSONL or YAML file")
    elif Path(path).suffix.lower() not in INSTRUCTION_EXTENSIONS:
        problems.append(f"{where}instructions file '{path}': unknown extension (expected {list(INSTRUCTION_EXTENSIONS)})")
    elif not (root / path).is_file():
        problems.append(f"{where}instructions file not found: {root / path}")
    for key in ("data_files", "sni", "subset"):
        if key in raw:
            problems.append(f"{where}'{key}' does not apply to a hand-written instructions task")
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), str) else f"handwritten/{Path(str(path)).stem}"
    return {"dataset": dataset, "hf_id": dataset, "subset": None, "data_files": None, "sni": None,
            "instructions": path if ok else None}
