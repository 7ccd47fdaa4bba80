"""Tokenisation with loss masks (real SmolLM2 tokenizer), corpus errors, step planning and packing."""

from __future__ import annotations

import copy
import json

import pytest

from taskmill.errors import DataError
from taskmill.trainer.data import (deal_to_ranks, make_micro_batch, pack_micro_batches, plan_epoch,
                                   read_corpus, tokenize_rows)


def test_chat_template_masks_prompt(smol_tokenizer):
    rows = [{"prompt": "Sentiment? Great film.", "completion": "positive"}]
    (doc,) = tokenize_rows(smol_tokenizer, rows, max_length=512)
    target = [t for t, m in zip(doc.ids, doc.loss_mask) if m]
    prompt = [t for t, m in zip(doc.ids, doc.loss_mask) if not m]
    assert smol_tokenizer.decode(target).startswith("positive<|im_end|>")
    assert "Great film." in smol_tokenizer.decode(prompt) and "positive" not in smol_tokenizer.decode(prompt)
    assert smol_tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert doc.loss_mask == tuple(sorted(doc.loss_mask))  # prompt first, then completion


def test_plain_join_without_chat_template(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    (doc,) = tokenize_rows(tok, [{"prompt": "2+2=", "completion": "4"}], max_length=64)
    text = tok.decode(doc.ids)
    assert text.endswith("2+2=\n4" + tok.eos_token)
    assert tok.decode([t for t, m in zip(doc.ids, doc.loss_mask) if m]) == "4" + tok.eos_token


def test_long_documents_keep_their_end(smol_tokenizer):
    (doc,) = tokenize_rows(smol_tokenizer, [{"prompt": "word " * 300, "completion": "end"}], max_length=32)
    assert len(doc) == 32 and doc.loss_mask[-1] == 1


def test_corpus_errors_name_the_line(tmp_path):
    f = tmp_path / "corpus.jsonl"
    f.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n{oops\n")
    with pytest.raises(DataError, match="line 2"):
        read_corpus(tmp_path)
    f.write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(DataError, match="line 1: expected string 'prompt'"):
        read_corpus(f)


def test_plan_and_pack_cover_every_document_within_budgets():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(300)]
    steps = plan_epoch(lengths, 400, seed=1, epoch=0, shuffle=True)
    assert sorted(i for s in steps for i in s) == list(range(300))
    assert all(sum(lengths[i] for i in s) <= 400 for s in steps)
    assert steps == plan_epoch(lengths, 400, seed=1, epoch=0, shuffle=True)
    assert steps != plan_epoch(lengths, 400, seed=1, epoch=1, shuffle=True)
    for s in steps:
        bins = pack_micro_batches(s, lengths, 150)
        assert sorted(i for b in bins for i in b) == sorted(s)
        assert all(sum(lengths[i] for i in b) <= 150 for b in bins)
        ranks = deal_to_ranks(bins, lengths, 2)
        assert sorted(i for r in ranks for b in r for i in b) == sorted(s)


def test_micro_batch_targets_stay_inside_documents(tm):
    docs = tm.random_docs(3, seed=2)
    mb = make_micro_batch(docs)
    ids, tgt, pos = mb.input_ids[0].tolist(), mb.targets.tolist(), mb.position_ids[0].tolist()
    start = 0
    for d in docs:
        n = len(d)
        assert pos[start:start + n] == list(range(n))
        for t in range(n):
            want = d.ids[t + 1] if t + 1 < n and d.loss_mask[t + 1] else -100
            assert tgt[start + t] == want
        start += n
    assert mb.cu_seqlens.tolist() == [0, len(docs[0]), len(docs[0]) + len(docs[1]), len(ids)]
    assert mb.n_targets == sum(1 for t in tgt if t != -100)
