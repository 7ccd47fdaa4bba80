"""Exact resume after SIGKILL for objective reward and objective rlhf (the real CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")


def _log(out: Path) -> list[dict]:
    f = out / "log.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def _kill_after(cfg: Path, out: Path, step: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "taskmill", "train", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("step", 0) >= step for r in _log(out)):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


def _prefs(path: Path, n: int) -> Path:
    rng = random.Random(0)
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            seq = [rng.choice(words) for _ in range(rng.randint(2, 5))] + ["fish"]
            fh.write(json.dumps({"prompt": f"Reverse: {' '.join(seq)}", "chosen": " ".join(reversed(seq)),
                                 "rejected": " ".join(seq)}) + "\n")
    return path


def _config(tm, tmp_path: Path, tok_dir: Path, objective: str, corpus: Path) -> Path:
    cfg = tm.base_config(tmp_path / "killed", lora={"enabled": True, "r": 4, "dropout": 0.1},
                         optim={"lr": 3e-3, "warmup_steps": 1},
                         data={"corpus": str(corpus), "tokens_per_step": 256, "micro_batch_tokens": 256,
                               "max_length": 96, "epochs": 10},
                         run={"save_every": 2, "max_steps": 8, "keep_checkpoints": 2})
    cfg["model"] = {"arch": tm.tiny_arch(49152), "tokenizer": str(tok_dir)}
    cfg["objective"] = objective
    if objective == "rlhf":
        (tmp_path / "rw.py").write_text("def e_share(prompt, response, row):\n"
                                        "    return response.count('e') / max(len(response), 1)\n")
        cfg["rlhf"] = {"reward": "callable", "reward_callable": f"{tmp_path / 'rw.py'}:e_share",
                       "max_new_tokens": 6, "prompts_per_step": 2, "samples_per_prompt": 2}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("objective", ["reward", "rlhf"])
def test_sigkill_then_resume_matches_uninterrupted(objective, tm, tmp_path, smol_tok_dir, toy_corpus):
    from taskmill.trainer import load_config, train

    corpus = _prefs(tmp_path / "prefs.jsonl", 48) if objective == "reward" else toy_corpus["train"]
    cfg = _config(tm, tmp_path, smol_tok_dir, objective, corpus)
    _kill_after(cfg, tmp_path / "killed", 3)
    resumed = train(load_config(cfg))
    assert resumed.records[0]["step"] in (3, 5, 7)  # from the newest whole checkpoint
    ref = train(load_config(cfg, [f"run.output_dir={tmp_path / 'ref'}"]))
    assert resumed.records[-1]["step"] == ref.records[-1]["step"] == 8
    key = "reward_margin" if objective == "reward" else "reward"
    for a, b in zip(resumed.records, ref.records[-len(resumed.records):]):
        assert a["step"] == b["step"]
        assert abs(a["loss"] - b["loss"]) <= 1e-6 * max(abs(b["loss"]), 1e-6), (a, b)
        assert abs(a[key] - b[key]) <= 1e-6 * max(abs(b[key]), 1e-6), (a, b)
