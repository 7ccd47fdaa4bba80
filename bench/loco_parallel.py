"""Fold-parallel LOCO: the sequential local executor vs the Ray executor with 2 workers, side by side.

The starter collection (zero-shot) is built, clustered into ``--clusters`` TF-IDF clusters and cut
into leave-one-cluster-out folds; each fold trains a LoRA adapter for ``--steps`` steps on a random
Llama (``--layers`` x ``--hidden``, SmolLM2's tokenizer) and evaluates base and tuned model on its
held-out tasks. Both runs use one torch thread per unit (``num_cpus_per_unit: 1``: the thread
count changes CPU float rounding, so the executors must agree on it to write the same bytes), run
at the same path one after the other, and their ``loco.json`` files are compared. Ray is started
(``num_cpus`` = workers, no dashboard, loopback, workers at the driver's priority as taskmill's
own private instance runs them: Ray's default niceness 15 starves them on a shared machine) before
the timed run, as a cluster would be, and each worker imports torch, transformers and peft once, as
the sequential driver already has; that start-up is printed apart. The machine's load average is printed before and after: other work on
a shared machine slows the parallel run more than the sequential one.

Every training unit costs the same (``max_steps`` x ``tokens_per_step`` tokens), so the folds are
CPU-bound and balanced; with an even number of folds on 2 workers the ideal ratio is near 2.

A control follows: ``2 x workers`` units of pure torch work (a matmul loop, no taskmill code) on
the local executor and on the same Ray workers. Its ratio is what any 2-process job gets from this
machine at that moment: with other sessions busy, Linux's autogroup scheduler gives this session
(driver and Ray workers alike) one share of the CPUs however many processes it runs.

Usage::

    python bench/loco_parallel.py [--clusters 4] [--steps 30] [--hidden 256] [--layers 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

GOAL = 1.6


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def prepare(root: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Starter corpus, clusters, folds and the random model under ``root``; returns (folds, clusters, model)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from taskmill.builders.build import build_collection
    from taskmill.clusters import ClusterConfig, FoldConfig, RepresentConfig, run_clustering, write_folds
    from taskmill.orchestrate.pipeline import SMOLLM2_GGUF, resolve_model

    corpus, clusters, folds, model = root / "corpus", root / "clusters", root / "folds", root / "model"
    build_collection(None, corpus, formats=["zero_shot"], progress=False)
    run_clustering(corpus, clusters, RepresentConfig(embedder="tfidf"), ClusterConfig(k=args.clusters), draw=False)
    write_folds(clusters, corpus, folds, FoldConfig(kinds=("cluster",)))
    gguf = Path(resolve_model("smollm2"))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(model)
    tok.save_pretrained(model)
    return folds, clusters, model


def loco_config(root: Path, folds: Path, clusters: Path, model: Path, args: argparse.Namespace) -> Any:
    from taskmill.orchestrate.loco import LocoConfig

    return LocoConfig(
        folds=str(folds), model=str(model), out=str(root / "loco"),
        train={"lora": {"r": 8, "alpha": 16}, "data": {"max_length": 256, "tokens_per_step": 1024, "micro_batch_tokens": 1024},
               "optim": {"lr": 1e-3, "warmup_steps": 1}, "run": {"max_steps": args.steps, "device": "cpu", "progress": False}},
        eval={"formats": ["zero_shot"], "limit": 2, "max_new_tokens": 8, "bootstrap": 100,
              "clusters": str(clusters / "clusters.yaml")},
    )


def timed_run(config: Any, moved_to: Path) -> tuple[float, str, int]:
    """Run LOCO; returns (seconds, sha256 of loco.json, units run) and moves the output to ``moved_to``."""
    from taskmill.orchestrate.loco import run_loco

    ran: list[str] = []
    start = time.perf_counter()
    run_loco(config, on_unit=lambda uid, res: ran.append(uid))
    seconds = time.perf_counter() - start
    out = Path(config.out)
    sha = hashlib.sha256((out / "loco.json").read_bytes()).hexdigest()
    os.rename(out, moved_to)
    return seconds, sha, len(ran)


def spin(iterations: int) -> float:
    """Pure CPU work on one torch thread (the control); returns its seconds."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(384, 384, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(iterations):
        a = torch.tanh(a @ a)
    return time.perf_counter() - start


def warm(seconds: float) -> int:
    """Import what units use (as the sequential driver already has), then hold the worker a moment."""
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import taskmill.eval.runner  # noqa: F401
    import taskmill.trainer.loop  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def control(kind: str, n: int, iterations: int) -> float:
    """Wall seconds of ``n`` spin units on the executor ``kind``."""
    from taskmill.executors import ExecutorConfig, Unit, run_units

    start = time.perf_counter()
    run_units([Unit(f"spin{i}", spin, (iterations,)) for i in range(n)], ExecutorConfig(kind=kind))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=4, help="clusters = folds (even: balanced on 2 workers)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per fold")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (CPUs given to Ray)")
    parser.add_argument("--spin", type=int, default=1500, help="matmul iterations of one control unit")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on loopback addresses only
    os.environ["RAY_worker_niceness"] = "0"  # as `--executor ray` without --address starts Ray

    import ray

    from taskmill.executors import ExecutorConfig

    root = Path(tempfile.mkdtemp(prefix="loco-bench-"))
    try:
        load_start = _load()
        folds, clusters, model = prepare(root, args)
        config = loco_config(root, folds, clusters, model, args)
        local = replace(config, executor=ExecutorConfig(kind="local", num_cpus_per_unit=1))
        seq_s, seq_sha, units = timed_run(local, root / "local")
        ray_start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            from taskmill.executors import Unit, run_units

            # one warm-up per worker (each holds its worker a moment, so they land on different ones)
            run_units([Unit(f"warm{i}", warm, (2.0,)) for i in range(args.workers)], ExecutorConfig(kind="ray"))
            ray_start_s = time.perf_counter() - ray_start
            parallel = replace(config, executor=ExecutorConfig(kind="ray", num_cpus_per_unit=1))
            ray_s, ray_sha, _ = timed_run(parallel, root / "ray")
            control("ray", args.workers, 10)  # warm the workers' torch import
            ctl_local = control("local", 2 * args.workers, args.spin)
            ctl_ray = control("ray", 2 * args.workers, args.spin)
        finally:
            ray.shutdown()
        load_end = _load()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = seq_s / ray_s
    print(f"LOCO on the starter collection: {args.clusters} folds ({units} units), random Llama "
          f"{args.layers}x{args.hidden}, {args.steps} steps per fold, 1 torch thread per unit; {os.cpu_count()} CPUs")
    print(f"{'executor':34s} {'wall s':>8s}")
    print(f"{'local (sequential)':34s} {seq_s:8.1f}")
    print(f"{f'ray, {args.workers} workers':34s} {ray_s:8.1f}   (+ {ray_start_s:.1f} s to start Ray and import"
          " torch/transformers/peft in its workers, as the driver had: not counted)")
    print(f"{'speed-up':34s} {ratio:7.2f}x   (goal >= {GOAL}x on 2 cores)")
    print(f"control, {2 * args.workers} x pure torch work: local {ctl_local:.1f} s, ray {ctl_ray:.1f} s, "
          f"{ctl_local / ctl_ray:.2f}x (what 2 processes get from this machine now)")
    same = "identical" if seq_sha == ray_sha else "DIFFERENT"
    print(f"loco.json sha256: local {seq_sha[:16]}, ray {ray_sha[:16]} ({same})")
    print(f"load average (1, 5, 15 min): before {load_start}, after {load_end}")
    sys.exit(0 if seq_sha == ray_sha else 1)


if __name__ == "__main__":
    main()
