"""LoRA adapters in PEFT format (vLLM-loadable), and `taskmill merge` giving identical outputs."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def base_dir(tm, tmp_path_factory, smol_tok_dir):
    """A tiny random Llama saved as a plain HF folder with the SmolLM2 tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    arch = tm.tiny_arch(49152)
    arch.pop("model_type")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base")
    LlamaForCausalLM(LlamaConfig(**arch)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(smol_tok_dir).save_pretrained(folder)
    return folder


def test_lora_adapter_then_merge_gives_same_outputs(tm, tmp_path, base_dir, toy_corpus):
    from typer.testing import CliRunner
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from taskmill.cli import app
    from taskmill.trainer import config_from_dict, train

    cfg = tm.file_config(tmp_path / "run", base_dir, toy_corpus, lora={"enabled": True, "r": 8, "alpha": 16,
                                                                       "use_rslora": True},
                         run={"max_steps": 4}, optim={"lr": 1e-2})
    cfg["model"] = {"path": str(base_dir)}
    result = train(config_from_dict(cfg))
    adapter = result.saved
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    assert (adapter / "adapter_model.safetensors").is_file()
    assert acfg["r"] == 8 and acfg["use_rslora"] and not acfg.get("modules_to_save")
    assert set(acfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert acfg["base_model_name_or_path"] == str(base_dir)
    from taskmill.backends.vllm import adapter_problems

    assert adapter_problems(adapter, 8) == []  # what vLLM's loader checks, at the smallest rank that fits

    merged_dir = tmp_path / "merged"
    done = CliRunner().invoke(app, ["merge", str(adapter), str(merged_dir)])
    assert done.exit_code == 0, done.output
    ids = torch.randint(0, 49152, (2, 24), generator=torch.Generator().manual_seed(0))
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        with_adapter = PeftModel.from_pretrained(base, str(adapter)).eval()(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)(input_ids=ids).logits
    assert (with_adapter - plain).abs().max() > 1e-3  # the adapter learned something
    assert (merged - with_adapter).abs().max() <= 1e-5 * with_adapter.abs().max()
    assert (merged_dir / "tokenizer_config.json").is_file()


def test_merge_rejects_a_folder_without_adapter(tmp_path):
    from typer.testing import CliRunner

    from taskmill.cli import app

    done = CliRunner().invoke(app, ["merge", str(tmp_path), str(tmp_path / "out")])
    assert done.exit_code == 2 and "adapter_config.json" in done.output


@pytest.mark.slow
def test_adapter_files_do_not_depend_on_the_process_hash_seed(tm, tmp_path, smol_tok_dir, toy_corpus):
    """PEFT keeps target_modules as a set: saved in set order, the adapter's bytes (and hash, which keys
    the eval cache and LOCO results) changed from one process to the next."""
    import os
    import subprocess
    import sys

    import yaml

    saved = []
    for seed in ("1", "2"):
        out = tmp_path / f"run{seed}"
        cfg = tm.file_config(out, smol_tok_dir, toy_corpus, lora={"enabled": True, "r": 4, "alpha": 8},
                             run={"max_steps": 1})
        (tmp_path / f"c{seed}.yaml").write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "PYTHONHASHSEED": seed, "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run([sys.executable, "-m", "taskmill", "train", str(tmp_path / f"c{seed}.yaml")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        saved.append((out / "adapter" / "adapter_config.json").read_bytes())
    assert saved[0] == saved[1]
    modules = json.loads(saved[0])["target_modules"]
    assert modules == sorted(modules) and len(modules) == 7
