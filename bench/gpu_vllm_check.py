"""vLLM on a real GPU against the HF backend on the same requests, and one RLHF vLLM-rollout run.

Run by ``bench/gpu_vllm_check.sh`` on a machine with CUDA and vLLM; it fails (exit 1, a ``FAIL:``
line per problem) rather than skipping. Everything it needs is made here, offline: a byte-level BPE
tokenizer trained on generated text, a small random Llama (head_dim 64, fp32 weights) saved as an HF
folder with it, a random-weight PEFT LoRA adapter (B != 0, so the adapter changes the scores), and a
tiny prompt/completion corpus.

Checks (each prints one line; the numbers land in ``OUT/vllm_check.json``):

1. log-likelihood: vLLM backend vs HF backend, fp32, base model and through the LoRA adapter
   (``LoRARequest``): max |delta loglik| <= ``--tol`` and the same ``is_greedy`` flags; requests
   include ones longer than ``max_model_len`` (both cut to the same last ``max_model_len - 1``
   tokens);
2. greedy generation: the same texts (stop sequences and token budgets), at most
   ``--max-gen-mismatch`` different;
3. ``close()``: the engine's GPU memory comes back (device-wide free memory);
4. RLHF: two steps of ``objective: rlhf`` with ``rollout_backend: vllm`` (one engine, a LoRARequest
   per step), finite losses and rewards, the engine shut down at the end.

``--cpu-smoke`` builds the assets and runs only the HF side on the CPU (a wiring check of this script
where vLLM cannot run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

WORDS = ("the cat dog bird sat ran on under mat tree house red blue green small big one two three four five "
         "and then a of to in is was very quick slow lazy brown fox jumps over river hill stone light").split()


def build_tokenizer(folder: Path) -> Any:
    """A word-level tokenizer over :data:`WORDS` and ``.``, saved as an HF tokenizer folder.

    Every token decodes to whole words, so a greedy generation scored back as a continuation is
    the same tokens (a byte-level BPE under a random model emits bytes that do not round-trip).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "</s>", "<pad>", "<unk>", ".", *sorted(set(WORDS))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with one space
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.save_pretrained(folder)
    return fast


def sentences(n: int, seed: int) -> list[str]:
    """Random word strings, ``.`` a token of its own."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + " ." for _ in range(n)]


def build_model(folder: Path, tokenizer: Any) -> None:
    """A 2-layer random Llama, hidden 256, 4 heads of 64 (a head size every vLLM attention backend has)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=0.1, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def build_adapter(model_dir: Path, folder: Path) -> None:
    """A PEFT LoRA (r=8 on q/v) with random A and B: the adapted model scores differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft.save_pretrained(folder)


def requests(max_model_len: int) -> tuple[list, list]:
    from taskmill.backends.requests import GenerateRequest, LoglikelihoodRequest

    sents = sentences(48, 7)
    ll = [LoglikelihoodRequest(s.rsplit(" ", 2)[0], " " + " ".join(s.rsplit(" ", 2)[1:])) for s in sents]
    ll.append(LoglikelihoodRequest("", "the cat sat ."))
    long_ctx = " ".join(sentences(60, 8))  # far more than max_model_len tokens: the context is cut
    ll += [LoglikelihoodRequest(long_ctx, " the end ."), LoglikelihoodRequest(long_ctx[:-40], " red fox")]
    gen = [GenerateRequest(s, (" .", " river"), 12) for s in sentences(24, 9)]
    gen.append(GenerateRequest(long_ctx, (), 8))
    return ll, gen


def compare_ll(name: str, got: list, ref: list, tol: float, report: dict, fails: list[str]) -> None:
    deltas = [abs(g.logprob - r.logprob) for g, r in zip(got, ref)]
    flags = sum(g.is_greedy != r.is_greedy for g, r in zip(got, ref))
    counts = sum(g.n_tokens != r.n_tokens for g, r in zip(got, ref))
    worst = max(deltas)
    report[name] = {"requests": len(ref), "max_abs_delta": worst, "mean_abs_delta": sum(deltas) / len(deltas),
                    "greedy_flag_mismatches": flags, "token_count_mismatches": counts,
                    "greedy_true": sum(r.is_greedy for r in ref)}
    print(f"{name}: {len(ref)} requests, max |delta loglik| {worst:.2e} (tol {tol:.0e}), "
          f"is_greedy mismatches {flags}, token-count mismatches {counts}", flush=True)
    if not math.isfinite(worst) or worst > tol:
        fails.append(f"{name}: max |delta loglik| {worst:.3e} > {tol:.0e}")
    if flags or counts:
        fails.append(f"{name}: {flags} is_greedy and {counts} token-count mismatches")


def gpu_free() -> int:
    import torch

    return int(torch.cuda.mem_get_info()[0])


def rlhf_run(work: Path, model_dir: Path, report: dict, fails: list[str]) -> None:
    """Two RLOO steps with vLLM rollouts on the tiny model; the engine is shut down at the end."""
    from taskmill.records import Row
    from taskmill.trainer import config_from_dict, train
    from taskmill.trainer import rollout_vllm

    corpus = work / "rlhf" / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    with corpus.open("w", encoding="utf-8") as fh:
        for i, s in enumerate(sentences(16, 11)):
            head, tail = s[:-2].rsplit(" ", 1)
            row = Row(id=f"{i:016x}", task="t", dataset="toy", split="train", row_index=i, template_id="t0",
                      template_name="toy", format="zero_shot", prompt=head, completion=tail,
                      messages=({"role": "user", "content": head}, {"role": "assistant", "content": tail}))
            fh.write(json.dumps(row.to_json()) + "\n")
    reward = work / "rlhf" / "rw.py"
    reward.write_text("def chars(prompt, response, row):\n    return float(len(response))\n")
    cfg = {"model": {"path": str(model_dir)}, "objective": "rlhf",
           "lora": {"enabled": True, "r": 8, "alpha": 16},
           "data": {"corpus": str(corpus), "tokens_per_step": 1024, "micro_batch_tokens": 1024, "max_length": 128},
           "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
           "run": {"output_dir": str(work / "rlhf" / "run"), "progress": False, "device": "cuda", "max_steps": 2},
           "rlhf": {"reward": "callable", "reward_callable": f"{reward}:chars", "prompts_per_step": 4,
                    "samples_per_prompt": 4, "max_new_tokens": 16, "temperature": 1.0, "rollout_backend": "vllm",
                    "vllm_options": {"gpu_memory_utilization": 0.25, "dtype": "float32"}}}
    engines: list[Any] = []
    real = rollout_vllm.VllmRollouts._engine

    def spy(self: Any, adapter: Path) -> Any:  # keeps a handle on the engine to check its shutdown
        engine = real(self, adapter)
        if not engines:
            engines.append(engine)
        return engine

    rollout_vllm.VllmRollouts._engine = spy  # type: ignore[method-assign]
    t0 = time.perf_counter()
    try:
        result = train(config_from_dict(cfg))
    finally:
        rollout_vllm.VllmRollouts._engine = real  # type: ignore[method-assign]
    recs = result.records
    core = getattr(getattr(engines[0], "llm_engine", None), "engine_core", None) if engines else None
    report["rlhf"] = {"steps": len(recs), "seconds": time.perf_counter() - t0,
                      "records": [{k: r.get(k) for k in ("loss", "reward", "response_length", "kl")} for r in recs]}
    print(f"rlhf: {len(recs)} steps in {report['rlhf']['seconds']:.1f} s: {report['rlhf']['records']}", flush=True)
    if len(recs) != 2:
        fails.append(f"rlhf: {len(recs)} steps recorded, expected 2")
    for r in recs:
        if not all(isinstance(r.get(k), (int, float)) and math.isfinite(r[k]) for k in ("loss", "reward")):
            fails.append(f"rlhf: a step's loss/reward is not finite: {r}")
    if not (Path(cfg["run"]["output_dir"]) / "rollout_adapter").is_dir():
        fails.append("rlhf: no rollout_adapter folder: the vLLM rollouts did not run")
    if core is not None and hasattr(core, "_finalizer") and getattr(core._finalizer, "alive", False):
        fails.append("rlhf: the rollout engine was not shut down after training")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", ".bench"))
    ap.add_argument("--tol", type=float, default=2e-2,
                    help="largest |delta loglik| allowed (nats; fp32, but kernels differ: TF32, attention); an "
                         "off-by-one at the context boundary moves a score by nats")
    ap.add_argument("--max-gen-mismatch", type=int, default=0)
    ap.add_argument("--max-model-len", type=int, default=128)
    ap.add_argument("--cpu-smoke", action="store_true", help="assets and the HF side only (no vLLM, no GPU)")
    args = ap.parse_args()
    out = Path(args.out)
    work = out / "vllm_check_work"
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    fails: list[str] = []

    import torch

    from taskmill.backends.hf import HFBackend

    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("FAIL: no CUDA device visible", flush=True)
        return 1
    model_dir, adapter = work / "model", work / "adapter"
    tokenizer = build_tokenizer(work / "tokenizer")
    build_model(model_dir, tokenizer)
    build_adapter(model_dir, adapter)
    ll, gen = requests(args.max_model_len)
    # the HF backend scores the window vLLM can take: max_model_len - 1 tokens
    hf = HFBackend(str(model_dir), device=device, dtype="float32", max_length=args.max_model_len - 1)
    hf_gen = hf.generate(gen)
    # continuations that are HF's own greedy output: their is_greedy is True, so the flags are tested
    from taskmill.backends.requests import LoglikelihoodRequest

    ll += [LoglikelihoodRequest(g.context, " " + text.strip()) for g, text in zip(gen[:16], hf_gen[:16]) if text.strip()]
    hf_ll = hf.loglikelihood(ll)
    hf_tuned = HFBackend(str(model_dir), adapter=str(adapter), device=device, dtype="float32",
                         max_length=args.max_model_len - 1).loglikelihood(ll)
    report["hf"] = {"greedy_true": sum(x.is_greedy for x in hf_ll), "adapter_changes_scores":
                    max(abs(a.logprob - b.logprob) for a, b in zip(hf_ll, hf_tuned))}
    print(f"hf: {len(ll)} loglikelihood, {len(gen)} generate requests; adapter moves scores by up to "
          f"{report['hf']['adapter_changes_scores']:.3f} nats", flush=True)
    if report["hf"]["adapter_changes_scores"] < 1e-3:
        fails.append("the random adapter does not change the HF scores: the adapter check would be blind")
    if args.cpu_smoke:
        (out / "vllm_check.json").write_text(json.dumps(report, indent=1))
        print("cpu smoke: assets and HF side ran (vLLM not run)")
        return 1 if fails else 0
    del hf
    torch.cuda.empty_cache()

    import vllm

    from taskmill.backends.vllm import VLLMBackend

    report["versions"] = {"vllm": vllm.__version__, "torch": torch.__version__}
    free0 = gpu_free()
    t0 = time.perf_counter()
    backend = VLLMBackend(str(model_dir), dtype="float32", gpu_memory_utilization=0.3, max_model_len=args.max_model_len,
                          max_lora_rank=8, max_loras=1, seed=0)
    report["engine_start_s"] = time.perf_counter() - t0
    free1 = gpu_free()
    compare_ll("loglikelihood base", backend.loglikelihood(ll), hf_ll, args.tol, report, fails)
    tuned = backend.with_adapter(adapter)
    compare_ll("loglikelihood adapter (LoRARequest)", tuned.loglikelihood(ll), hf_tuned, args.tol, report, fails)
    v_gen = backend.generate(gen)
    diff = [i for i, (a, b) in enumerate(zip(v_gen, hf_gen)) if a != b]
    report["generate"] = {"requests": len(gen), "mismatches": len(diff),
                          "examples": [{"hf": hf_gen[i], "vllm": v_gen[i]} for i in diff[:5]]}
    print(f"generate: {len(gen)} greedy requests, {len(diff)} differ from HF", flush=True)
    if len(diff) > args.max_gen_mismatch:
        fails.append(f"generate: {len(diff)} of {len(gen)} greedy texts differ from HF: {report['generate']['examples']}")
    backend.close()
    time.sleep(2)  # the engine-core process exits asynchronously
    free2 = gpu_free()
    gib = 1 << 30
    report["memory_gib"] = {"free_before": free0 / gib, "free_with_engine": free1 / gib, "free_after_close": free2 / gib}
    print(f"close: free GPU memory {free0 / gib:.1f} GiB before, {free1 / gib:.1f} with the engine, "
          f"{free2 / gib:.1f} after close()", flush=True)
    if free0 - free2 > 0.5 * max(free0 - free1, 1) + gib // 2:
        fails.append(f"close(): only {(free2 - free1) / gib:.1f} of {(free0 - free1) / gib:.1f} GiB came back")
    try:
        rlhf_run(work, model_dir, report, fails)
    except Exception as err:  # one line, then the failure list
        fails.append(f"rlhf: {type(err).__name__}: {err}")
    report["fails"] = fails
    (out / "vllm_check.json").write_text(json.dumps(report, indent=1, default=str))
    for line in fails:
        print(f"FAIL: {line}", flush=True)
    print("vllm check: " + ("FAILED" if fails else "all checks passed"), flush=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
