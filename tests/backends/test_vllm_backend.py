"""vLLM backend: request building and result parsing.

vLLM cannot be installed here (a CUDA-only wheel), so these tests run the backend against
``StandInLLM``, a stand-in engine with ``vllm.LLM``'s ``generate``/``get_tokenizer`` surface whose
prompt log-probs come from a real (tiny) transformers model, and a stand-in ``vllm`` module providing
``SamplingParams`` and ``LoRARequest`` records. They check what the backend sends (token prompts,
sampling parameters, LoRA requests) and how it reads vLLM's ``RequestOutput`` layout back.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from taskmill.backends.hf import HFBackend
from taskmill.backends.vllm import VLLMBackend, lora_int_id, parse_prompt_logprobs, shard, unshard, token_prompts
from taskmill.backends.requests import GenerateRequest, LoglikelihoodRequest


@dataclass
class StandInSamplingParams:
    """Stand-in for ``vllm.SamplingParams`` (the fields the backend sets)."""

    temperature: float = 1.0
    max_tokens: int = 16
    prompt_logprobs: int | None = None
    detokenize: bool = True
    stop: list[str] | None = None


@dataclass
class StandInLoRARequest:
    """Stand-in for ``vllm.lora.request.LoRARequest``."""

    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class StandInLogprob:
    """Same fields as ``vllm.logprobs.Logprob``."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class StandInOutput:
    prompt_token_ids: list[int]
    prompt_logprobs: list
    outputs: list = field(default_factory=list)


class StandInLLM:
    """Stand-in for ``vllm.LLM``: computes prompt log-probs and greedy text with a tiny HF model."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.calls = model, tokenizer, []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params=None, use_tqdm=True, lora_request=None):
        import torch

        self.calls.append((prompts, sampling_params, lora_request))
        outs = []
        for prompt, params in zip(prompts, sampling_params):
            ids = prompt["prompt_token_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(self.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
            plp = [None]
            for pos in range(1, len(ids)):
                row = logp[pos - 1]
                top = int(row.argmax())
                rank = int((row > row[ids[pos]]).sum()) + 1
                entry = {ids[pos]: StandInLogprob(float(row[ids[pos]]), rank)}
                entry.setdefault(top, StandInLogprob(float(row[top]), 1))
                plp.append(entry)
            text = ""
            if not params.prompt_logprobs:
                hf = HFBackend(self.model, self.tokenizer)
                text = hf.generate([GenerateRequest(self.tokenizer.decode(ids), tuple(params.stop or ()), params.max_tokens)])[0]
            outs.append(StandInOutput(ids, plp, [types.SimpleNamespace(text=text)]))
        return outs


@pytest.fixture()
def stand_in_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.SamplingParams = StandInSamplingParams
    lora_mod = types.ModuleType("vllm.lora.request")
    lora_mod.LoRARequest = StandInLoRARequest
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora_mod)
    return mod


def test_loglikelihood_requests_and_parsing_match_hf(stand_in_vllm, tiny_model, smol_tokenizer, tmp_path):
    engine = StandInLLM(tiny_model, smol_tokenizer)
    backend = VLLMBackend(str(tmp_path / "model-id"), engine=engine)
    reqs = [LoglikelihoodRequest("The cat sat on the", " mat"), LoglikelihoodRequest("Q: 2+2?\nA:", " four apples"),
            LoglikelihoodRequest("", "Hello")]
    got = backend.loglikelihood(reqs)
    ref = HFBackend(tiny_model, smol_tokenizer).loglikelihood(reqs)
    for g, r in zip(got, ref):
        assert g.logprob == pytest.approx(r.logprob, abs=1e-4) and g.is_greedy == r.is_greedy and g.n_tokens == r.n_tokens
    prompts, params, lora = engine.calls[0]
    assert all(set(p) == {"prompt_token_ids"} for p in prompts)
    assert params[0].max_tokens == 1 and params[0].prompt_logprobs == 1 and params[0].temperature == 0.0
    assert lora is None


def test_adapter_goes_through_lora_request_on_the_same_engine(stand_in_vllm, tiny_model, smol_tokenizer, tmp_path):
    adapter = _peft_adapter(tiny_model, tmp_path / "fold0", r=8)
    engine = StandInLLM(tiny_model, smol_tokenizer)
    base = VLLMBackend("m", engine=engine, max_loras=2, max_lora_rank=16)
    assert base.engine_args["enable_lora"] and base.engine_args["max_loras"] == 2 and base.engine_args["max_lora_rank"] == 16
    tuned = base.with_adapter(adapter)
    tuned.loglikelihood([LoglikelihoodRequest("a", " b")])
    lora = engine.calls[-1][2]
    assert lora.lora_path == str(adapter) and lora.lora_int_id == lora_int_id(tuned.adapter_hash) >= 1
    assert tuned.engine is base.engine and base.adapter is None and tuned.adapter_hash != ""


def test_generation_sends_stop_and_budget(stand_in_vllm, tiny_model, smol_tokenizer):
    engine = StandInLLM(tiny_model, smol_tokenizer)
    backend = VLLMBackend("m", engine=engine)
    [text] = backend.generate([GenerateRequest("Once upon a time", ("\n",), 5)])
    params = engine.calls[-1][1][0]
    assert params.stop == ["\n"] and params.max_tokens == 5 and params.temperature == 0.0
    assert "\n" not in text


def test_parse_rejects_short_logprobs_and_reads_ranks():
    out = types.SimpleNamespace(prompt_logprobs=[None, {5: StandInLogprob(-0.5, 1)}, {7: StandInLogprob(-2.0, 3), 1: StandInLogprob(-0.1, 1)}])
    ll = parse_prompt_logprobs(out, 1, [5, 7])
    assert ll.logprob == pytest.approx(-2.5) and ll.is_greedy is False and ll.n_tokens == 2
    from taskmill.errors import TaskmillError

    with pytest.raises(TaskmillError):
        parse_prompt_logprobs(out, 2, [7, 9])


def test_data_parallel_shards_round_trip():
    shards = shard(7, 3)
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    results = [[f"r{i}" for i in s] for s in shards]
    assert unshard(shards, results, 7) == [f"r{i}" for i in range(7)]
    assert token_prompts([([1, 2], [3])]) == [{"prompt_token_ids": [1, 2, 3]}]


def test_missing_vllm_gives_install_hint(monkeypatch):
    from taskmill.errors import TaskmillError
    from taskmill.backends import get_backend

    monkeypatch.setitem(sys.modules, "vllm", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(TaskmillError, match=r"pip install taskmill\[vllm\]"):
        get_backend("vllm", model="m")


def test_unknown_backend_or_option_is_one_clear_error():
    from taskmill.errors import TaskmillError
    from taskmill.backends import get_backend

    with pytest.raises(TaskmillError, match="unknown backend 'tpu'"):
        get_backend("tpu", model="m")
    with pytest.raises(TaskmillError, match="does not take option"):
        get_backend("openai", model="m", tensor_parallel_size=2)


def _peft_adapter(model, folder, **lora):
    """A real PEFT adapter folder saved from a copy of ``model``."""
    import copy

    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(copy.deepcopy(model), LoraConfig(target_modules=["q_proj", "v_proj"], **lora))
    peft.save_pretrained(str(folder))
    return folder


def test_adapter_checks_follow_vllms_loader_rules(tiny_model, tmp_path):
    from taskmill.backends.vllm import adapter_problems, serving_rank

    good = _peft_adapter(tiny_model, tmp_path / "good", r=8)
    assert adapter_problems(good, 8) == [] and adapter_problems(good, 64) == []
    wide = _peft_adapter(tiny_model, tmp_path / "wide", r=24)
    assert adapter_problems(wide, 16) == ["rank 24 > the engine's max_lora_rank 16 (use max_lora_rank: 32)"]
    patterned = _peft_adapter(tiny_model, tmp_path / "pattern", r=8, rank_pattern={"v_proj": 40})
    assert adapter_problems(patterned, 32) == ["rank 40 > the engine's max_lora_rank 32 (use max_lora_rank: 64)"]
    bad = _peft_adapter(tiny_model, tmp_path / "bad", r=8, bias="lora_only", use_dora=True, modules_to_save=["lm_head"])
    problems = adapter_problems(bad, 16)
    assert len(problems) == 3 and any("modules_to_save" in p for p in problems)
    assert any("DoRA" in p for p in problems) and any("bias" in p for p in problems)
    (bad / "adapter_model.safetensors").unlink()
    assert "no adapter_model.safetensors, .bin or .pt" in adapter_problems(bad, 16)
    assert adapter_problems(tmp_path / "nothing", 16) == ["no readable adapter_config.json (FileNotFoundError)"]
    assert [serving_rank(r) for r in (1, 2, 16, 17, 300, 512, 513)] == [1, 8, 16, 32, 320, 512, None]


def test_adapter_checks_read_the_config_fields_vllm_requires(tmp_path):
    import json

    from taskmill.backends.vllm import adapter_problems

    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "adapter_model.pt").write_bytes(b"weights")  # vLLM also loads .pt
    (folder / "adapter_config.json").write_text(json.dumps({"target_modules": ["q_proj"]}))
    assert adapter_problems(folder, 16) == ["adapter_config.json lacks r", "adapter_config.json lacks lora_alpha"]
    cfg = {"r": 0, "lora_alpha": 8, "target_modules": ["q_proj"], "init_lora_weights": "pissa_niter_4",
           "lora_bias": True, "layer_replication": [[0, 2]]}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    problems = adapter_problems(folder, 16)
    assert len(problems) == 4 and "rank 0 (must be >= 1)" in problems
    assert any("pissa" in p for p in problems) and any("lora_bias" in p for p in problems)
    cfg = {"r": 600, "lora_alpha": 8, "target_modules": ["q_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    assert adapter_problems(folder, 512) == [
        "rank 600 > the engine's max_lora_rank 512 (no vLLM max_lora_rank serves rank 600 (largest 512): lower lora.r)"]


def test_backend_refuses_unservable_adapters_and_ranks(stand_in_vllm, tiny_model, smol_tokenizer, tmp_path):
    from taskmill.errors import ConfigError, DataError

    engine = StandInLLM(tiny_model, smol_tokenizer)
    with pytest.raises(ConfigError, match="max_lora_rank: vLLM accepts 1, 8, 16"):
        VLLMBackend("m", engine=engine, max_lora_rank=24)
    base = VLLMBackend("m", engine=engine, max_lora_rank=16)
    wide = _peft_adapter(tiny_model, tmp_path / "wide", r=32)
    with pytest.raises(DataError) as err:
        base.with_adapter(wide)
    assert str(err.value).count("\n") == 0 and str(wide) in str(err.value) and "use max_lora_rank: 32" in str(err.value)
    with pytest.raises(DataError, match="rank 32"):
        VLLMBackend("m", adapter=wide, engine=engine, max_lora_rank=16)
    assert engine.calls == []  # refused before any engine work
