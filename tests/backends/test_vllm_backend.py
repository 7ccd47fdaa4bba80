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


class StandInValidationError(ValueError):
    """Stand-in for ``vllm.exceptions.VLLMValidationError`` (a ``ValueError``)."""


@dataclass
class StandInSamplingParams:
    """Stand-in for ``vllm.SamplingParams`` (vllm/sampling_params.py, v0.34.0): the fields taskmill
    sets, their defaults, and the checks of ``__post_init__`` / ``_verify_args`` that can refuse them."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = 16
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    include_stop_str_in_output: bool = False

    def __post_init__(self):
        self.stop = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if not 0.0 <= self.temperature <= 2.0:
            raise StandInValidationError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0 or self.top_k < -1:
            raise StandInValidationError("top_p must be in (0, 1] and top_k >= -1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise StandInValidationError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if any(not s for s in self.stop):
            raise StandInValidationError("stop cannot contain an empty string.")
        if self.stop and not self.detokenize:
            raise StandInValidationError("stop strings are only supported when detokenize is True.")
        if self.temperature < 1e-5 and self.n > 1:
            raise StandInValidationError(f"n must be 1 when using greedy sampling, got {self.n}.")


@dataclass
class StandInLoRARequest:
    """Stand-in for ``vllm.lora.request.LoRARequest`` (vllm/lora/request.py): id >= 1, a path."""

    lora_name: str
    lora_int_id: int
    lora_path: str = ""

    def __post_init__(self):
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")
        assert self.lora_path, "lora_path cannot be empty"


@dataclass
class StandInLogprob:
    """Same fields as ``vllm.logprobs.Logprob``."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class StandInCompletionOutput:
    """Same fields as ``vllm.outputs.CompletionOutput`` (those a completion always has)."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None


@dataclass
class StandInRequestOutput:
    """Same fields as ``vllm.outputs.RequestOutput`` (those taskmill can read)."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list | None
    outputs: list
    finished: bool = True


class StandInEngineCore:
    """Stand-in for ``LLM.llm_engine.engine_core`` (the engine-core client): records shutdown."""

    def __init__(self):
        self.shut_down = False

    def shutdown(self, timeout=None):
        self.shut_down = True


class StandInLLM:
    """Stand-in for ``vllm.LLM``: prompt log-probs and greedy text from a tiny HF model.

    Mirrors what taskmill depends on: ``generate(prompts, sampling_params, *, use_tqdm,
    lora_request)`` (keyword-only after the params), token prompts only, the input processor's
    refusal of prompts of ``max_model_len`` tokens or more (``model_config.max_model_len``),
    ``prompt_logprobs[0] is None``, ``{token_id: Logprob}`` entries holding the prompt token and the
    top ``prompt_logprobs`` tokens, ``rank`` = number of logits >= the token's (vLLM's rank kernel),
    ``llm_engine.engine_core.shutdown()``.
    """

    def __init__(self, model, tokenizer, max_model_len=512):
        self.model, self.tokenizer, self.calls = model, tokenizer, []
        self.model_config = types.SimpleNamespace(max_model_len=max_model_len)
        self.llm_engine = types.SimpleNamespace(engine_core=StandInEngineCore())

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None,
                 tokenization_kwargs=None, mm_processor_kwargs=None):
        import torch

        if self.llm_engine.engine_core.shut_down:
            raise RuntimeError("engine core is shut down")
        if not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(prompts)
        assert len(sampling_params) == len(prompts)
        self.calls.append((prompts, sampling_params, lora_request))
        outs = []
        for k, (prompt, params) in enumerate(zip(prompts, sampling_params)):
            ids = prompt["prompt_token_ids"]
            limit = self.model_config.max_model_len
            if not ids or len(ids) >= limit:  # vllm/v1/engine/input_processor.py _validate_prompt_len
                raise StandInValidationError(f"The decoder prompt (length {len(ids)}) plus the number of requested "
                                             f"output tokens (at least 1) is longer than the maximum model length of {limit}.")
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
            plp = None
            if params.prompt_logprobs is not None:
                logp = torch.log_softmax(logits, -1)
                plp = [None]
                for pos in range(1, len(ids)):
                    row, tok = logp[pos - 1], ids[pos]
                    entry = {tok: StandInLogprob(float(row[tok]), int((row >= row[tok]).sum()))}
                    for r, top in enumerate(row.topk(params.prompt_logprobs).indices.tolist(), 1):
                        entry.setdefault(top, StandInLogprob(float(row[top]), r))
                    plp.append(entry)
            text, new = "", []
            if params.prompt_logprobs is None:
                hf = HFBackend(self.model, self.tokenizer)
                budget = min(params.max_tokens, limit - len(ids))
                text = hf.generate([GenerateRequest(self.tokenizer.decode(ids), tuple(params.stop or ()), budget)])[0]
            outs.append(StandInRequestOutput(str(k), None, list(ids), plp,
                                             [StandInCompletionOutput(0, text, new, None, None, "stop")]))
        return outs


def _stand_in_llm_factory(hf_model, tokenizer, built):
    """``vllm.LLM``'s constructor shape (``model``, then keyword-only engine arguments) over the stand-in."""

    def LLM(model, *, max_model_len=None, **engine_args):
        engine = StandInLLM(hf_model, tokenizer, max_model_len or 512)
        built.append({"model": model, "max_model_len": max_model_len, **engine_args})
        return engine

    return LLM


@pytest.fixture()
def stand_in_vllm(monkeypatch, tiny_model, smol_tokenizer):
    """A stand-in ``vllm`` module: ``LLM`` (building :class:`StandInLLM`), ``SamplingParams``, ``LoRARequest``."""
    import importlib.machinery

    mod = types.ModuleType("vllm")
    mod.__spec__ = importlib.machinery.ModuleSpec("vllm", None)  # get_backend's find_spec("vllm") sees it
    mod.SamplingParams = StandInSamplingParams
    mod.built = []
    mod.LLM = _stand_in_llm_factory(tiny_model, smol_tokenizer, mod.built)
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


def test_requests_longer_than_max_model_len_keep_their_end_as_lm_eval_does(stand_in_vllm, tiny_model, smol_tokenizer):
    """vLLM refuses prompts of max_model_len tokens or more: the context is cut from the left to
    max_model_len - 1 tokens in all (lm-eval's vLLM rule); the HF backend with max_length =
    max_model_len - 1 scores the same window."""
    engine = StandInLLM(tiny_model, smol_tokenizer, max_model_len=12)
    backend = VLLMBackend("m", engine=engine)
    assert backend.max_model_len == 12  # read from the engine's model_config
    context = "The quick brown fox jumps over the lazy dog and then runs far into the green woods."
    reqs = [LoglikelihoodRequest(context, " again"), LoglikelihoodRequest("Short", " one")]
    got = backend.loglikelihood(reqs)
    sent = [p["prompt_token_ids"] for p in engine.calls[-1][0]]
    assert len(sent[0]) == 11 and len(sent[1]) < 11
    ref = HFBackend(tiny_model, smol_tokenizer, max_length=11).loglikelihood(reqs)
    for g, r in zip(got, ref):
        assert g.logprob == pytest.approx(r.logprob, abs=1e-4) and (g.is_greedy, g.n_tokens) == (r.is_greedy, r.n_tokens)
    from taskmill.errors import DataError

    with pytest.raises(DataError, match="leaves no room for context in vLLM's max_model_len 12"):
        backend.loglikelihood([LoglikelihoodRequest("a", " " + "word " * 20)])
    with pytest.raises(DataError, match="request 0: continuation '' has no tokens"):
        backend.loglikelihood([LoglikelihoodRequest("a", "")])


def test_generation_prompts_leave_room_for_max_tokens(stand_in_vllm, tiny_model, smol_tokenizer):
    engine = StandInLLM(tiny_model, smol_tokenizer, max_model_len=12)
    backend = VLLMBackend("m", engine=engine)
    context = "one two three four five six seven eight nine ten eleven twelve"
    backend.generate([GenerateRequest(context, (), 4), GenerateRequest("hi", (), 4)])
    sent = [p["prompt_token_ids"] for p in engine.calls[-1][0]]
    full = smol_tokenizer.encode(context, add_special_tokens=False)
    assert sent[0] == full[-8:] and sent[1] == smol_tokenizer.encode("hi", add_special_tokens=False)


def test_a_tie_at_the_top_is_greedy_although_vllms_rank_is_2():
    """vLLM's rank counts the logits >= the token's (its rank kernel), so a token tied with the argmax
    has rank 2; lm-eval (max over the returned log-probs) and the HF backend call it greedy."""
    out = types.SimpleNamespace(prompt_logprobs=[None, {5: StandInLogprob(-0.7, 2), 9: StandInLogprob(-0.7, 1)},
                                                 {6: StandInLogprob(-0.2, 1)}])
    ll = parse_prompt_logprobs(out, 1, [5, 6])
    assert ll.is_greedy is True and ll.logprob == pytest.approx(-0.9)
    out.prompt_logprobs[1][9] = StandInLogprob(-0.6, 1)
    assert parse_prompt_logprobs(out, 1, [5, 6]).is_greedy is False


def test_close_shuts_the_shared_engine_down_and_the_next_request_rebuilds_it(stand_in_vllm, tiny_model, smol_tokenizer, tmp_path):
    adapter = _peft_adapter(tiny_model, tmp_path / "fold0", r=8)
    base = VLLMBackend("m", max_loras=2, max_lora_rank=16, max_model_len=64)  # built through vllm.LLM
    first = base.engine
    assert stand_in_vllm.built == [{"model": "m", "max_model_len": 64, "tensor_parallel_size": 1, "dtype": "auto",
                                    "seed": 0, "gpu_memory_utilization": 0.9, "enable_lora": True, "max_loras": 2,
                                    "max_lora_rank": 16}]
    tuned = base.with_adapter(adapter)
    tuned.close()
    assert first.llm_engine.engine_core.shut_down and base.engine is None and tuned.engine is None
    tuned.loglikelihood([LoglikelihoodRequest("a", " b")])  # rebuilt once, for both
    assert len(stand_in_vllm.built) == 2 and base.engine is tuned.engine is not first
    base.loglikelihood([LoglikelihoodRequest("a", " b")])
    assert len(stand_in_vllm.built) == 2 and base.engine.calls[-1][2] is None


def test_data_parallel_workers_are_independent_engines_without_vllm_dp_variables():
    from taskmill.backends.vllm import dp_worker_env

    env = {"VLLM_DP_RANK": "0", "VLLM_DP_SIZE": "2", "VLLM_DP_MASTER_PORT": "1", "PATH": "/bin"}
    dp_worker_env(env, 1, 2)
    assert env == {"CUDA_VISIBLE_DEVICES": "2,3", "PATH": "/bin"}
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}  # the run was given GPUs 4-7
    dp_worker_env(env, 1, 2)
    assert env == {"CUDA_VISIBLE_DEVICES": "6,7"}


def test_loco_serves_every_fold_from_one_engine_and_frees_it_before_training(stand_in_vllm, tiny_model, tmp_path):
    """LOCO's default factory: one vLLM engine for all folds, also when a fold's adapter is asked for
    first (a resumed run); release_backend() shuts it down before a fold trains in this process."""
    from taskmill.orchestrate.loco import default_factory, release_backend

    config = types.SimpleNamespace(model="m", eval={"backend": "vllm", "backend_options": {"max_model_len": 64}})
    make = default_factory(config)
    a, b = _peft_adapter(tiny_model, tmp_path / "a", r=8), _peft_adapter(tiny_model, tmp_path / "b", r=4)
    tuned = make(a)  # before any base backend: still the one shared engine
    base = make(None)
    assert len(stand_in_vllm.built) == 1 and tuned.engine is base.engine and base.adapter is None
    first = base.engine
    release_backend(make)
    assert first.llm_engine.engine_core.shut_down and base.engine is None
    other = make(b)
    other.loglikelihood([LoglikelihoodRequest("a", " b")])
    assert len(stand_in_vllm.built) == 2 and other.engine.calls[-1][2].lora_path == str(b)
    release_backend(lambda adapter: None)  # a factory without an engine: nothing to free
