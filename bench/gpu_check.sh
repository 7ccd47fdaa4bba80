#!/usr/bin/env bash
# One GPU session's trainer check, sized for a single call of about 9 minutes on one H100/H200:
# the varlen gate, TRL (packing=bfd) and taskmill's default (compiled) trainer, full fine-tuning
# and LoRA r=16, side by side in one process, plus the per-step host-sync check. Results land in
# $OUT (or ./.bench when OUT is unset): bench.json, bench.log.
#
# The GPU machines lack trl and datasets; bring them as wheels in .whl/ (git-ignored) first:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# then run this script from the repository root with .whl carried along. On the CPU,
# `bash bench/gpu_check.sh --tiny` runs the same steps on a tiny shape (a wiring check).
set -euo pipefail
out=${OUT:-.bench}
mkdir -p "$out"
site=/tmp/taskmill-site
if ! python3 -c "import trl, datasets" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
# the repository root is the package `taskmill`: expose it under that name without installing
mkdir -p /tmp/taskmill-pkg && ln -sfn "$PWD" /tmp/taskmill-pkg/taskmill
export PYTHONPATH=/tmp/taskmill-pkg:$site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
# --deadline: extra variants start only while the run is younger than this many seconds
python3 bench/trainer_vs_trl.py --skip-eager --extra compile --deadline "${DEADLINE:-330}" \
  --out "$out/bench.json" "$@" 2>&1 | tee "$out/bench.log"
