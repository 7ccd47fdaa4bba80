"""taskmill's trainer vs TRL's SFTTrainer (packing="bfd"), side by side in one process.

Same model shape (random init, same seed), same synthetic documents (random token ids: prompt
51-409 tokens without loss, completion 4-204 with loss), same tokens per optimizer step
(TRL: 8 bins x 2048 tokens; taskmill: a 16,384-token step). Prints real tokens/s, peak memory,
their ratios, and taskmill's MFU, for full fine-tuning and LoRA r=16 on all linear layers.

    python bench/trainer_vs_trl.py            # Qwen2.5-0.5B shape, needs CUDA
    python bench/trainer_vs_trl.py --tiny     # small shape, CPU, checks the wiring
    python bench/trainer_vs_trl.py --cpu      # SmolLM2-135M shape, the demo's LoRA job, tokens per CPU-second

``--cpu`` is the demo's training job (SmolLM2-135M shape, LoRA r=8 on all linear layers, documents
of 30-200 prompt + 1-24 answer tokens, 2,048 tokens per step, one torch thread): taskmill and TRL
(packing="bfd") alternate ``--repeat`` times, fp32 and bf16 autocast each, and each step's CPU time
(``time.process_time``) is measured, so a machine loaded by other work changes the wall-clock
numbers far more than these. Load average is printed before and after.

Measured 2026-12-07 on the 2-core development machine (AVX2, no native bf16; torch 2.13.0+cpu,
TRL 1.16.0), loaded by other work (load average 13.9-14.1):
``--cpu --steps 2 --repeat 1`` gave taskmill fp32 86.9 tokens per CPU-second, TRL fp32 38.2
(taskmill / TRL = 2.27x); the bf16 rows did not finish within the 900-s limit. bf16 against fp32,
taskmill only, the same widths with 4 layers, 1,024 tokens per step, one thread, alternating
(load 6.7-7.9): fp32 538.1 / 553.9, bf16 20.3 / 30.4 tokens per CPU-second (18-27x slower), so
``precision: auto`` stays fp32 on CPUs without native bf16 (AVX512-BF16/AMX).

MFU: ``mfu`` counts the FLOPs the step needs (decoder on every token, output head on completion
tokens only, since only they carry loss; LoRA: no weight gradients for frozen weights); ``mfu_6n``
is the usual 6 x params x tokens convention (head on every token) plus causal attention.

Measured 2026-11-26 on one NVIDIA H200 (torch 2.11.0+cu130, transformers 5.17, peft 0.21, TRL 1.16.0,
20 steps after 5 warm-up, 16,384 tokens per step; taskmill's default on CUDA is ``model.compile``):

    run                       tok/s    peak GB  x TRL tok/s  x TRL mem   MFU    MFU(6N)
    trl_full (bfd, SDPA)      18,357    48.0       1.00        1.00       -       -
    taskmill_full (eager)     81,525    40.1       4.44        0.83     20.2%   24.8%
    taskmill_full_compile    111,343    30.6       6.07        0.64     27.6%   33.9%
    trl_lora                  23,580    42.0       1.00        1.00       -       -
    taskmill_lora (eager)     69,306    33.5       2.94        0.80     11.9%   21.1%
    taskmill_lora_compile     96,517    26.9       4.09        0.64     16.6%   29.4%

Measured 2026-11-26 on one NVIDIA H200 (torch 2.11.0+cu130, transformers 5.17), taskmill only
(``--skip-trl --skip-gate --skip-eager --steps 10 --warmup 3``; "x TRL" against the TRL row above,
recorded on an H200 the same day, not re-run). All rows share one process and one data set:

    run                          tok/s    peak GB  x TRL tok/s  x TRL mem   MFU    MFU(6N)  ms/step
    compile_old (as above)      110,119    30.6       6.00        0.64     27.2%   33.5%    147.4
    compile_attn                131,979    30.6       7.19        0.64     32.6%   40.2%    121.2
    compile (default now)       148,388    28.4       8.08        0.59     36.7%   45.2%    108.2
    compile_chunk8k             141,880    29.4       7.73        0.61     35.1%   43.2%    110.6
    compile_step32k (32k/step)  158,240    46.7       8.62        0.97     39.1%   48.2%    206.6

compile_old: attention eager behind a graph break and the cross-entropy eager; compile_attn: the
varlen op traced into each layer's graph; compile: that plus the compiled fused-CE softmax part.
compile_step32k doubles the tokens per optimizer step (not the issue's 16,384). Profile of
``compile`` (3 steps, profiler on): GPU kernels 97.6 ms/step of the 108 ms step: cuBLAS GEMMs
(nvjet) ~54.5 ms (~710 TFLOP/s on the dense + head FLOPs), flash attention fwd+bwd ~12 ms, fused
AdamW 4.0 + grad clipping 1.6 ms, SiLU fwd/bwd 7.0 ms, fused CE softmax 2.5 ms, norms/residuals rest.

Gate on that card: packed loss through varlen flash vs per-document SDPA (bf16, 2 layers, 16k
tokens): loss relative difference 5.1e-6, gradient relative difference 9.3e-3.

All numbers above predate the step pipeline (later on 2026-11-26): the loop used to synchronise
before and after every step and read the loss and gradient norm inside it (~10 ms of GPU idle per
108 ms step in the profile); a step now only queues work, its numbers are read one step later, and
step times come from CUDA events. Not yet measured on a GPU: ``bash bench/gpu_check.sh`` is the
prepared one-call run (each taskmill row also reports ``host_syncs_in_step`` from CUDA's sync
debug mode, and ``sum_step_s`` against the host's ``run_wall_s``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QWEN05 = dict(model_type="qwen2", hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2, intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
              max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6)
SMOL = dict(model_type="llama", hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True,
            max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5)
TINY = dict(model_type="qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=128, vocab_size=1000, tie_word_embeddings=True,
            max_position_embeddings=1024)


def make_rows(n: int, vocab: int, prompt: tuple[int, int], completion: tuple[int, int], seed: int) -> list:
    """(ids, loss_mask) pairs of random tokens; ids avoid 0 (used as TRL's pad/eos)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p, c = rng.randint(*prompt), rng.randint(*completion)
        rows.append(([rng.randrange(1, vocab) for _ in range(p + c)], [0] * p + [1] * c))
    return rows


def _reset_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


# taskmill variants (--extra): config overrides on top of the base run (eager, 16,384-token steps)
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "micro8192": {"data": {"micro_batch_tokens": 8192}},
    # compile as measured 2026-11-26: attention eager behind a graph break, cross-entropy eager
    "compile_old": {"model": {"compile": True, "compile_attention": False, "compile_loss": False}},
    "compile_attn": {"model": {"compile": True, "compile_attention": True, "compile_loss": False}},
    "compile_loss": {"model": {"compile": True, "compile_attention": False, "compile_loss": True}},
    "compile": {"model": {"compile": True}},  # taskmill's default on CUDA: attention and loss compiled too
    "compile_chunk8k": {"model": {"compile": True}, "run": {"loss_chunk_tokens": 8192}},
    # NOT the 16,384-token step: twice the tokens per optimizer step (and per micro-batch)
    "compile_step32k": {"model": {"compile": True}, "data": {"tokens_per_step": 32768, "micro_batch_tokens": 32768}},
}


def _merge(base: dict[str, Any], over: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in over.items():
        out.setdefault(section, {}).update(values)
    return out


def run_taskmill(a: argparse.Namespace, rows: list, lora: bool, variant: str | None = None,
                 profile: bool = False) -> dict[str, Any]:
    """Train with taskmill for warmup + steps optimizer steps; measure the steps after warm-up.

    ``variant`` names :data:`VARIANTS` overrides; ``profile`` then runs ``--profile-steps`` more
    steps under ``torch.profiler`` and prints the top CUDA kernels.
    """
    import torch

    from taskmill.trainer import config_from_dict, dist
    from taskmill.trainer.data import Document
    from taskmill.trainer.loop import Trainer

    _reset_cuda()
    torch._dynamo.reset()  # each variant compiles afresh (its own recompile budget); inductor's disk cache stays
    docs = [Document(tuple(i), tuple(m)) for i, m in rows]
    base = {
        "model": {"arch": a.arch, "compile": False},
        "lora": {"enabled": lora, "r": a.lora_r, "alpha": 2 * a.lora_r, "target_modules": "all-linear"},
        "data": {"tokens_per_step": a.step_tokens, "micro_batch_tokens": a.step_tokens, "max_length": a.seq_len},
        "optim": {"lr": 2e-4 if lora else 2e-5, "warmup_steps": a.warmup},
        "run": {"output_dir": tempfile.mkdtemp(prefix="tm-bench-"), "max_steps": a.warmup + a.steps,
                "progress": False, "save_final": False, "seed": a.seed},
    }
    cfg = config_from_dict(_merge(base, VARIANTS[variant]) if variant else base)
    trainer = Trainer(cfg, docs, None)
    try:
        t0 = time.perf_counter()
        res = trainer.run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        run_wall = time.perf_counter() - t0
        syncs = sync_check(trainer)
        prof = profile_steps(trainer, a.profile_steps, a.out) if profile else None
    finally:
        dist.teardown(trainer.info)
    timed = res.records[a.warmup:]
    seconds = sum(r["step_s"] for r in timed)
    out = {"tokens_per_s": sum(r["tokens"] for r in timed) / seconds, "peak_gb": _peak_gb(),
           "tokens_per_step": sum(r["tokens"] for r in timed) / len(timed), "first_loss": res.records[0]["loss"],
           "last_loss": res.records[-1]["loss"]}
    if timed[0]["mfu"] is not None:
        out["mfu"] = sum(r["mfu"] * r["step_s"] for r in timed) / seconds
        out["mfu_6n"] = sum(r["mfu_6n"] * r["step_s"] for r in timed) / seconds
    out["timed_steps"], out["warmup_steps"] = len(timed), a.warmup
    # step_s comes from events on the GPU timeline; the whole run's host wall clock (set-up of the
    # first step and its compilation included) bounds their sum from above
    out["sum_step_s"], out["run_wall_s"] = sum(r["step_s"] for r in res.records), run_wall
    out["host_syncs_in_step"] = syncs
    out["step_ms"] = sorted(1000 * r["step_s"] for r in timed)[len(timed) // 2]  # median
    if prof:
        out["profile"] = prof
    return out


def _kernel_group(name: str) -> str:
    n = name.lower()
    for key, words in (("gemm", ("gemm", "cutlass", "nvjet", "sm90_xmma", "cublas")), ("flash_attn", ("flash",)),
                       ("optimizer", ("adam", "multi_tensor", "foreach")), ("triton (compiled)", ("triton",)),
                       ("reduce/softmax", ("reduce", "softmax", "logsumexp")), ("copy/cast", ("copy", "cast"))):
        if any(w in n for w in words):
            return key
    return "other elementwise"


def sync_check(trainer: Any, n: int = 2) -> str:
    """Run ``n`` more steps with CUDA's sync debug mode on "error": "none", or the first sync's message.

    A step (and the staging of its numbers) must only queue work; the loop reads the numbers one
    step later from page-locked memory. Any host wait inside (``.item()``, a blocking copy,
    ``nonzero`` on the GPU) leaves the GPU idle. The loop's own wait on the previous step's end
    event is by design and outside this check.
    """
    import torch

    if not torch.cuda.is_available():
        return "not checked (CPU)"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step_docs in trainer.plan[:n]:
            trainer.run_step(step_docs).stage()  # the loop's part before the step's end mark
        return "none"
    except RuntimeError as err:
        return str(err).splitlines()[0][:300]
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()


def profile_steps(trainer: Any, n: int, out_path: str | None) -> dict[str, Any]:
    """Run ``n`` more optimizer steps under ``torch.profiler``; print the top-15 CUDA kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"  # CPU: wiring check only
    plan = trainer.plan[trainer.total:trainer.total + n] or trainer.plan[:n]
    sync()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for step_docs in plan:
            trainer.run_step(step_docs)
        sync()
    wall = time.perf_counter() - t0
    # kernels only (device-side rows); an op's or a launch record's "self" device time repeats its kernels'
    kernel = (lambda e: e.device_type == torch.autograd.DeviceType.CUDA) if cuda else (lambda e: True)
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0 and kernel(e)]
    events.sort(key=lambda e: -getattr(e, attr))
    total_us = sum(getattr(e, attr) for e in events)
    groups: dict[str, float] = {}
    for e in events:
        g = _kernel_group(e.key)
        groups[g] = groups.get(g, 0.0) + getattr(e, attr)
    print(f"\nprofile: {len(plan)} steps, wall {1000 * wall / len(plan):.1f} ms/step (profiler on), "
          f"GPU kernel time {total_us / 1000 / len(plan):.1f} ms/step")
    print(f"{'kernel (top 15 by GPU time)':90s} {'ms/step':>8s} {'share':>6s} {'calls/step':>10s}")
    top = []
    for e in events[:15]:
        t = getattr(e, attr)
        ms = t / 1000 / len(plan)
        top.append({"kernel": e.key, "ms_per_step": ms, "share": t / total_us, "calls_per_step": e.count / len(plan)})
        print(f"{e.key[:90]:90s} {ms:8.2f} {100 * t / total_us:5.1f}% {e.count / len(plan):10.1f}")
    print("groups: " + ", ".join(f"{g} {100 * t / total_us:.1f}%" for g, t in sorted(groups.items(), key=lambda x: -x[1])))
    if out_path:
        Path(out_path).with_name("profile.txt").write_text(
            prof.key_averages().table(sort_by=attr, row_limit=60))
    return {"steps": len(plan), "wall_ms_per_step": 1000 * wall / len(plan), "gpu_ms_per_step": total_us / 1000 / len(plan),
            "top": top, "groups_ms_per_step": {g: t / 1000 / len(plan) for g, t in groups.items()}}


def _tiny_tokenizer() -> Any:
    """A 3-token tokenizer: the data are token ids already; TRL only needs pad/eos ids from it."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


class _Clock:
    """TrainerCallback-compatible step timer (synchronises CUDA at step edges)."""

    def __init__(self, cpu: bool = False) -> None:
        self.times: list[float] = []
        self.t0 = 0.0
        self.now = time.process_time if cpu else time.perf_counter

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class Cb(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003
                clock._sync()
                clock.t0 = clock.now()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003
                clock._sync()
                clock.times.append(clock.now() - clock.t0)

        return Cb()


# TRL (packing=bfd) measured by this script on one H200, 2026-11-26 (used with --skip-trl, labelled so)
RECORDED_TRL = {"full": {"tokens_per_s": 18356.5, "peak_gb": 48.03}, "lora": {"tokens_per_s": 23580.1, "peak_gb": 41.96}}
RECORDED_TRL_SOURCE = "recorded: NVIDIA H200, 2026-11-26, TRL 1.16.0 (not run now)"


def run_trl(a: argparse.Namespace, rows: list, lora: bool, bf16: bool | None = None) -> dict[str, Any]:
    """TRL SFTTrainer, packing='bfd' (per-document attention via SDPA masks), same steps."""
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    _reset_cuda()
    arch = dict(a.arch)
    hf_cfg = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32, attn_implementation="sdpa")
    ds = Dataset.from_dict({"input_ids": [i for i, _ in rows],
                           "labels": [[t if m else -100 for t, m in zip(i, mk)] for i, mk in rows]})
    cuda = torch.cuda.is_available()
    bf16 = cuda if bf16 is None else bf16
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"), per_device_train_batch_size=a.trl_batch,
        max_length=a.seq_len, packing=True, packing_strategy="bfd", bf16=bf16, gradient_checkpointing=False,
        max_steps=a.warmup + a.steps, learning_rate=2e-4 if lora else 2e-5, lr_scheduler_type="cosine",
        warmup_steps=a.warmup, logging_steps=10_000, save_strategy="no", report_to="none", seed=a.seed,
        use_cpu=not cuda, dataloader_num_workers=0, dataset_num_proc=None, disable_tqdm=True,
    )
    peft_cfg = None
    if lora:
        from peft import LoraConfig

        peft_cfg = LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    clock = _Clock(cpu=a.cpu)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=_tiny_tokenizer(),
                         peft_config=peft_cfg, callbacks=[clock.callback()])
    counts: list[int] = []
    collate = trainer.data_collator

    def counting(batch: list) -> Any:
        out = collate(batch)
        counts.append(int(sum(len(x["input_ids"]) for x in batch)))
        return out

    trainer.data_collator = counting
    trainer.train()
    tokens = counts[a.warmup:a.warmup + a.steps]
    seconds = sum(clock.times[a.warmup:a.warmup + a.steps])
    out = {"tokens_per_s": sum(tokens) / seconds, "peak_gb": _peak_gb(), "tokens_per_step": sum(tokens) / len(tokens),
           "padding_free": bool(trainer.padding_free)}
    del trainer, model
    return out


def check_varlen(a: argparse.Namespace, rows: list) -> dict[str, Any]:
    """Gate before speed: packed loss and gradients through varlen flash vs per-document SDPA (bf16).

    Two decoder layers of the benchmark shape, one 16k-token packed micro-batch.
    """
    import torch

    from taskmill.trainer import attention
    from taskmill.trainer.config import ModelConfig
    from taskmill.trainer.data import Document, make_micro_batch, pack_micro_batches
    from taskmill.trainer.engine import PackedLoss, batch_inputs
    from taskmill.trainer.model import build_model

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA"}
    docs = [Document(tuple(i), tuple(m)) for i, m in rows[:200]]
    first = pack_micro_batches(range(len(docs)), [len(d) for d in docs], a.step_tokens)[0]
    mb = make_micro_batch([docs[i] for i in first])
    arch = {**a.arch, "num_hidden_layers": 2}
    lm = build_model(ModelConfig(arch=arch), attention.register("auto"), a.seed).cuda()
    out = {}
    for mode in ("varlen", "sdpa_per_doc"):
        attention.register(mode)
        lm.zero_grad()
        loss = PackedLoss(lm, 4096, torch.bfloat16)(**batch_inputs(mb, torch.device("cuda")), scale=1 / mb.n_targets)
        loss.backward()
        out[mode] = (loss.item(), torch.cat([p.grad.flatten() for p in lm.parameters()]).clone())
    attention.register("auto")
    (lv, gv), (ls, gs) = out["varlen"], out["sdpa_per_doc"]
    return {"docs": len(first), "tokens": int(mb.input_ids.numel()), "loss_varlen": lv, "loss_sdpa": ls,
            "loss_rel_diff": abs(lv - ls) / abs(ls), "grad_rel_diff": float((gv - gs).norm() / gs.norm())}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="small shape on CPU (wiring check)")
    p.add_argument("--cpu", action="store_true", help="the demo's job on CPU: tokens per CPU-second, taskmill vs TRL")
    p.add_argument("--repeat", type=int, default=2, help="--cpu: alternating rounds")
    p.add_argument("--threads", type=int, default=1, help="--cpu: torch intra-op threads")
    p.add_argument("--precisions", default="fp32,bf16", help="--cpu: precisions to compare")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="full,lora")
    p.add_argument("--extra", default="micro8192,compile_old,compile",
                   help="extra taskmill variants, in order: " + ", ".join(VARIANTS))
    p.add_argument("--deadline", type=float, default=1e9, help="skip extra variants after this many seconds")
    p.add_argument("--skip-trl", action="store_true",
                   help="no TRL runs: ratios against TRL numbers recorded on an H200 (labelled so)")
    p.add_argument("--skip-gate", action="store_true", help="skip the varlen-vs-SDPA correctness gate")
    p.add_argument("--skip-eager", action="store_true", help="skip the eager taskmill run of each mode")
    p.add_argument("--profile", default="", help="variant whose run ends with profiled steps (full mode)")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--out", default=None, help="write results JSON here")
    a = p.parse_args(argv)
    unknown = [e for e in filter(None, a.extra.split(",")) if e not in VARIANTS]
    if unknown:
        p.error(f"unknown --extra variants {unknown}; known: {', '.join(VARIANTS)}")
    a.lora_r = 16
    if a.cpu:
        a.arch, a.seq_len, a.trl_batch, a.prompt, a.completion = SMOL, 256, 8, (30, 200), (1, 24)
        a.lora_r, a.modes = 8, "lora" if a.modes == "full,lora" else a.modes
        a.steps, a.warmup = min(a.steps, 3), min(a.warmup, 1)
    elif a.tiny:
        a.arch, a.seq_len, a.trl_batch, a.prompt, a.completion = TINY, 128, 4, (5, 40), (1, 20)
        a.steps, a.warmup = min(a.steps, 4), min(a.warmup, 1)
    else:
        a.arch, a.seq_len, a.trl_batch, a.prompt, a.completion = QWEN05, 2048, 8, (51, 409), (4, 204)
    a.step_tokens = a.seq_len * a.trl_batch
    return a


def _save(results: dict[str, Any], path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=1))


def _attempt(results: dict[str, Any], key: str, fn: Any, path: str | None) -> None:
    t = time.perf_counter()
    try:
        results[key] = fn()
    except Exception as err:  # a failed variant is reported, the others still run
        traceback.print_exc()
        results[key] = {"error": f"{type(err).__name__}: {err}"}
    results[key]["wall_s"] = time.perf_counter() - t
    print(f"[{key}] {json.dumps(results[key])}", flush=True)
    _save(results, path)


def run_taskmill_cpu(a: argparse.Namespace, rows: list, lora: bool, precision: str) -> dict[str, Any]:
    """taskmill on CPU, step by step: CPU seconds (``process_time``) and wall seconds of each step."""
    from taskmill.trainer import config_from_dict, dist
    from taskmill.trainer.data import Document
    from taskmill.trainer.loop import Trainer

    docs = [Document(tuple(i), tuple(m)) for i, m in rows]
    cfg = config_from_dict({
        "model": {"arch": a.arch, "compile": False},
        "lora": {"enabled": lora, "r": a.lora_r, "alpha": 2 * a.lora_r, "target_modules": "all-linear"},
        "data": {"tokens_per_step": a.step_tokens, "micro_batch_tokens": a.step_tokens, "max_length": a.seq_len},
        "optim": {"lr": 2e-4 if lora else 2e-5, "warmup_steps": a.warmup},
        "run": {"output_dir": tempfile.mkdtemp(prefix="tm-bench-"), "max_steps": a.warmup + a.steps, "device": "cpu",
                "progress": False, "save_final": False, "seed": a.seed, "precision": precision, "threads": a.threads},
    })
    trainer = Trainer(cfg, docs, None)
    trainer.scheduler = trainer._scheduler()
    cpu, wall, tokens, losses = [], [], [], []
    try:
        for step in range(a.warmup + a.steps):
            c0, w0 = time.process_time(), time.perf_counter()
            loss, _, _ = trainer.run_step(trainer.plan[step]).read()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            tokens.append(sum(trainer.lengths[i] for i in trainer.plan[step]))
            losses.append(loss)
    finally:
        dist.teardown(trainer.info)
    n = sum(tokens[a.warmup:])
    return {"tokens_per_cpu_s": n / sum(cpu[a.warmup:]), "tokens_per_s": n / sum(wall[a.warmup:]),
            "tokens_per_step": n / a.steps, "losses": losses}


def run_trl_cpu(a: argparse.Namespace, rows: list, lora: bool, precision: str) -> dict[str, Any]:
    """TRL on CPU (its steps timed with ``process_time`` by the step callback)."""
    t = time.perf_counter()
    out = run_trl(a, rows, lora, bf16=precision == "bf16")
    out["tokens_per_cpu_s"] = out.pop("tokens_per_s")
    out["run_wall_s"] = time.perf_counter() - t
    return out


def main_cpu(a: argparse.Namespace, rows: list) -> dict[str, Any]:
    """Alternate taskmill and TRL (each precision) ``--repeat`` times; print tokens per CPU-second."""
    import torch

    torch.set_num_threads(a.threads)
    results: dict[str, Any] = {"device": "cpu", "torch": torch.__version__, "threads": a.threads,
                               "load_before": os.getloadavg(), "runs": {}}
    lora = a.modes == "lora"
    for rnd in range(a.repeat):
        for precision in a.precisions.split(","):
            runs = (("taskmill", run_taskmill_cpu),) + ((("trl", run_trl_cpu),) if not a.skip_trl else ())
            for name, fn in runs:
                key = f"{name}_{precision}"
                r = fn(a, rows, lora, precision)
                r["load"] = os.getloadavg()[0]
                results["runs"].setdefault(key, []).append(r)
                print(f"[round {rnd + 1} {key}] {r['tokens_per_cpu_s']:.1f} tokens/CPU-s (load {r['load']:.2f})", flush=True)
    results["load_after"] = os.getloadavg()
    print(f"\nCPU, {a.threads} thread(s), torch {torch.__version__}, {a.modes}, {a.step_tokens} tokens/step, "
          f"{a.steps} timed steps after {a.warmup}; load average before {results['load_before'][0]:.2f}, "
          f"after {results['load_after'][0]:.2f}")
    print(f"{'precision':10s} {'taskmill tok/CPU-s':>19s} {'TRL tok/CPU-s':>14s} {'taskmill / TRL':>15s}  (best of rounds; all rounds)")
    for precision in a.precisions.split(","):
        tm = [r["tokens_per_cpu_s"] for r in results["runs"][f"taskmill_{precision}"]]
        tr = [r["tokens_per_cpu_s"] for r in results["runs"].get(f"trl_{precision}", [{"tokens_per_cpu_s": float("nan")}])]
        print(f"{precision:10s} {max(tm):19.1f} {max(tr):14.1f} {max(tm) / max(tr):15.2f}  "
              f"({', '.join(f'{x:.1f}' for x in tm)} | {', '.join(f'{x:.1f}' for x in tr)})")
    base = max(r["tokens_per_cpu_s"] for r in results["runs"].get("taskmill_fp32", [{"tokens_per_cpu_s": float("nan")}]))
    for precision in a.precisions.split(","):
        if precision != "fp32" and "taskmill_fp32" in results["runs"]:
            best = max(r["tokens_per_cpu_s"] for r in results["runs"][f"taskmill_{precision}"])
            print(f"taskmill {precision} / fp32: {best / base:.2f}x tokens per CPU-second")
    _save(results, a.out)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    a = parse(argv)
    if a.cpu:
        mean = (sum(a.prompt) + sum(a.completion)) / 2
        rows = make_rows(int((a.warmup + a.steps) * a.step_tokens / mean * 1.5) + 64, a.arch["vocab_size"],
                         a.prompt, a.completion, a.seed)
        return main_cpu(a, rows)
    mean = (sum(a.prompt) + sum(a.completion)) / 2
    extras = list(filter(None, a.extra.split(",")))
    most = max([a.step_tokens] + [VARIANTS[e].get("data", {}).get("tokens_per_step", 0) for e in extras])
    # 1.5x the tokens the longest run needs, plus the profiled steps
    rows = make_rows(int((a.warmup + a.steps + a.profile_steps) * most / mean * 1.5) + 64, a.arch["vocab_size"],
                     a.prompt, a.completion, a.seed)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                               "torch": torch.__version__, "rows": len(rows), "step_tokens": a.step_tokens,
                               "warmup": a.warmup, "steps": a.steps}
    if not a.skip_gate:
        _attempt(results, "check_varlen_vs_sdpa", lambda: check_varlen(a, rows), a.out)
    for mode in a.modes.split(","):
        lora = mode == "lora"
        if not a.skip_eager:
            _attempt(results, f"taskmill_{mode}", lambda: run_taskmill(a, rows, lora), a.out)
        if not a.skip_trl:
            _attempt(results, f"trl_{mode}", lambda: run_trl(a, rows, lora), a.out)
        elif not a.tiny:
            results[f"trl_{mode}"] = {**RECORDED_TRL[mode], "recorded": RECORDED_TRL_SOURCE}
    for mode in a.modes.split(","):
        for extra in extras:
            if time.perf_counter() - t0 > a.deadline:
                print(f"skipping {extra} {mode}: past --deadline", flush=True)
                continue
            prof = extra == a.profile and mode == "full"
            fn = lambda: run_taskmill(a, rows, mode == "lora", extra, prof)  # noqa: E731
            _attempt(results, f"taskmill_{mode}_{extra}", fn, a.out)
    report(results, a.modes.split(","))
    _save(results, a.out)
    return results


def report(results: dict[str, Any], modes: list[str]) -> None:
    """Print the comparison table (ratios are taskmill / TRL)."""
    print(f"\ndevice: {results['device']}  torch {results['torch']}  tokens/step {results['step_tokens']}  "
          f"({results.get('steps')} timed steps after {results.get('warmup')} warm-up)")
    for mode in modes:
        if results.get(f"trl_{mode}", {}).get("recorded"):
            print(f"trl_{mode}: {results[f'trl_{mode}']['recorded']}")
    print(f"{'run':34s} {'tok/s':>10s} {'peak GB':>8s} {'x TRL tok/s':>11s} {'x TRL mem':>9s} {'MFU':>6s} {'MFU6N':>6s}"
          f" {'ms/step':>8s}")
    for mode in modes:
        base = results.get(f"trl_{mode}", {})
        for key in [k for k in results if k.startswith(("taskmill_" + mode, "trl_" + mode))]:
            r = results[key]
            if "error" in r:
                print(f"{key:34s} ERROR {r['error'][:80]}")
                continue
            speed = r["tokens_per_s"] / base["tokens_per_s"] if base.get("tokens_per_s") else float("nan")
            mem = (r["peak_gb"] / base["peak_gb"]) if base.get("peak_gb") and r.get("peak_gb") else float("nan")
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "-"
            mfu6 = f"{100 * r['mfu_6n']:.1f}%" if r.get("mfu_6n") is not None else "-"
            peak = f"{r['peak_gb']:.1f}" if r.get("peak_gb") is not None else "-"
            step = f"{r['step_ms']:.1f}" if r.get("step_ms") is not None else "-"
            print(f"{key:34s} {r['tokens_per_s']:10,.0f} {peak:>8s} {speed:11.2f} {mem:9.2f} {mfu:>6s} {mfu6:>6s}"
                  f" {step:>8s}")
    syncs = {k: r["host_syncs_in_step"] for k, r in results.items() if isinstance(r, dict) and "host_syncs_in_step" in r}
    if syncs:
        print("host syncs inside a step (CUDA sync debug mode): "
              + "; ".join(f"{k}: {v}" for k, v in syncs.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
