"""Converted lm-eval tasks ask for exactly lm-eval's requests (slow: builds lm-eval tasks from ../shared data).

For PIQA, ARC-Easy and HellaSwag, lm-eval's own task YAML (from the installed ``lm_eval`` wheel) is
converted with ``convert_lmeval``. 50 rows of ../shared/data go two ways:

* lm-eval: a ``ConfigurableTask`` built from the same YAML (its own loader, so its ``process_docs``
  runs), fed the rows through ``custom_dataset`` (no hub), then ``fewshot_context(doc, 0)`` and
  ``construct_requests``: the ``(context, continuation)`` arguments of every choice;
* taskmill: the converted template renders the row into a corpus :class:`Row` and
  ``loglikelihood_requests`` turns it into backend requests with the file's eval settings.

The pairs must be byte-identical, and the gold choice must be the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskmill.backends.requests import PromptStyle
from taskmill.eval.scoring import ScoringOptions, loglikelihood_requests
from taskmill.records import Row
from taskmill.templates import compile_template, load_template_file
from taskmill.templates.lmeval import convert_lmeval

pytestmark = pytest.mark.slow

N_ROWS = 50
# lm-eval task file, ../shared/data folder, split file, the split's role in the lm-eval YAML.
TASKS = {
    "piqa": ("piqa/piqa.yaml", "piqa", "validation", "validation_split"),
    "arc_easy": ("arc/arc_easy.yaml", "ai2_arc__ARC-Easy", "test", "test_split"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "hellaswag", "validation", "validation_split"),
}


def _tasks_dir() -> Path:
    lm_eval = pytest.importorskip("lm_eval")
    return Path(lm_eval.__file__).parent / "tasks"


def _rows(shared: Path, folder: str, split: str) -> list[dict]:
    path = shared / "data" / folder / f"{split}.jsonl"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(N_ROWS), fh)]


def lmeval_requests(task_yaml: Path, rows: list[dict], split_key: str) -> tuple[list[list[tuple[str, str]]], list[int]]:
    """lm-eval's (context, continuation) pairs per row and its gold index, from its own classes."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(task_yaml)
    config.pop("tag", None)
    split = {"validation_split": "validation", "test_split": "test"}[split_key]
    data = datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        config[key] = None
    config[split_key] = split
    config["custom_dataset"] = lambda **_: data  # the rows themselves: no hub
    task = ConfigurableTask(config=config)
    docs = list(task.validation_docs() if split_key == "validation_split" else task.test_docs())
    pairs, golds = [], []
    for i, doc in enumerate(docs):
        ctx = task.fewshot_context(doc, 0)
        instances = task.construct_requests(doc, ctx, metadata=(task.config.task, i, 1))
        pairs.append([tuple(inst.arguments) for inst in instances])
        gold = task.doc_to_target(doc)
        golds.append(gold if isinstance(gold, int) else task.doc_to_choice(doc).index(gold))
    return pairs, golds


def taskmill_requests(template_file: Path, rows: list[dict]) -> tuple[list[list[tuple[str, str]]], list[int | None]]:
    """taskmill's request pairs per row (render -> corpus row -> eval requests) and target index."""
    tf = load_template_file(template_file)
    settings = tf.source["eval"]
    options = ScoringOptions(style=PromptStyle(settings["prompt_style"], settings["separator"]))
    ct = compile_template(tf.templates[0])
    pairs, golds = [], []
    for i, raw in enumerate(rows):
        rendered = ct.render(raw)
        row = Row(id=str(i), task="t", dataset=tf.dataset_id, split="s", row_index=i, template_id=ct.template.id,
                  template_name=ct.template.name, format="zero_shot", prompt=rendered.input,
                  completion=rendered.target, messages=(), answer_choices=rendered.answer_choices,
                  target_index=rendered.target_index)
        pairs.append([(r.context, r.continuation) for r in loglikelihood_requests(row, options, None)])
        golds.append(row.target_index)
    return pairs, golds


@pytest.mark.parametrize("name", sorted(TASKS))
def test_converted_task_requests_equal_lm_eval(name, shared_dir, tmp_path):
    yaml_rel, folder, split, split_key = TASKS[name]
    task_yaml = _tasks_dir() / yaml_rel
    rows = _rows(shared_dir, folder, split)
    out = tmp_path / f"{name}.yaml"
    convert_lmeval(task_yaml, out)

    theirs, their_gold = lmeval_requests(task_yaml, rows, split_key)
    ours, our_gold = taskmill_requests(out, rows)

    assert len(theirs) == len(ours) == N_ROWS
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"{name} row {i}: taskmill {a!r} != lm-eval {b!r}"
    assert our_gold == their_gold
    # The rows exercise what the converter must keep: every continuation starts with lm-eval's
    # delimiter, and the prompt is not stripped text that happens to match.
    assert all(cont.startswith(" ") for row in ours for _, cont in row)
