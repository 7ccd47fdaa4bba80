"""TRL, unchanged, trains on taskmill's token ids: SFT and DPO rows through TRL's own data path.

The corpus keeps ``prompt``/``completion`` strings (what evaluation reads) and ``messages``. Given
all three, TRL picks a form by set order (``PYTHONHASHSEED``), so the README documents one column
choice per case; these tests apply exactly that choice, let ``SFTTrainer``/``DPOTrainer`` prepare
the dataset (``Dataset.map`` tokenisation, EOS handling, label building) and compare the ids and
loss masks with taskmill's. Real SmolLM2 tokenizer (ChatML template; the plain case removes it).
"""

from __future__ import annotations

import copy
import json

import pytest

from taskmill.trainer.data import tokenize_rows
from taskmill.trainer.dpo import tokenize_pairs

pytestmark = pytest.mark.slow

ROWS = [
    ("Is this review positive or negative?\nA gripping, well acted film.", "positive"),
    ("Question: what is 2+2?\nAnswer:", " 4"),  # completion starting with a space
    ("Translate to French: good morning\n", "\nbonjour"),  # newlines on both sides of the boundary
    ("Résumé: « déjà vu » — 東京", "Ça va 😀"),
    ("Premise: the cat sat.\nHypothesis: a cat sat.\nEntailment?", "yes\nbecause the premise says so"),
]


def corpus_rows() -> list[dict]:
    return [{"prompt": p, "completion": c, "messages": [{"role": "user", "content": p},
                                                         {"role": "assistant", "content": c}]} for p, c in ROWS]


# --- the README's column choices ("Training with TRL"), verbatim --------------------------------


def sft_chat(r: dict) -> dict:
    return {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}


def sft_plain(r: dict) -> dict:
    return {"prompt": r["prompt"] + "\n", "completion": r["completion"]}


def dpo_chat(r: dict) -> dict:
    return {"prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}]}


def dpo_plain(r: dict) -> dict:
    return {"prompt": r["prompt"] + "\n", "chosen": r["chosen"], "rejected": r["rejected"]}


# -------------------------------------------------------------------------------------------------


def _tiny_model(vocab: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("llama", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=1, vocab_size=vocab)
    return AutoModelForCausalLM.from_config(cfg)


def _load_tok(folder, chat: bool):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if not chat:
        tok.chat_template = None
    return tok


def _trl_sft(tok, rows: list[dict], tmp_path) -> list[dict]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / "sft"), report_to="none", use_cpu=True, max_length=None)
    ds = Dataset.from_list(rows)
    return list(SFTTrainer(model=_tiny_model(len(tok)), args=args, train_dataset=ds, processing_class=tok).train_dataset)


@pytest.mark.parametrize("chat", [True, False], ids=["chat_template", "plain"])
def test_sft_ids_and_labels_equal_trl(smol_tok_dir, tmp_path, chat):
    tok = _load_tok(smol_tok_dir, chat)
    rows = corpus_rows()
    ours = tokenize_rows(tok, rows, max_length=4096)
    theirs = _trl_sft(tok, [(sft_chat if chat else sft_plain)(r) for r in rows], tmp_path)
    for doc, ex in zip(ours, theirs, strict=True):
        assert list(doc.ids) == ex["input_ids"]
        assert [t if m else -100 for t, m in zip(doc.ids, doc.loss_mask)] == ex["labels"]
        assert sum(doc.loss_mask) > 0 and doc.ids[-1] == (tok.convert_tokens_to_ids("<|im_end|>") if chat else tok.eos_token_id) or chat


def test_sft_messages_only_gives_the_same_ids(smol_tok_dir, tmp_path):
    """The other documented choice: ``messages`` alone (TRL then puts loss on every token)."""
    tok = _load_tok(smol_tok_dir, True)
    rows = corpus_rows()
    ours = tokenize_rows(tok, rows, max_length=4096)
    theirs = _trl_sft(tok, [{"messages": r["messages"]} for r in rows], tmp_path)
    assert [list(d.ids) for d in ours] == [ex["input_ids"] for ex in theirs]


@pytest.mark.parametrize("chat", [True, False], ids=["chat_template", "plain"])
def test_dpo_ids_equal_trl(smol_tok_dir, tmp_path, chat):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok = _load_tok(smol_tok_dir, chat)
    pairs = [{"prompt": p, "chosen": c, "rejected": "no" if c != "no" else "yes"} for p, c in ROWS]
    ours = tokenize_pairs(tok, pairs, max_length=4096)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), report_to="none", use_cpu=True, max_length=None)
    ds = Dataset.from_list([(dpo_chat if chat else dpo_plain)(r) for r in pairs])
    theirs = DPOTrainer(model=_tiny_model(len(tok)), ref_model=_tiny_model(len(tok)), args=args, train_dataset=ds, processing_class=tok).train_dataset
    for pair, ex in zip(ours, theirs, strict=True):
        for doc, side in ((pair.chosen, "chosen_ids"), (pair.rejected, "rejected_ids")):
            assert list(doc.ids) == ex["prompt_ids"] + ex[side]
            assert list(doc.loss_mask) == [0] * len(ex["prompt_ids"]) + [1] * len(ex[side])


def test_trl_would_glue_the_raw_string_columns(smol_tok_dir, tmp_path):
    """Why the README names a column choice: plain prompt/completion strings reach TRL glued."""
    tok = _load_tok(smol_tok_dir, True)
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in corpus_rows()[:1]]
    (ex,) = _trl_sft(tok, rows, tmp_path)
    assert "negative?\nA gripping, well acted film.positive" in tok.decode(ex["input_ids"])
    assert list(tokenize_rows(tok, corpus_rows()[:1], 4096)[0].ids) != ex["input_ids"]
