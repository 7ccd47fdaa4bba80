"""The real CLI: train from a YAML corpus config; SIGKILL mid-run then resume; 2-process DDP (gloo)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")


def _write_cfg(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _log(out: Path) -> list[dict]:
    f = out / "log.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def test_cli_train_lowers_held_out_loss_and_reports_bad_config(tm, tmp_path, smol_tok_dir, toy_corpus):
    from typer.testing import CliRunner

    from taskmill.cli import app

    cfg = _write_cfg(tmp_path / "c.yaml", tm.file_config(tmp_path / "out", smol_tok_dir, toy_corpus))
    runner = CliRunner()
    before = runner.invoke(app, ["train", str(cfg), "run.max_steps=1", "optim.lr=1e-9", f"run.output_dir={tmp_path / 'b'}"])
    assert before.exit_code == 0, before.output
    after = runner.invoke(app, ["train", str(cfg), "data.epochs=3", "optim.lr=3e-3"])
    assert after.exit_code == 0, after.output
    eval_before = float(before.output.split("eval loss ")[1].split()[0])
    eval_after = float(after.output.split("eval loss ")[1].split()[0])
    assert eval_after < 0.7 * eval_before, (eval_before, eval_after)
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 3e-3 and saved["data"]["epochs"] == 3
    assert (tmp_path / "out" / "model" / "config.json").is_file()
    assert all("tokens_per_s" in r and "peak_mem_gb" in r for r in _log(tmp_path / "out") if "loss" in r)
    bad = runner.invoke(app, ["train", str(cfg), "lora.r=0", "lora.enabled=true", "data.max_length=-1"])
    assert bad.exit_code == 2
    assert "lora.r" in bad.output and "data.max_length" in bad.output


def test_sigkill_then_resume_matches_uninterrupted(tm, tmp_path, smol_tok_dir, toy_corpus):
    """LoRA with dropout (so RNG state matters), killed with SIGKILL after a checkpoint, resumed."""
    from taskmill.trainer import load_config, train

    sections = dict(lora={"enabled": True, "r": 4, "dropout": 0.1},
                    run={"save_every": 3, "max_steps": 40, "keep_checkpoints": 2},
                    data={"epochs": 20, "tokens_per_step": 256, "micro_batch_tokens": 128})
    out = tmp_path / "killed"
    cfg = _write_cfg(tmp_path / "c.yaml", tm.file_config(out, smol_tok_dir, toy_corpus, **sections))
    proc = subprocess.Popen([sys.executable, "-m", "taskmill", "train", str(cfg)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("step", 0) >= 7 for r in _log(out)):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "adapter").exists()
    resumed = train(load_config(cfg))
    assert resumed.records[0]["step"] in (4, 7, 10)  # from the newest whole checkpoint
    ref = train(load_config(cfg, [f"run.output_dir={tmp_path / 'ref'}"]))
    assert resumed.records[-1]["step"] == ref.records[-1]["step"] == 40
    assert abs(resumed.losses[-1] - ref.losses[-1]) <= 1e-6 * abs(ref.losses[-1])
    assert abs(resumed.eval_loss - ref.eval_loss) <= 1e-6 * ref.eval_loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_gloo_processes_match_one_process(mode, tm, tmp_path, smol_tok_dir, toy_corpus):
    """torchrun with 2 CPU processes (DDP, or FSDP2 sharding) gives the single-process losses."""
    from taskmill.trainer import load_config, train

    sections = dict(run={"max_steps": 4}, data={"tokens_per_step": 512, "micro_batch_tokens": 128})
    cfg = _write_cfg(tmp_path / "c.yaml", tm.file_config(tmp_path / "ddp", smol_tok_dir, toy_corpus, **sections))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "taskmill", "train", str(cfg), f"run.distributed={mode}"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = [r for r in _log(tmp_path / "ddp") if "loss" in r]
    single = train(load_config(cfg, [f"run.output_dir={tmp_path / 'one'}"]))
    assert [r["step"] for r in ddp] == [1, 2, 3, 4]
    for a, b in zip(ddp, single.records):
        assert a["tokens"] == b["tokens"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * b["loss"], (a["loss"], b["loss"])
    ddp_eval = [r["eval_loss"] for r in _log(tmp_path / "ddp") if "eval_loss" in r][-1]
    assert abs(ddp_eval - single.eval_loss) <= 1e-5 * single.eval_loss


def _prefs(path: Path, n: int, seed: int) -> Path:
    """Preference pairs on the reverse-the-words task: chosen reversed, rejected as given."""
    import random

    rng = random.Random(seed)
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            seq = [rng.choice(words) for _ in range(rng.randint(2, 5))]
            if seq == seq[::-1]:  # a palindrome would make chosen == rejected, which read_pairs refuses
                seq.append("fish")
            fh.write(json.dumps({"prompt": f"Reverse: {' '.join(seq)}", "chosen": " ".join(reversed(seq)),
                                 "rejected": " ".join(seq)}) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode,recipe", [("fsdp2", "lora"), ("ddp", "dpo"), ("fsdp2", "dpo")])
def test_two_gloo_processes_match_one_process_lora_and_dpo(mode, recipe, tm, tmp_path, smol_tok_dir, toy_corpus):
    """LoRA under FSDP2 and DPO (LoRA, reference = adapter off) under DDP/FSDP2 match one process."""
    from taskmill.trainer import load_config, train

    sections = dict(run={"max_steps": 3}, data={"tokens_per_step": 512, "micro_batch_tokens": 128},
                    lora={"enabled": True, "r": 4}, optim={"lr": 1e-2, "warmup_steps": 0})
    raw = tm.file_config(tmp_path / "multi", smol_tok_dir, toy_corpus, **sections)
    if recipe == "dpo":
        raw["objective"], raw["dpo"] = "dpo", {"beta": 0.3}
        raw["data"]["micro_batch_tokens"] = 2 * raw["data"]["max_length"]  # a pair's two sequences share a row
        raw["data"]["corpus"] = str(_prefs(tmp_path / "prefs.jsonl", 48, 0))
        raw["data"]["eval_corpus"] = str(_prefs(tmp_path / "prefs_eval.jsonl", 8, 1))
    cfg = _write_cfg(tmp_path / "c.yaml", raw)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "taskmill", "train", str(cfg), f"run.distributed={mode}"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    multi = [r for r in _log(tmp_path / "multi") if "loss" in r]
    single = train(load_config(cfg, [f"run.output_dir={tmp_path / 'one'}"]))
    assert [r["step"] for r in multi] == [1, 2, 3]
    assert len({round(r["loss"], 6) for r in multi}) > 1  # the adapter moves: losses differ per step
    for a, b in zip(multi, single.records):
        assert a["tokens"] == b["tokens"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"]), (a["loss"], b["loss"])
        if recipe == "dpo":
            assert a["reward_margin"] == pytest.approx(b["reward_margin"], rel=1e-4, abs=1e-6)
    multi_eval = [r["eval_loss"] for r in _log(tmp_path / "multi") if "eval_loss" in r][-1]
    assert abs(multi_eval - single.eval_loss) <= 1e-5 * single.eval_loss
    adapter = json.loads((tmp_path / "multi" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and not adapter.get("modules_to_save")
