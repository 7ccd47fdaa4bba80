"""A real ``taskmill build`` of lm-eval's PIQA / ARC-Easy in ``few_shot`` sends lm-eval's exact requests
(slow: ../shared/data and lm-eval's own ``ConfigurableTask``).

lm-eval's task YAML (from the installed wheel) is converted, the split is built whole at
``shots: 2`` by ``taskmill build`` at ``--num-proc 1`` and at ``--num-proc 2`` with small chunks
(identical bytes), and ``evaluate`` with ``--prompt-style lmeval --separator ' '`` hands a
recording backend its requests. lm-eval's side: a ``ConfigurableTask`` from the same YAML reading the
same rows (``custom_dataset``, no hub), seeded as ``simple_evaluate`` seeds it, ``fewshot_context``
then ``construct_requests`` for the first rows in order (what ``--limit N`` runs; lm-eval's
``fewshot_context`` takes about 14 ms a row here, so only the first ``N_CHECKED`` rows are asked of it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taskmill.builders import build as build_module
from taskmill.templates.lmeval import convert_lmeval

pytestmark = pytest.mark.slow

N_CHECKED = 50  # first rows compared with lm-eval (its --limit 50)
SHOTS = 2
# lm-eval task file, ../shared/data folder, evaluated split, its lm-eval key, the few-shot pool split.
# ../shared/data has no PIQA train split: the pool is validation, as if lm-eval's training_split were
# validation (its YAML's other keys unchanged, so lm-eval still leaves the evaluated row out).
TASKS = {
    "piqa": ("piqa/piqa.yaml", "piqa", "validation", "validation_split", "validation"),
    "arc_easy": ("arc/arc_easy.yaml", "ai2_arc__ARC-Easy", "test", "test_split", "train"),
}


def _tasks_dir() -> Path:
    lm_eval = pytest.importorskip("lm_eval")
    return Path(lm_eval.__file__).parent / "tasks"


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def lmeval_fewshot_requests(task_yaml: Path, splits: dict[str, list[dict]], eval_split: str, split_key: str,
                            pool_split: str, seed: int) -> list[list[tuple[str, str]]]:
    """lm-eval's own (context, continuation) pairs of its first ``N_CHECKED`` evaluated rows, at ``SHOTS``."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(task_yaml)
    config.pop("tag", None)
    config["training_split"] = pool_split
    config[split_key] = eval_split
    config["custom_dataset"] = lambda **_: datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
    task = ConfigurableTask(config=config)
    task.set_fewshot_seed(seed)
    docs = task.validation_docs() if split_key == "validation_split" else task.test_docs()
    return [[tuple(inst.arguments) for inst in task.construct_requests(doc, task.fewshot_context(doc, SHOTS),
                                                                        metadata=("t", i, 1))]
            for i, doc in zip(range(N_CHECKED), docs)]


class RecordingBackend:
    """A stand-in for a model (this test checks what eval asks, not the scores): records every
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


def _build(cli, collection: Path, out: Path, num_proc: int) -> bytes:
    result = cli(["build", collection, "--out", out, "--num-proc", num_proc, "--no-progress"])
    assert result.exit_code == 0, result.output
    return (out / "corpus.jsonl").read_bytes()


def _pairs(corpus: list[dict], separator: str) -> list[list[tuple[str, str]]]:
    return [[(r["prompt"], separator + c) for c in r["answer_choices"]] for r in corpus]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_built_few_shot_requests_equal_lm_eval(name, shared_dir, tmp_path, cli, monkeypatch):
    from taskmill.eval.runner import EvalConfig, evaluate

    yaml_rel, folder, split, split_key, pool_split = TASKS[name]
    task_yaml = _tasks_dir() / yaml_rel
    files = {s: shared_dir / "data" / folder / f"{s}.jsonl" for s in {split, pool_split}}
    splits = {s: _read(path) for s, path in files.items()}
    conversion = convert_lmeval(task_yaml, tmp_path / f"{name}.yaml")
    task = {"name": name, "dataset": "x", "data_files": {s: str(p.resolve()) for s, p in files.items()},
            "splits": [split], "shots_split": pool_split, "templates": f"{name}.yaml"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"shots": SHOTS, "formats": ["few_shot"], "tasks": [task]}),
                                     encoding="utf-8")
    (tmp_path / "c7.yaml").write_text(yaml.safe_dump({"shots": SHOTS, "formats": ["few_shot"],
                                                      "tasks": [{**task, "fewshot_seed": 7}]}), encoding="utf-8")

    one = _build(cli, tmp_path / "c.yaml", tmp_path / "np1", 1)
    monkeypatch.setattr(build_module, "RENDERS_PER_CHUNK", 250)  # several chunks, rendered by 2 workers
    assert _build(cli, tmp_path / "c.yaml", tmp_path / "np2", 2) == one
    seven = _build(cli, tmp_path / "c7.yaml", tmp_path / "seed7", 2)

    corpus = [json.loads(line) for line in one.decode("utf-8").splitlines()]
    assert [r["row_index"] for r in corpus] == list(range(len(splits[split])))  # whole split, source order
    theirs = lmeval_fewshot_requests(task_yaml, splits, split, split_key, pool_split, 1234)
    sep = conversion.eval_settings["separator"]
    ours = _pairs(corpus, sep)
    assert len(theirs) == N_CHECKED
    for i in range(N_CHECKED):
        assert ours[i] == theirs[i], f"{name} row {i}: taskmill {ours[i]!r} != lm-eval {theirs[i]!r}"
    assert all(r["prompt"].count("\nAnswer:") == SHOTS + 1 for r in corpus[:N_CHECKED])  # examples are there

    # mutation: another fewshot_seed draws other examples; they are lm-eval's at that seed
    ours7 = _pairs([json.loads(line) for line in seven.decode("utf-8").splitlines()], sep)
    assert sum(a != b for a, b in zip(ours7[:N_CHECKED], theirs)) > N_CHECKED // 2
    assert ours7[:N_CHECKED] == lmeval_fewshot_requests(task_yaml, splits, split, split_key, pool_split, 7)

    # eval with lm-eval's prompt style sends each corpus row's pairs, in order: lm-eval's for the first rows
    backend = RecordingBackend()
    evaluate(EvalConfig(corpus=str(tmp_path / "np2"), out=str(tmp_path / "eval"), model="none", prompt_style="lmeval",
                        separator=" ", formats=("few_shot",), bootstrap=0), backend=backend, progress=False)
    assert backend.requests == [pair for row in ours for pair in row]
    expected = [pair for row in theirs for pair in row]
    assert backend.requests[:len(expected)] == expected
