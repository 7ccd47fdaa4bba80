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


# Few-shot: which split lm-eval draws examples from, as far as ../shared/data has it. PIQA and
# HellaSwag have no train split there, so their examples come from the evaluated validation rows
# (lm-eval's rule when training_split is unset; it then also leaves the evaluated row out of its own
# examples); ARC-Easy draws from its train split (and does not leave anything out: test_split is set).
FEWSHOT_SPLITS = {
    "piqa": {"validation_split": "validation"},
    "arc_easy": {"training_split": "train", "test_split": "test"},
    "hellaswag": {"validation_split": "validation"},
}
N_SHOTS = 2
N_POOL = 200  # rows of a separate few-shot split (ARC-Easy train)


def lmeval_fewshot_requests(task_yaml: Path, splits: dict[str, list[dict]], keys: dict[str, str], eval_split: str,
                            seed: int) -> list[list[tuple[str, str]]]:
    """lm-eval's own pairs at ``N_SHOTS`` examples per row: its sampler, seeded as simple_evaluate does."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(task_yaml)
    config.pop("tag", None)
    data = datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        config[key] = None
    config.update({key: split for key, split in keys.items()})
    config["custom_dataset"] = lambda **_: data
    task = ConfigurableTask(config=config)
    task.set_fewshot_seed(seed)
    docs = list(task.validation_docs() if eval_split == "validation" else task.test_docs())
    pairs = []
    for i, doc in enumerate(docs):
        ctx = task.fewshot_context(doc, N_SHOTS)
        pairs.append([tuple(inst.arguments) for inst in task.construct_requests(doc, ctx, metadata=("t", i, 1))])
    return pairs


def taskmill_fewshot_requests(template_file: Path, rows: list[dict], pool: list[dict], spec,
                              seed: int) -> list[list[tuple[str, str]]]:
    """taskmill's pairs: ``fewshot_contexts`` as the row prompt, then the eval request builder."""
    from taskmill.templates.lmeval import fewshot_contexts

    tf = load_template_file(template_file)
    settings = tf.source["eval"]
    options = ScoringOptions(style=PromptStyle(settings["prompt_style"], settings["separator"]))
    ct = compile_template(tf.templates[0])
    contexts = fewshot_contexts(tf, rows, pool, N_SHOTS, seed=seed, spec=spec)
    pairs = []
    for i, (raw, context) in enumerate(zip(rows, contexts)):
        rendered = ct.render(raw)
        row = Row(id=str(i), task="t", dataset=tf.dataset_id, split="s", row_index=i, template_id=ct.template.id,
                  template_name=ct.template.name, format="few_shot", prompt=context,
                  completion=rendered.target, messages=(), answer_choices=rendered.answer_choices,
                  target_index=rendered.target_index)
        pairs.append([(r.context, r.continuation) for r in loglikelihood_requests(row, options, None)])
    return pairs


@pytest.mark.parametrize("seed", [1234, 7])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_converted_task_fewshot_requests_equal_lm_eval(name, seed, shared_dir, tmp_path):
    from taskmill.templates.lmeval import fewshot_spec, read_task_yaml

    yaml_rel, folder, split, _ = TASKS[name]
    task_yaml = _tasks_dir() / yaml_rel
    rows = _rows(shared_dir, folder, split)
    keys = FEWSHOT_SPLITS[name]
    splits = {split: rows}
    if "training_split" in keys:
        path = shared_dir / "data" / folder / "train.jsonl"
        with path.open(encoding="utf-8") as fh:
            splits["train"] = [json.loads(line) for _, line in zip(range(N_POOL), fh)]
    out = tmp_path / f"{name}.yaml"
    convert_lmeval(task_yaml, out)
    # the spec of the task as run here (its split keys changed to the splits ../shared/data has)
    cfg = read_task_yaml(task_yaml)
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        cfg.pop(key, None)
    spec = fewshot_spec({**cfg, **keys})
    assert not spec.unsupported
    assert spec.exclude_eval_doc == (name != "arc_easy")

    theirs = lmeval_fewshot_requests(task_yaml, splits, keys, split, seed)
    ours = taskmill_fewshot_requests(out, rows, splits[spec.pool_split], spec, seed)

    assert len(theirs) == len(ours) == N_ROWS
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"{name} row {i}: taskmill {a!r} != lm-eval {b!r}"
    # the examples are really there: two answered examples before the row's own text
    assert all(ctx.count(spec.fewshot_delimiter) >= N_SHOTS for row in ours for ctx, _ in row)


class RecordingBackend:
    """A stand-in for a model (this test checks what eval asks, not the scores): it records every
    loglikelihood request and answers a deterministic value."""

    name, model_revision, adapter_hash, chat_format = "recording", "none", "none", None

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, reqs):
        from taskmill.backends.requests import Loglikelihood

        self.requests += [(r.context, r.continuation) for r in reqs]
        return [Loglikelihood(-float(len(r.continuation)), False, 1) for r in reqs]

    def generate(self, reqs):  # pragma: no cover - a converted task has only choice rows
        raise AssertionError("no generation expected")


def test_build_then_eval_sends_lm_eval_requests_and_records_the_task(shared_dir, tmp_path):
    """convert -> build (real builder, shared PIQA rows) -> eval --prompt-style lmeval: the backend
    receives lm-eval's exact pairs, and results.json names the lm-eval task and version."""
    import yaml

    from taskmill.builders.build import build_collection
    from taskmill.eval.runner import EvalConfig, evaluate

    yaml_rel, folder, split, split_key = TASKS["piqa"]
    data = shared_dir / "data" / folder / f"{split}.jsonl"
    if not data.is_file():
        pytest.skip(f"shared data not found at {data}")
    conversion = convert_lmeval(_tasks_dir() / yaml_rel, tmp_path / "piqa.yaml")
    (tmp_path / "collection.yaml").write_text(yaml.safe_dump({"tasks": [{
        "name": "piqa", "dataset": "piqa", "data_files": {split: str(data.resolve())}, "splits": [split],
        "templates": "piqa.yaml", "max_examples": N_ROWS, "formats": ["zero_shot"]}]}), encoding="utf-8")
    build_collection(tmp_path / "collection.yaml", tmp_path / "corpus", progress=False)
    backend = RecordingBackend()
    settings = conversion.eval_settings
    results = evaluate(EvalConfig(corpus=str(tmp_path / "corpus"), out=str(tmp_path / "eval"), model="none",
                                  prompt_style=settings["prompt_style"], separator=settings["separator"],
                                  formats=("zero_shot",), bootstrap=0), backend=backend, progress=False)

    corpus = [json.loads(line) for line in (tmp_path / "corpus" / "corpus.jsonl").open(encoding="utf-8")]
    all_rows = [json.loads(line) for line in data.open(encoding="utf-8")]
    theirs, _ = lmeval_requests(_tasks_dir() / yaml_rel, [all_rows[r["row_index"]] for r in corpus], split_key)
    assert len(corpus) == N_ROWS
    assert backend.requests == [pair for row in theirs for pair in row]
    written = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))
    (source,) = written["template_sources"]
    assert source["task"] == "piqa" and source["lm_eval"]["task"] == "piqa"
    assert source["lm_eval"]["version"] == 1.0 and source["eval"] == settings
    assert source["eval_settings_used"] is True
    assert results["n_examples"] == N_ROWS


# Features the three shared tasks do not use, checked against lm-eval itself on tiny rows.
TINY_ROWS = [{"goal": "Watch the news", "sol1": "on a television ", "sol2": " in a  box", "label": 0, "key": "B",
              "opts": {"text": ["p", " q "], "label": ["A", "B"]}},
             {"goal": " Boil\twater ", "sol1": "kettle", "sol2": "pan\n", "label": 1, "key": "A",
              "opts": {"text": ["x y", "z"], "label": ["A", "B"]}}]
TINY_TASKS = {
    "description_delimiter_newline": {"doc_to_text": "Q: {{goal}}\n", "description": "Pick one.\n",
                                      "target_delimiter": "=>", "doc_to_choice": "{{[sol1, sol2]}}",
                                      "doc_to_target": "label"},
    "field_text_jinja_target": {"doc_to_text": "goal", "doc_to_choice": "{{opts.text}}",
                                "doc_to_target": "{{opts.label.index(key)}}"},
    "list_choices_constant_target": {"doc_to_text": "{{goal}}?", "doc_to_choice": [" yes", "no "], "doc_to_target": 1},
}


@pytest.mark.parametrize("name", sorted(TINY_TASKS))
def test_tiny_task_features_equal_lm_eval(name, tmp_path):
    import yaml

    pytest.importorskip("lm_eval")
    cfg = {"task": name, "dataset_path": "none", "output_type": "multiple_choice", "validation_split": "validation",
           **TINY_TASKS[name]}
    task_yaml = tmp_path / "task.yaml"
    task_yaml.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    convert_lmeval(task_yaml, tmp_path / "out.yaml")
    theirs, their_gold = lmeval_requests(task_yaml, TINY_ROWS, "validation_split")
    ours, our_gold = taskmill_requests(tmp_path / "out.yaml", TINY_ROWS)
    assert ours == theirs and our_gold == their_gold


FEWSHOT_ROWS = [{"goal": f"Goal {i}", "sol1": f" a{i}", "sol2": f"b{i} ", "label": i % 2} for i in range(6)]
FEWSHOT_TASKS = {
    "first_n_own_delimiters": ({"validation_split": "validation",
                                "fewshot_config": {"sampler": "first_n", "fewshot_delimiter": "\n--\n",
                                                   "target_delimiter": "=>"}}, "validation"),
    "default_test_split_as_pool": ({"test_split": "test", "fewshot_split": "test", "fewshot_delimiter": "\n"},
                                   "test"),
    "first_n_test_split_no_exclusion": ({"test_split": "test", "validation_split": "validation",
                                      "fewshot_config": {"sampler": "first_n"}}, "test"),
}


@pytest.mark.parametrize("name", sorted(FEWSHOT_TASKS))
def test_tiny_task_fewshot_equal_lm_eval(name, tmp_path):
    """Samplers, delimiters in fewshot_config and the eval-row exclusion rule, against lm-eval itself."""
    import yaml

    from taskmill.templates.lmeval import fewshot_spec, read_task_yaml

    pytest.importorskip("lm_eval")
    keys, eval_split = FEWSHOT_TASKS[name]
    cfg = {"task": name, "dataset_path": "none", "output_type": "multiple_choice", "doc_to_text": "Q: {{goal}}",
           "doc_to_choice": "{{[sol1, sol2]}}", "doc_to_target": "label", **keys}
    task_yaml = tmp_path / "task.yaml"
    task_yaml.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    convert_lmeval(task_yaml, tmp_path / "out.yaml")
    spec = fewshot_spec(read_task_yaml(task_yaml))
    split_keys = {k: v for k, v in keys.items() if k.endswith("_split")}
    splits = {s: FEWSHOT_ROWS for s in set(split_keys.values())}
    theirs = lmeval_fewshot_requests(task_yaml, splits, split_keys, eval_split, 1234)
    ours = taskmill_fewshot_requests(tmp_path / "out.yaml", FEWSHOT_ROWS, FEWSHOT_ROWS, None, 1234)
    assert ours == theirs
    assert spec.exclude_eval_doc == (name != "first_n_test_split_no_exclusion")
