"""RLHF rollouts through vLLM (rlhf.rollout_backend: vllm): the parts that run without vLLM or a GPU.

vLLM is not installed here and needs CUDA, so the engine is a stand-in (``StandInLLM`` below, with
``StandInSamplingParams`` / ``StandInLoRARequest``) that records what taskmill asks of vLLM's
``LLM.generate`` and reads the adapter folder each request names. Everything else is real: the
trainer, a PEFT LoRA on a tiny Llama saved as a model folder, the per-step adapter snapshots.
"""

from __future__ import annotations

import random
import sys
import types
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from taskmill.errors import ConfigError, TaskmillError  # noqa: E402
from taskmill.trainer import config_from_dict, train  # noqa: E402
from taskmill.trainer import rollout_vllm  # noqa: E402


class StandInSamplingParams:
    """Stand-in for ``vllm.SamplingParams`` (vllm/sampling_params.py, v0.34.0): keeps its keyword
    arguments and refuses what vLLM's ``_verify_args`` refuses among the fields taskmill sets."""

    FIELDS = {"n", "temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "include_stop_str_in_output",
              "logprobs", "prompt_logprobs", "detokenize", "min_p", "stop_token_ids", "ignore_eos"}

    def __init__(self, **kwargs):
        assert set(kwargs) <= self.FIELDS, sorted(set(kwargs) - self.FIELDS)
        t, n = kwargs.get("temperature", 1.0), kwargs.get("n", 1)
        if not 0.0 <= t <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {t}.")
        if t < 1e-5 and n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {n}.")
        if not 0.0 < kwargs.get("top_p", 1.0) <= 1.0 or kwargs.get("top_k", 0) < -1:
            raise ValueError("top_p must be in (0, 1], top_k 0 / -1 (no cut) or >= 1")
        if kwargs.get("max_tokens", 16) < 1 or any(not x for x in kwargs.get("stop") or []):
            raise ValueError("max_tokens must be at least 1; stop cannot contain an empty string.")
        seed = kwargs.get("seed")
        assert seed is None or (isinstance(seed, int) and -(2 ** 63) <= seed < 2 ** 63)  # msgpack int64
        self.kwargs = kwargs


class StandInLoRARequest:
    """Stand-in for ``vllm.lora.request.LoRARequest`` (same fields and checks: id >= 1, a path)."""

    def __init__(self, lora_name, lora_int_id, lora_path=""):
        if lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {lora_int_id}")
        assert lora_path, "lora_path cannot be empty"
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


# EngineArgs fields (vllm/engine/arg_utils.py, v0.34.0) that taskmill or the tests pass to vllm.LLM
ENGINE_ARGS = {"model", "tokenizer", "seed", "gpu_memory_utilization", "max_model_len", "enable_lora",
               "max_lora_rank", "max_loras", "dtype", "enforce_eager", "tensor_parallel_size"}


class StandInLLM:
    """Stand-in for ``vllm.LLM``: records the engine arguments and every generate call.

    Each call reads the LoRA weights at the request's path (what vLLM would load) and returns, per
    prompt, ``n`` completions of token ids drawn from the request's seed (EOS inside some of them,
    so the trainer's cut is exercised), shaped like vLLM's ``RequestOutput`` / ``CompletionOutput``.
    ``generate`` takes ``use_tqdm`` and ``lora_request`` as keywords only, as vLLM's does;
    ``llm_engine.engine_core.shutdown()`` records the engine's shutdown.
    """

    built: list[dict] = []

    def __init__(self, model, **kwargs):
        assert set(kwargs) <= ENGINE_ARGS, sorted(set(kwargs) - ENGINE_ARGS)
        self.kwargs = {"model": model, **kwargs}
        self.calls: list[dict] = []
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self._shutdown))
        self.shut_down = False
        StandInLLM.built.append(self.__dict__)

    def _shutdown(self, timeout=None):
        self.shut_down = True

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        from safetensors.torch import load_file

        assert not self.shut_down and len(sampling_params) == len(prompts)
        weights = load_file(str(Path(lora_request.lora_path) / "adapter_model.safetensors"))
        self.calls.append({"prompts": prompts, "params": [p.kwargs for p in sampling_params],
                           "lora": (lora_request.lora_name, lora_request.lora_int_id, lora_request.lora_path),
                           "weights": weights})
        outs = []
        for k, (prompt, p) in enumerate(zip(prompts, sampling_params)):
            assert len(prompt["prompt_token_ids"]) < self.kwargs.get("max_model_len", 1 << 30)
            rng = random.Random(p.kwargs["seed"])
            comps = [types.SimpleNamespace(index=i, text="", cumulative_logprob=None, logprobs=None, finish_reason="length",
                                           token_ids=[rng.choice([30, 31, 32, 2]) for _ in range(p.kwargs["max_tokens"])])
                     for i in range(p.kwargs["n"])]
            outs.append(types.SimpleNamespace(request_id=str(k), prompt=None, prompt_logprobs=None, finished=True,
                                              prompt_token_ids=prompt["prompt_token_ids"], outputs=comps))
        return outs


STAND_IN_API = types.SimpleNamespace(LLM=StandInLLM, SamplingParams=StandInSamplingParams,
                                     LoRARequest=StandInLoRARequest)


def test_requests_sample_k_at_the_temperature_with_a_seed_per_step_and_prompt():
    r = types.SimpleNamespace(samples_per_prompt=4, temperature=0.7, max_new_tokens=12, stop=["\n\n"])
    assert rollout_vllm.sampling_kwargs(r, 5) == {
        "n": 4, "temperature": 0.7, "top_p": 1.0, "top_k": -1, "max_tokens": 12, "stop": ["\n\n"], "seed": 5,
        "include_stop_str_in_output": True}
    r.stop = []
    assert rollout_vllm.sampling_kwargs(r, 5)["stop"] is None
    seeds = {rollout_vllm.rollout_seed(0, step, i) for step in range(50) for i in range(8)}
    assert len(seeds) == 400 and all(0 <= s < 2 ** 60 for s in seeds)
    # vLLM seeds a request's n samples seed, seed + 1, ...: no two samples of a run share a stream
    children = [s + j for s in seeds for j in range(16)]
    assert len(set(children)) == len(children) and max(children) < 2 ** 63
    assert rollout_vllm.rollout_seed(3, 7, 1) == rollout_vllm.rollout_seed(3, 7, 1) != rollout_vllm.rollout_seed(4, 7, 1)
    assert rollout_vllm.token_prompts([(1, 2, 3), [4]]) == [{"prompt_token_ids": [1, 2, 3]}, {"prompt_token_ids": [4]}]


def _cfg(tm, out: Path, model_dir: Path, corpus: Path, steps: int, **rlhf) -> dict:
    # reward = response length in characters: the stand-in's samples differ in length (EOS cuts
    # some short), so advantages are non-zero and every step moves the LoRA weights
    (out.parent / "rw.py").write_text("def chars(prompt, response, row):\n    return len(response)\n")
    cfg = tm.base_config(out, lora={"enabled": True, "r": 4, "alpha": 8},
                         optim={"lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
                         data={"corpus": str(corpus), "tokens_per_step": 512, "micro_batch_tokens": 512,
                               "max_length": 96, "epochs": 2},
                         run={"max_steps": steps, "device": "auto"})
    cfg["model"] = {"path": str(model_dir)}
    cfg["objective"] = "rlhf"
    cfg["rlhf"] = {"reward": "callable", "reward_callable": f"{out.parent / 'rw.py'}:chars", "max_new_tokens": 6, "prompts_per_step": 2, "samples_per_prompt": 3,
                   "rollout_backend": "vllm", "vllm_options": {"gpu_memory_utilization": 0.25}, **rlhf}
    return cfg


def test_vllm_config_problems_are_listed_together(tm, tmp_path):
    cfg = tm.base_config(tmp_path)  # model.arch (random init), LoRA off, device cpu
    cfg.update({"objective": "rlhf", "rlhf": {"rollout_backend": "vllm", "vllm_options": {"model": "x", "seed": 1}}})
    with pytest.raises(ConfigError) as err:
        config_from_dict(cfg)
    text = str(err.value)
    for needle in ("needs a CUDA GPU (run.device is 'cpu')", "needs lora.enabled: true", "not model.arch or a GGUF",
                   "rlhf.vllm_options: model, seed are set by taskmill"):
        assert needle in text, text
    cfg["lora"], cfg["model"] = {"enabled": True}, {"path": "m"}
    cfg["run"]["device"] = "auto"
    for t in (3.0, 0.005):  # vLLM refuses T > 2 and raises 0 < T < 0.01 to 0.01
        cfg["rlhf"] = {"rollout_backend": "vllm", "temperature": t}
        with pytest.raises(ConfigError, match=rf"rlhf.temperature: vLLM samples at 0.01 to 2.0 .* got {t}"):
            config_from_dict(cfg)
    cfg["rlhf"] = {"rollout_backend": "vllm", "stop": ["\n", ""]}  # vLLM: "stop cannot contain an empty string"
    with pytest.raises(ConfigError, match=r"rlhf.stop: every stop sequence must be a non-empty string"):
        config_from_dict(cfg)
    cfg["rlhf"] = {"rollout_backend": "sglang"}
    with pytest.raises(ConfigError, match="rlhf.rollout_backend: expected one of 'hf', 'vllm'"):
        config_from_dict(cfg)
    cfg["rlhf"] = {"vllm_options": {"gpu_memory_utilization": 0.5}}
    with pytest.raises(ConfigError, match="only used with rlhf.rollout_backend: vllm"):
        config_from_dict(cfg)


def test_without_vllm_or_cuda_the_run_stops_with_one_line(tm, tmp_path, tiny_model_dir, toy_corpus, monkeypatch):
    from typer.testing import CliRunner

    from taskmill.cli import app

    monkeypatch.setitem(sys.modules, "vllm", None)  # an import of vllm fails, as where it is not installed
    with pytest.raises(TaskmillError, match=r"needs vllm, which is not installed: pip install taskmill\[vllm\]"):
        rollout_vllm.vllm_api()
    if torch.cuda.is_available():
        pytest.skip("the no-CUDA line needs a machine without CUDA")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_cfg(tm, tmp_path / "run", tiny_model_dir, toy_corpus["train"], 2)))
    out = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml")])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert lines[-1] == ("taskmill: error: rlhf.rollout_backend 'vllm' needs a CUDA GPU and none is visible: "
                         "use rlhf.rollout_backend: hf on this machine"), lines
    assert not (tmp_path / "run" / "adapter").exists()


def _lora(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if ".lora_B." in k}


def test_vllm_rollouts_serve_each_steps_current_lora_weights(tm, tmp_path, tiny_model_dir, toy_corpus, monkeypatch):
    """Per step: a fresh adapter snapshot, a new LoRARequest id, k samples per prompt from one request."""
    from safetensors.torch import load_file

    monkeypatch.setattr(rollout_vllm, "require_cuda", lambda: None)  # the stand-in engine runs on the CPU
    monkeypatch.setattr(rollout_vllm, "vllm_api", lambda: STAND_IN_API)
    StandInLLM.built.clear()
    cfg = config_from_dict(_cfg(tm, tmp_path / "run", tiny_model_dir, toy_corpus["train"], 3))
    result = train(cfg)
    (engine,) = StandInLLM.built  # one engine for the whole run
    assert engine["shut_down"]  # and shut down when training ends
    args = engine["kwargs"]
    assert args["model"] == args["tokenizer"] == str(tiny_model_dir) and args["enable_lora"] is True
    assert args["max_lora_rank"] == 8 and args["gpu_memory_utilization"] == 0.25 and args["seed"] == 0  # r=4 -> 8
    calls = engine["calls"]
    assert [c["lora"][1] for c in calls] == [1, 2, 3]  # a new id per step: vLLM caches adapters by id
    assert [Path(c["lora"][2]).name for c in calls] == ["step-000000", "step-000001", "step-000002"]
    assert all(len(c["prompts"]) == 2 and [p["n"] for p in c["params"]] == [3, 3] for c in calls)
    assert all(p["seed"] == rollout_vllm.rollout_seed(0, s, i) for s, c in enumerate(calls) for i, p in enumerate(c["params"]))
    # step 0 serves the untrained LoRA (B = 0); later steps the weights after each update
    assert all(float(v.abs().max()) == 0.0 for v in _lora(calls[0]["weights"]).values())
    assert any(float(v.abs().max()) > 0 for v in _lora(calls[2]["weights"]).values())
    assert any(not torch.equal(calls[1]["weights"][k], calls[2]["weights"][k]) for k in calls[1]["weights"])
    assert sorted(p.name for p in (tmp_path / "run" / "rollout_adapter").iterdir()) == ["step-000002"]
    rec = result.records
    assert len(rec) == 3 and all(0 < r["response_length"] <= 6 and r["entropy"] > 0 for r in rec)
    # what step 2 served is exactly the policy a 2-step run ends with (same seeds, same stand-in samples)
    StandInLLM.built.clear()
    two = train(config_from_dict(_cfg(tm, tmp_path / "two", tiny_model_dir, toy_corpus["train"], 2)))
    final = load_file(str(two.saved / "adapter_model.safetensors"))
    assert sorted(final) == sorted(calls[2]["weights"])
    assert all(torch.equal(final[k], calls[2]["weights"][k]) for k in final)
