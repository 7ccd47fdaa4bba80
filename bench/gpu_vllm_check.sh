#!/usr/bin/env bash
# vLLM GPU check, sized for one device call of under 8 minutes on one H100/H200
# (bench/gpu_vllm_check.py does the work; read its docstring for what is compared):
#   - the vLLM eval backend vs the HF backend on the same requests, fp32, on a small random Llama
#     made here: max |delta loglik| (base model, and a LoRA adapter through LoRARequest), the same
#     is_greedy flags, the same greedy generations; close() gives the GPU memory back;
#   - two RLHF steps with rlhf.rollout_backend: vllm.
# It fails loudly (exit 1, FAIL: lines), never skips. Results: $OUT/vllm_check.json and
# $OUT/vllm_check.log ($OUT unset: ./.bench).
#
# It needs nothing from the internet, but it needs vLLM, and the device image has none (read
# /work/.library/device/KINDS.md). A vLLM wheel pins its own torch (vllm 0.34.0: torch==2.14.0,
# 239 MB wheel), far over the 64 MiB that travels with one call, so it cannot be carried as
# .whl/ the way bench/gpu_check.sh carries trl. Where a machine has vLLM importable (or a
# prepared site folder named by VLLM_SITE), run from the repository root:
#   bash bench/gpu_vllm_check.sh            # on the GPU machine
#   bash bench/gpu_vllm_check.sh --cpu-smoke  # here: builds the assets, runs only the HF side
set -euo pipefail
out=${OUT:-.bench}
mkdir -p "$out"
# the repository root is the package `taskmill`: expose it under that name without installing
mkdir -p /tmp/taskmill-pkg && ln -sfn "$PWD" /tmp/taskmill-pkg/taskmill
export PYTHONPATH=/tmp/taskmill-pkg${VLLM_SITE:+:$VLLM_SITE}${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
py=${PYTHON:-python3}
if [[ " $* " != *" --cpu-smoke "* ]]; then
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi >/dev/null 2>&1; then
    echo "FAIL: no NVIDIA GPU here (nvidia-smi); use --cpu-smoke for the CPU wiring check" | tee "$out/vllm_check.log"
    exit 1
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  if ! "$py" -c "import vllm" 2>"$out/vllm_import.err"; then
    echo "FAIL: vllm is not importable with $py ($(tail -n 1 "$out/vllm_import.err")); the device image has no" \
         "vLLM and its wheel (with its pinned torch) is too large to carry: set VLLM_SITE to a folder holding it" \
      | tee "$out/vllm_check.log"
    exit 1
  fi
  "$py" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
fi
# 450 s for the checks: engine start and CUDA-graph capture twice (eval, RLHF) on a small model
set -o pipefail
timeout "${DEADLINE:-450}" "$py" bench/gpu_vllm_check.py --out "$out" "$@" 2>&1 | tee "$out/vllm_check.log"
