"""Objectives beyond SFT: continued pre-training, DPO (loss, reference, margins), stacked adapters."""

from __future__ import annotations

import math
import random

import pytest

from taskmill.errors import ConfigError, DataError
from taskmill.trainer import config_from_dict, train


# --- DPO loss against the published formula -------------------------------------------------------


def test_dpo_loss_matches_the_formula_on_hand_computed_numbers():
    import torch

    from taskmill.trainer.dpo import dpo_loss

    # pair 1, beta 0.1: pi_c=-5.0 ref_c=-6.0 pi_r=-7.0 ref_r=-6.5
    #   z = 0.1 * ((-5.0 - -6.0) - (-7.0 - -6.5)) = 0.1 * (1.0 + 0.5) = 0.15
    #   loss = -log sigmoid(0.15) = log(1 + e^-0.15) = log(1 + 0.8607079764) = 0.6209570478
    losses, rc, rr = dpo_loss(torch.tensor([-5.0]), torch.tensor([-7.0]), torch.tensor([-6.0]),
                              torch.tensor([-6.5]), beta=0.1)
    assert losses.item() == pytest.approx(0.6209570478, abs=1e-7)
    assert rc.item() == pytest.approx(0.1) and rr.item() == pytest.approx(-0.05)
    # pair 2, beta 0.5: pi_c=-2 ref_c=-3 pi_r=-4 ref_r=-2 -> z = 0.5 * (1 + 2) = 1.5
    #   loss = log(1 + e^-1.5) = log(1 + 0.2231301601) = 0.2014132780
    losses, _, _ = dpo_loss(torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-3.0]),
                            torch.tensor([-2.0]), beta=0.5)
    assert losses.item() == pytest.approx(0.2014132780, abs=1e-7)
    # label smoothing 0.2 on pair 2: 0.8 * log(1 + e^-1.5) + 0.2 * log(1 + e^1.5)
    smoothed, _, _ = dpo_loss(torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-3.0]),
                              torch.tensor([-2.0]), beta=0.5, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(0.8 * 0.2014132780 + 0.2 * math.log1p(math.exp(1.5)), abs=1e-6)


def _toy_pairs(n, seed=0, vocab=512):
    """Random prompts; chosen answers from ids 10-19, rejected from 300-309 (a learnable preference)."""
    from taskmill.trainer.data import Document
    from taskmill.trainer.dpo import Pair

    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        p = tuple(rng.randrange(vocab) for _ in range(rng.randint(4, 12)))
        c = tuple(rng.randrange(10, 20) for _ in range(3))
        r = tuple(rng.randrange(300, 310) for _ in range(rng.randint(2, 4)))
        pairs.append(Pair(Document(p + c, (0,) * len(p) + (1,) * len(c)), Document(p + r, (0,) * len(p) + (1,) * len(r))))
    return pairs


def _seq_logp(model, doc):
    """Summed log-prob of a document's target tokens from one plain (unpacked) forward."""
    import torch

    ids = torch.tensor([doc.ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[t - 1, doc.ids[t]]) for t in range(1, len(doc)) if doc.loss_mask[t])


def test_packed_dpo_module_equals_the_formula_on_unpacked_forwards(tm):
    """Full fine-tuning: the packed policy/reference log-probs give the formula's loss exactly."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from taskmill.trainer import attention
    from taskmill.trainer.data import make_micro_batch
    from taskmill.trainer.dpo import DpoLoss
    from taskmill.trainer.engine import batch_inputs

    arch = dict(tm.tiny_arch())
    hf = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_config(hf).eval()
    pol = AutoModelForCausalLM.from_config(hf).eval()
    pol.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(0.05 * torch.randn_like(p))  # policy != reference
    name = attention.register("sdpa_per_doc")
    for m in (ref, pol):
        m.config._attn_implementation = name
    pairs = _toy_pairs(3)
    module = DpoLoss(pol, ref, None, chunk=5, amp_dtype=None, beta=0.3, label_smoothing=0.0)
    batch = batch_inputs(make_micro_batch([d for p in pairs for d in (p.chosen, p.rejected)]), torch.device("cpu"))
    with torch.no_grad():
        loss, stats = module(**batch, scale=1.0)
    for m in (ref, pol):
        m.config._attn_implementation = "sdpa"
    expected = 0.0
    with torch.no_grad():
        for p in pairs:
            z = 0.3 * ((_seq_logp(pol, p.chosen) - _seq_logp(ref, p.chosen)) - (_seq_logp(pol, p.rejected) - _seq_logp(ref, p.rejected)))
            expected += -math.log(1 / (1 + math.exp(-z)))
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert float(stats[4]) == 3 and float(stats[0]) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def _dpo_cfg(out, lora, tm, **extra):
    sections = {"lora": {"enabled": lora, "r": 8}, "optim": {"lr": 1e-2 if lora else 1e-3, "warmup_steps": 0, "schedule": "constant"},
                "data": {"tokens_per_step": 256, "micro_batch_tokens": 128, "max_length": 32},
                "run": {"max_steps": 6, "save_final": False}}
    cfg = tm.base_config(out, **sections)
    cfg.update({"objective": "dpo", "dpo": {"beta": 0.5}}, **extra)
    return config_from_dict(cfg)


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_dpo_reward_margin_rises_on_a_toy_preference_set(tmp_path, tm, lora):
    pairs = _toy_pairs(64)
    result = train(_dpo_cfg(tmp_path, lora, tm), documents=pairs, eval_documents=_toy_pairs(8, seed=1))
    margins = [r["reward_margin"] for r in result.records]
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # policy starts equal to its reference
    assert result.records[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert margins[-1] > 0.2 and result.records[-1]["reward_accuracy"] > 0.8
    assert result.eval_loss < math.log(2) - 0.1


def test_dpo_reads_trl_pairs_and_validates(tmp_path, tm, smol_tok_dir):
    import json

    from taskmill.trainer.dpo import read_pairs, tokenize_pairs
    from transformers import AutoTokenizer

    f = tmp_path / "prefs.jsonl"
    f.write_text(json.dumps({"prompt": "Is the sky blue?", "chosen": "yes", "rejected": "no"}) + "\n"
                 + json.dumps({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
                               "rejected": [{"role": "assistant", "content": "5"}]}) + "\n")
    tok = AutoTokenizer.from_pretrained(str(smol_tok_dir))
    pairs = tokenize_pairs(tok, read_pairs(f), 64)
    for p in pairs:  # same prompt tokens, different answers
        k = p.chosen.loss_mask.index(1)
        assert p.chosen.ids[:k] == p.rejected.ids[:k] and p.chosen.ids != p.rejected.ids
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "chosen": "y"}\n')
    with pytest.raises(DataError, match="line 1"):
        read_pairs(tmp_path / "bad.jsonl")


def test_dpo_after_sft_refers_to_the_sft_model_and_saves_one_adapter(tmp_path, tm, smol_tok_dir):
    """With model.init_adapter the first DPO step has margin 0 (reference = SFT model, not the base)."""
    import json

    sft_dir = tmp_path / "sft"
    corpus = tm.write_corpus(tmp_path / "c" / "corpus.jsonl", [("Say yes", "yes"), ("Say no", "no")] * 8)
    cfg = tm.base_config(sft_dir, lora={"enabled": True, "r": 4}, optim={"lr": 5e-2, "warmup_steps": 0}, run={"max_steps": 3})
    cfg["model"] = {"arch": tm.tiny_arch(49152), "tokenizer": str(smol_tok_dir)}
    cfg["data"]["corpus"] = str(corpus)
    sft = train(config_from_dict(cfg))
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"Say {a}", "chosen": a, "rejected": b}) + "\n"
                             for a, b in [("yes", "no"), ("no", "yes")] * 4))
    cfg["objective"], cfg["dpo"] = "dpo", {"beta": 0.2}
    cfg["model"]["init_adapter"] = str(sft.saved)
    cfg["lora"]["r"], cfg["data"]["corpus"], cfg["run"]["output_dir"] = 8, str(prefs), str(tmp_path / "dpo")
    cfg["data"]["micro_batch_tokens"] = 256
    dpo = train(config_from_dict(cfg))
    assert dpo.records[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert dpo.records[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    saved = json.loads((dpo.saved / "adapter_config.json").read_text())
    assert saved["r"] == 12 and saved["lora_alpha"] == 12
    from taskmill.backends.vllm import adapter_problems

    assert adapter_problems(dpo.saved, 16) == [] and "rank 12" in adapter_problems(dpo.saved, 8)[0]


def test_concatenated_adapters_equal_merge_then_second_adapter(tmp_path, tm):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from taskmill.trainer.adapters import concat_adapters

    arch = dict(tm.tiny_arch())
    hf = AutoConfig.for_model(arch.pop("model_type"), **arch)

    def base():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(hf).eval()

    for name, r, alpha, rs in (("a", 4, 8, False), ("b", 8, 4, True)):
        torch.manual_seed(len(name) + r)
        peft = get_peft_model(base(), LoraConfig(r=r, lora_alpha=alpha, use_rslora=rs, init_lora_weights=False,
                                                 target_modules=["q_proj", "v_proj", "down_proj"]))
        peft.save_pretrained(str(tmp_path / name))
    concat_adapters(tmp_path / "a", tmp_path / "b", tmp_path / "ab")
    ids = torch.tensor([[1, 5, 9, 33, 2, 7]])
    stacked = PeftModel.from_pretrained(PeftModel.from_pretrained(base(), str(tmp_path / "a")).merge_and_unload(), str(tmp_path / "b"))
    one = PeftModel.from_pretrained(base(), str(tmp_path / "ab"))
    plain = base()
    with torch.no_grad():
        want, got, raw = stacked(input_ids=ids).logits, one(input_ids=ids).logits, plain(input_ids=ids).logits
    assert (want - raw).abs().max() > 1e-3  # the adapters change the output
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# --- continued pre-training -------------------------------------------------------------------------


def _cpt_cfg(out, tok_dir, text, tm, **run):
    cfg = tm.base_config(out, optim={"lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
                         run={"max_steps": 12, "save_final": False, **run})
    cfg["objective"] = "cpt"
    cfg["model"] = {"arch": tm.tiny_arch(49152), "tokenizer": str(tok_dir)}
    cfg["data"].update({"corpus": str(text), "tokens_per_step": 128, "micro_batch_tokens": 128, "epochs": 4})
    return config_from_dict(cfg)


def test_cpt_loss_falls_on_repeated_text_and_every_token_is_a_target(tmp_path, tm, smol_tok_dir):
    from transformers import AutoTokenizer

    from taskmill.trainer.pretrain_data import load_text_documents

    text = tmp_path / "notes.txt"
    text.write_text("The quick brown fox jumps over the lazy dog near the quiet river bank. " * 40)
    docs = load_text_documents(AutoTokenizer.from_pretrained(str(smol_tok_dir)), text, 64)
    assert all(set(d.loss_mask) == {1} and len(d) <= 64 for d in docs) and len(docs) > 5
    result = train(_cpt_cfg(tmp_path / "run", smol_tok_dir, text, tm))
    losses = result.losses
    assert len(losses) == 12 and losses[-1] < 0.6 * losses[0]


def test_cpt_reads_jsonl_text_column_and_resumes_exactly(tmp_path, tm, smol_tok_dir):
    import json

    rows = tmp_path / "texts.jsonl"
    rows.write_text("".join(json.dumps({"text": f"Record {i}: the river rose {i} inches overnight."}) + "\n" for i in range(60)))
    full = train(_cpt_cfg(tmp_path / "a", smol_tok_dir, rows, tm, max_steps=4))
    cfg = _cpt_cfg(tmp_path / "b", smol_tok_dir, rows, tm, max_steps=4, save_every=2)
    train(cfg, stop_after=3)  # killed after step 3; checkpoint at step 2
    resumed = train(cfg)
    assert resumed.records[0]["step"] == 3
    assert resumed.losses == pytest.approx(full.losses[2:], rel=1e-5)


def test_objective_config_problems_listed():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"objective": "cpt", "model": {"arch": {"model_type": "llama"}},
                          "dpo": {"beta": 0}})
    assert "set lora.enabled: false" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config_from_dict({"objective": "dpo", "model": {"arch": {"model_type": "llama"}}, "dpo": {"beta": -1},
                          "data": {"max_length": 64, "micro_batch_tokens": 100, "tokens_per_step": 100}})
    text = str(err.value)
    assert "dpo.beta" in text and "2 * data.max_length" in text
    with pytest.raises(ConfigError, match="objective"):
        config_from_dict({"objective": "ppo", "model": {"arch": {"model_type": "llama"}}})
