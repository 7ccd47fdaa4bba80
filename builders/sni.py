"""Super-NaturalInstructions task files as a source, in SNI's own instruction format.

A task file holds ``Definition`` (a list with one string), ``Positive Examples`` and ``Negative
Examples`` (``input``, ``output``, ``explanation``) and ``Instances`` (``id``, ``input``, ``output``:
a list of acceptable outputs). Each instance becomes one row per format:

* ``zero_shot``: the definition and the instance;
* ``few_shot``: the definition, the first ``shots`` positive examples (and ``negative_examples``
  negative ones), then the instance.

The prompt reads (each text stripped and closed with a period when it ends without punctuation)::

    Definition: <definition>

     Positive Example 1 -
    Input: <input>
     Output: <output>

    Now complete the following example -
    Input: <instance input>
    Output:

SNI leaves one space after the final ``Output:``; taskmill strips it, like every rendered prompt,
so the joiner (chat template or ``"\\n"``) decides the separator. The completion is the first
listed output. Options and chain-of-thought formats do not apply and are counted as skipped.
"""

from __future__ import annotations

import json
import string
from typing import Any

from taskmill.builders import keys
from taskmill.builders.collection import Collection, TaskConfig
from taskmill.builders.lines import LineEncoder
from taskmill.builders.render import Chunk, ChunkResult, TaskPlan
from taskmill.builders.sources import SourceData
from taskmill.errors import DataError, TaskmillError

SNI_METRICS = ("ROUGE", "Exact Match")
SKIP_NOT_SNI = "format does not apply to an SNI task"
SKIP_EMPTY_OUTPUT = "instance has no non-empty output"


def _closed(text: str) -> str:
    """Stripped text ending with punctuation (a period is added when it has none)."""
    text = text.strip()
    return text if text and text[-1] in string.punctuation else text + "."


def _example(kind: str, number: int, example: dict[str, Any]) -> str:
    return f" {kind} Example {number} -\nInput: {_closed(example['input'])}\n Output: {_closed(example['output'])}\n\n"


def sni_prefix(task: dict[str, Any], positives: int, negatives: int) -> str:
    """The definition and the first ``positives``/``negatives`` examples: the same before every instance."""
    parts = [f"Definition: {_closed(task['Definition'][0])}\n\n"]
    parts += [_example("Positive", i + 1, ex) for i, ex in enumerate(task["Positive Examples"][:positives])]
    parts += [_example("Negative", i + 1, ex) for i, ex in enumerate(task["Negative Examples"][:negatives])]
    return "".join(parts)


def _instance(instance_input: str) -> str:
    return f"Now complete the following example -\nInput: {_closed(instance_input)}\nOutput:"


def sni_prompt(task: dict[str, Any], instance_input: str, positives: int, negatives: int) -> str:
    """The SNI prompt for one instance with the first ``positives``/``negatives`` examples."""
    return sni_prefix(task, positives, negatives) + _instance(instance_input)


def _bad_instance(data: Any) -> str | None:
    """``Instances[i]`` of the first instance that is not an {id, input, output: [...]} object."""
    instances = data.get("Instances") if isinstance(data, dict) else None
    for i, instance in enumerate(instances if isinstance(instances, list) else ()):
        if not (isinstance(instance, dict) and isinstance(instance.get("input"), str)
                and isinstance(instance.get("output"), list)):
            return f"Instances[{i}]"
    return None


def _validate(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["expected a JSON object with Definition, Positive Examples, Instances"]
    problems = []
    definition = data.get("Definition")
    if not isinstance(definition, list) or not definition or not isinstance(definition[0], str):
        problems.append("'Definition' must be a list with one string")
    for key in ("Positive Examples", "Negative Examples"):
        examples = data.get(key, [])
        if not isinstance(examples, list) or not all(
            isinstance(e, dict) and isinstance(e.get("input"), str) and isinstance(e.get("output"), str)
            for e in examples
        ):
            problems.append(f"'{key}' must be a list of {{input, output}} objects")
    instances = data.get("Instances")
    if not isinstance(instances, list) or not all(
        isinstance(i, dict) and isinstance(i.get("input"), str) and isinstance(i.get("output"), list)
        for i in instances
    ):
        problems.append("'Instances' must be a list of {id, input, output: [...]} objects")
    return problems


def load_sni(task: TaskConfig, collection: Collection) -> SourceData:
    """Read an SNI task file; its Instances become the task's one split.

    Raises:
        DataError: The file is not valid JSON, lacks SNI keys, or has no instances.
    """
    assert task.sni is not None
    path = collection.resolve(task.sni)
    from taskmill.fileio import read_text

    try:
        data = json.loads(read_text(path))
    except TaskmillError as err:
        err.task = task.name
        raise
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg}, column {err.colno})", file=str(path), task=task.name,
                        row=f"line {err.lineno}") from None
    problems = _validate(data)
    if problems:
        raise DataError("not an SNI task file: " + "; ".join(problems), file=str(path), task=task.name,
                        row=_bad_instance(data))
    data.setdefault("Negative Examples", [])
    if not data["Instances"]:
        raise DataError(f"split '{task.splits[0]}' is empty (0 Instances); expected at least one",
                        file=str(path), task=task.name)
    rows = [{"id": str(i.get("id", "")), "input": i["input"], "output": list(i["output"])} for i in data["Instances"]]
    return SourceData({task.splits[0]: rows}, "sni", extra=data)


class SniRenderer:
    """Renders SNI instances (same chunk interface as the template renderer)."""

    def __init__(self, plan: TaskPlan) -> None:
        self.plan = plan
        self.task = plan.config
        self.sni = plan.data.extra or {}
        self.lines = LineEncoder(self.task.name, self.task.dataset)
        self._info: dict[str, tuple[str, tuple[str, ...], bool | None]] = {}
        self._prefix: dict[str, str] = {}  # template id -> definition and examples, built once

    def _shape(self, fmt: str) -> tuple[int, int] | None:
        """(positives, negatives) shown in a format, or None when the format does not apply."""
        if fmt == "zero_shot":
            return 0, 0
        if fmt == "few_shot":
            return self.task.shots, self.task.negative_examples
        return None

    def render_chunk(self, chunk: Chunk) -> ChunkResult:
        """Render positions ``lo:hi`` of the instances in every format."""
        out = ChunkResult()
        rows = self.plan.data.splits[chunk.split]
        for idx in self.plan.selected[chunk.split][chunk.lo:chunk.hi]:
            for fmt in self.task.formats:
                self._row(fmt, chunk.split, idx, rows[idx], out)
        return out.finish(self.task.name, self.task.dataset, self._info)

    def _row(self, fmt: str, split: str, idx: int, row: dict[str, Any], out: ChunkResult) -> None:
        shape = self._shape(fmt)
        template_id = f"sni-pos{shape[0]}-neg{shape[1]}" if shape else "sni"
        if shape is None:
            out.skip(template_id, split, fmt, SKIP_NOT_SNI, idx)
            return
        outputs = [o.strip() for o in row["output"] if isinstance(o, str) and o.strip()]
        if not outputs:
            out.skip(template_id, split, fmt, SKIP_EMPTY_OUTPUT, idx)
            return
        if template_id not in self._info:
            name = f"SNI definition + {shape[0]} positive, {shape[1]} negative examples"
            self.lines.template(template_id, name, SNI_METRICS, True)
            self._info[template_id] = (name, SNI_METRICS, True)
            self._prefix[template_id] = sni_prefix(self.sni, *shape)
        prompt = self._prefix[template_id] + _instance(row["input"])
        row_id = keys.row_id(keys.row_digest(self.plan.seed, self.task.name, split, idx, template_id), fmt)
        line = self.lines.line(row_id, split, idx, template_id, fmt, prompt, outputs[0], None, None, ())
        out.add(line, row_id, split, idx, template_id, fmt, prompt, outputs[0], None, None, ())
