"""One adapter, one ``adapter_hash``: retrains in fresh processes (each with its own string-hash
seed, which orders PEFT's ``target_modules`` set) give byte-identical adapters and one hash; the
hash covers the weights and a canonical form of ``adapter_config.json``."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("peft")

TRAIN = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import base_config, random_docs, tiny_arch
from taskmill.trainer import config_from_dict, train
cfg = base_config(__import__("pathlib").Path({out!r}), lora={{"enabled": True, "r": 4, "dropout": 0.1}},
                  run={{"max_steps": 3, "progress_every_s": 0}})
train(config_from_dict(cfg), random_docs(40))
"""


def _retrain(out: Path, hash_seed: int) -> Path:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    code = TRAIN.format(tests=str(Path(__file__).parent), out=str(out))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "adapter"


@pytest.mark.slow
def test_five_retrains_give_one_adapter_hash(tmp_path):
    from taskmill.backends.base import ADAPTER_PATTERNS, hash_files

    adapters = [_retrain(tmp_path / f"run{seed}", seed) for seed in (0, 1, 2, 3, 4)]
    hashes = {hash_files(a, ADAPTER_PATTERNS) for a in adapters}
    assert len(hashes) == 1, hashes
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert len({(a / name).read_bytes() for a in adapters}) == 1, name
    assert len(json.loads((adapters[0] / "adapter_config.json").read_text())["target_modules"]) == 7


def test_hash_covers_weights_and_canonical_config(tm, tmp_path):
    import shutil

    from taskmill.backends.base import ADAPTER_PATTERNS, hash_files
    from taskmill.trainer import config_from_dict, train

    cfg = tm.base_config(tmp_path / "a", lora={"enabled": True, "r": 4}, run={"max_steps": 2, "progress_every_s": 0})
    adapter = train(config_from_dict(cfg), tm.random_docs(30)).saved
    first = hash_files(adapter, ADAPTER_PATTERNS)
    # the same config in another key order, list order and layout: the same hash
    same = tmp_path / "same"
    shutil.copytree(adapter, same)
    data = json.loads((same / "adapter_config.json").read_text())
    random.Random(1).shuffle(data["target_modules"])
    (same / "adapter_config.json").write_text(json.dumps(dict(reversed(list(data.items())))))
    assert hash_files(same, ADAPTER_PATTERNS) == first
    # a setting that changes the adapter's meaning: another hash
    data["lora_alpha"] = data["lora_alpha"] * 2
    (same / "adapter_config.json").write_text(json.dumps(data))
    assert hash_files(same, ADAPTER_PATTERNS) != first
    # other weights (another seed): another hash
    cfg["run"]["seed"], cfg["run"]["output_dir"] = 1, str(tmp_path / "b")
    other = train(config_from_dict(cfg), tm.random_docs(30)).saved
    assert hash_files(other, ADAPTER_PATTERNS) != first
