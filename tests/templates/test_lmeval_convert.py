"""``taskmill templates convert-lmeval``: tiny task YAMLs written here, rendered through the real engine.

The request strings are compared with what lm-eval's ``ConfigurableTask`` builds in
``test_lmeval_requests_slow.py``; here each supported feature is pinned to the strings lm-eval's
rules give (worked out by hand from its ``doc_to_*`` and ``construct_requests``), and every
unsupported feature to one clear line with exit code 2 and nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from taskmill.backends.requests import PromptStyle
from taskmill.cli import app
from taskmill.errors import ConfigError
from taskmill.eval.scoring import ScoringOptions, generate_request, loglikelihood_requests
from taskmill.records import Row
from taskmill.templates import compile_template, load_template_file
from taskmill.templates.lmeval import build_lmeval_template, convert_lmeval, installed_tasks_dir, jinja_literal

MC = {"task": "toy", "dataset_path": "owner/toy", "output_type": "multiple_choice",
      "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label", "doc_to_choice": "{{[sol1, sol2]}}",
      "metadata": {"version": 2.0}}
ROW = {"goal": "Watch the news", "sol1": "on a television ", "sol2": " in a  box", "label": 0}


def _write(tmp_path: Path, cfg: dict, name: str = "toy.yaml", text: str | None = None) -> Path:
    path = tmp_path / name
    path.write_text(text if text is not None else yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _requests(tf, row: dict) -> list[tuple[str, str]]:
    """taskmill's request pairs for one row: render -> corpus row -> eval requests."""
    settings = tf.source["eval"]
    rendered = compile_template(tf.templates[0]).render(row)
    corpus_row = Row(id="0", task="toy", dataset="toy", split="s", row_index=0, template_id="t", template_name="t",
                     format="zero_shot", prompt=rendered.input, completion=rendered.target, messages=(),
                     answer_choices=rendered.answer_choices, target_index=rendered.target_index)
    options = ScoringOptions(style=PromptStyle(settings["prompt_style"], settings["separator"]))
    return [(r.context, r.continuation) for r in loglikelihood_requests(corpus_row, options, None)]


def test_choice_whitespace_survives_conversion_file_and_requests(tmp_path):
    out = tmp_path / "out.yaml"
    conversion = convert_lmeval(_write(tmp_path, MC), out)
    tf = load_template_file(out)  # through the written YAML, not the in-memory object
    assert tf.templates[0].keep_whitespace
    # lm-eval: (doc_to_text, target_delimiter + choice), the choice's own spaces kept.
    assert _requests(tf, ROW) == [("Question: Watch the news\nAnswer:", " on a television "),
                                  ("Question: Watch the news\nAnswer:", "  in a  box")]
    assert compile_template(tf.templates[0]).render(ROW).target_index == 0
    assert conversion.eval_settings == {"prompt_style": "lmeval", "separator": " ", "fewshot_delimiter": "\n\n"}
    assert tf.source["lm_eval"]["task"] == "toy" and tf.source["lm_eval"]["version"] == 2.0
    assert tf.dataset == "owner/toy" and tf.subset is None


def test_plain_templates_still_strip_choices(tmp_path):
    """Without keep_whitespace, the `|||` split strips as before (the difference the converter fixes)."""
    from dataclasses import replace

    tf = build_lmeval_template(_write(tmp_path, MC)).template_file
    stripped = replace(tf.templates[0], keep_whitespace=False)
    assert compile_template(stripped).render(ROW).answer_choices == ("on a television", "in a  box")


@pytest.mark.parametrize(("choice", "target", "row", "choices", "gold"), [
    (["no", "it's \"odd\"\n{{ x }}", "é"], 1, {}, ("no", "it's \"odd\"\n{{ x }}", "é"), 1),  # list, constant index
    ({"a": " A", "b": "B "}, "{{ 'B ' }}", {}, (" A", "B "), 1),  # mapping: its values; text target
    ("options", "answer", {"options": [" x", "y"], "answer": "y"}, (" x", "y"), 1),  # field names
    ("{{ options.text }}", "{{ options.label.index(key) }}",  # ARC's shape: Jinja digits index
     {"options": {"text": ["p", " q"], "label": ["A", "B"]}, "key": "B"}, ("p", " q"), 1),
])
def test_choice_and_target_forms(tmp_path, choice, target, row, choices, gold):
    cfg = {**MC, "doc_to_text": "{{ 'Q' }}", "doc_to_choice": choice, "doc_to_target": target}
    tf = build_lmeval_template(_write(tmp_path, cfg)).template_file
    rendered = compile_template(tf.templates[0]).render(row)
    assert rendered.answer_choices == choices
    assert rendered.target_index == gold


def test_trailing_newline_description_delimiter_and_include(tmp_path):
    _write(tmp_path, {**MC, "doc_to_text": "never used"}, "base.yaml")
    child = {"include": "base.yaml", "task": "child", "doc_to_text": "Q: {{goal}}\n", "description": "Pick one.\n",
             "target_delimiter": "=>"}
    tf = build_lmeval_template(_write(tmp_path, child, "child.yaml")).template_file
    # lm-eval keeps the template's trailing newline; the description comes first, no delimiter.
    assert _requests(tf, ROW)[0] == ("Pick one.\nQ: Watch the news\n", "=>on a television ")
    assert tf.source["lm_eval"]["task"] == "child" and tf.source["lm_eval"]["version"] == 2.0


def test_lmeval_style_generation_and_calibration_requests():
    row = Row(id="0", task="t", dataset="d", split="s", row_index=0, template_id="t", template_name="t",
              format="zero_shot", prompt="Q:", completion="a", messages=(), answer_choices=("a", " b"), target_index=0)
    options = ScoringOptions(style=PromptStyle("lmeval", " "), calibrate=True)
    pairs = [(r.context, r.continuation) for r in loglikelihood_requests(row, options, None)]
    assert pairs == [("Q:", " a"), ("Q:", "  b"), ("N/A", " a"), ("N/A", "  b")]
    assert generate_request(row, options, None).context == "Q:"  # lm-eval: generation context is the prompt


def test_jinja_literal_round_trips():
    from taskmill.templates.engine import environment

    for text in ["plain", "quote ' and \"", "new\nline\ttab\\back", "{{ not jinja }}", "ünï ☃", "\x01"]:
        assert environment(True).from_string("{{ " + jinja_literal(text) + " }}").render() == text


@pytest.mark.parametrize(("change", "expected"), [
    ({"output_type": "generate_until"}, "output_type 'generate_until' is not supported"),
    ({"gen_prefix": "Answer:"}, "'gen_prefix' is not supported"),
    ({"colour": "red"}, "unknown lm-eval task key 'colour'"),
    ({"metric_list": [{"metric": "acc_mutual_info"}]}, "metric 'acc_mutual_info' is not supported"),
    ({"doc_to_choice": "['{{sol1}}', '{{sol2}}']"}, "doc_to_choice: \"['{{sol1}}', '{{sol2}}']\" is not one"),
    ({"doc_to_target": [0, 1]}, "doc_to_target: [0, 1]"),
])
def test_unsupported_features_fail_in_one_line(tmp_path, change, expected):
    path = _write(tmp_path, {**MC, **change})
    with pytest.raises(ConfigError) as err:
        build_lmeval_template(path)
    line = err.value.line()
    assert expected in line and "\n" not in line and str(path) in line


def test_python_functions_other_than_known_ones_fail(tmp_path):
    (tmp_path / "utils.py").write_text("def process_docs(dataset):\n    return dataset\n\n"
                                       "def doc_to_text(doc):\n    return doc['goal']\n", encoding="utf-8")
    base = yaml.safe_dump({k: v for k, v in MC.items() if k != "doc_to_text"}, sort_keys=False)
    path = _write(tmp_path, {}, text=base + "process_docs: !function utils.process_docs\n"
                                            "doc_to_text: !function utils.doc_to_text\n")
    with pytest.raises(ConfigError) as err:
        build_lmeval_template(path)
    line = err.value.line()
    assert "process_docs: !function utils.process_docs" in line and "is not a known function" in line
    assert "doc_to_text: !function utils.doc_to_text is Python code" in line and "\n" not in line


def test_cli_writes_file_and_fails_with_exit_2_writing_nothing(tmp_path):
    out = tmp_path / "out.yaml"
    ok = CliRunner().invoke(app, ["templates", "convert-lmeval", str(_write(tmp_path, MC)), "--out", str(out),
                                  "--dataset", "piqa"])
    assert ok.exit_code == 0, ok.output
    assert "--prompt-style lmeval --separator ' '" in ok.output
    assert load_template_file(out).dataset == "piqa"
    bad_out = tmp_path / "bad.yaml"
    bad = CliRunner().invoke(app, ["templates", "convert-lmeval", str(_write(tmp_path, {**MC, "repeats": 3}, "r.yaml")),
                                   "--out", str(bad_out)])
    assert bad.exit_code == 2
    assert bad.output.strip().count("\n") == 0 and "'repeats' is not supported" in bad.output
    assert not bad_out.exists() and list(tmp_path.glob(".*tmp")) == []


def _lmeval_tasks() -> Path | None:
    return installed_tasks_dir()  # found, not imported: conversion never runs lm-eval


@pytest.mark.parametrize("rel", ["piqa/piqa.yaml", "arc/arc_easy.yaml", "arc/arc_challenge.yaml", "hellaswag/hellaswag.yaml"])
def test_lm_eval_own_task_files_convert(rel):
    tasks = _lmeval_tasks()
    if tasks is None or not (tasks / rel).is_file():
        pytest.skip("lm-eval's task files are not installed")
    conversion = build_lmeval_template(tasks / rel)
    assert conversion.template_file.source["lm_eval"]["file"] == rel
    assert conversion.template_file.source["lm_eval"]["version"] == 1.0


def test_hellaswag_process_docs_in_jinja_matches_its_rules():
    """hellaswag's fields rebuilt in Jinja: the query and choices lm-eval's clean-up gives (by hand)."""
    tasks = _lmeval_tasks()
    if tasks is None or not (tasks / "hellaswag/hellaswag.yaml").is_file():
        pytest.skip("lm-eval's task files are not installed")
    tf = build_lmeval_template(tasks / "hellaswag/hellaswag.yaml").template_file
    row = {"activity_label": "Home", "ctx_a": " Fix a [step] shelf", "ctx_b": "tHEN [title]drill", "label": "1",
           "endings": [" a  b [x] ", "c [title]d"]}
    rendered = compile_template(tf.templates[0]).render(row)
    # strip; " [title]" -> ". "; drop [..]; "  " -> " "; ctx_b capitalised (rest lower-cased).
    assert rendered.input == "Home: Fix a shelf Then. drill"
    assert rendered.answer_choices == ("a b ", "c. d")
    assert rendered.target_index == 1


def test_template_file_validates_keep_whitespace_and_source(tmp_path):
    path = _write(tmp_path, {}, "bad.yaml", text=yaml.safe_dump({
        "dataset": "toy", "source": ["not", "a", "mapping"],
        "templates": [{"id": "a", "name": "a", "input": "{{ x }}", "target": "y", "keep_whitespace": "yes"}]}))
    with pytest.raises(ConfigError) as err:
        load_template_file(path)
    assert "'source' must be a mapping or absent" in err.value.line()
    assert "'keep_whitespace' must be true or false" in err.value.line()


def test_regex_replace_filter():
    from taskmill.templates.engine import environment

    src = "{{ x | regex_replace('[0-9]+', '#') }}|{{ x | regex_replace('[0-9]', '#', 1) }}"
    assert environment(True).from_string(src).render(x="a1b22") == "a#b#|a#b22"


def test_task_name_finds_lm_eval_task_file(tmp_path):
    tasks = _lmeval_tasks()
    if tasks is None or not (tasks / "arc/arc_easy.yaml").is_file():
        pytest.skip("lm-eval's task files are not installed")
    assert build_lmeval_template("arc_easy").template_file.source["lm_eval"]["file"] == "arc/arc_easy.yaml"
    bad = CliRunner().invoke(app, ["templates", "convert-lmeval", "no_such_task_xyz", "--out", str(tmp_path / "o.yaml")])
    assert bad.exit_code == 2 and "expected exactly one lm-eval task file named no_such_task_xyz.yaml" in bad.output


# --- few-shot contexts ---------------------------------------------------------------------------

POOL = [{"goal": "Boil water", "sol1": "kettle", "sol2": "fridge", "label": 0},
        {"goal": "Cut paper", "sol1": "spoon", "sol2": "scissors", "label": 1},
        ROW,
        {"goal": "Dry hair", "sol1": "towel", "sol2": "soup", "label": 0}]


@pytest.mark.parametrize(("splits", "pool_split", "exclude"), [
    ({"training_split": "train", "validation_split": "validation"}, "train", True),  # piqa: no test split
    ({"training_split": "train", "validation_split": "validation", "test_split": "test"}, "train", False),  # arc
    ({"validation_split": "validation"}, "validation", True),
    ({"test_split": "test"}, "test", False),
    ({"test_split": "test", "fewshot_split": "test"}, "test", True),
    ({"training_split": "train", "fewshot_config": {"split": "dev"}}, "dev", False),  # dev != (unset) test
])
def test_fewshot_spec_follows_lm_eval_split_rules(splits, pool_split, exclude):
    from taskmill.templates.lmeval import fewshot_spec

    spec = fewshot_spec({**MC, **splits})
    assert (spec.pool_split, spec.exclude_eval_doc, spec.unsupported) == (pool_split, exclude, "")


def test_first_n_fewshot_contexts_by_hand(tmp_path):
    from taskmill.templates.lmeval import fewshot_contexts

    cfg = {**MC, "validation_split": "validation",
           "fewshot_config": {"sampler": "first_n", "fewshot_delimiter": "\n##\n", "target_delimiter": "=>"}}
    out = tmp_path / "out.yaml"
    convert_lmeval(_write(tmp_path, cfg), out)
    tf = load_template_file(out)
    assert tf.source["lm_eval"]["fewshot"]["sampler"] == "first_n"
    (ctx,) = fewshot_contexts(tf, [ROW], POOL, 2)
    # the first two pool rows; the evaluated row's own text keeps the task's plain format
    assert ctx == ("Question: Boil water\nAnswer:=>kettle\n##\nQuestion: Cut paper\nAnswer:=>scissors\n##\n"
                   "Question: Watch the news\nAnswer:")
    # the evaluated row is left out of its own examples (no test split: lm-eval's rule)
    (ctx,) = fewshot_contexts(tf, [POOL[0]], POOL, 2)
    # (an example answer is the choice as is: its own trailing space stays)
    assert ctx.startswith("Question: Cut paper\nAnswer:=>scissors\n##\n"
                          "Question: Watch the news\nAnswer:=>on a television \n##\n")


def test_default_sampler_is_seeded_and_leaves_the_row_out(tmp_path):
    from taskmill.templates.lmeval import fewshot_contexts

    out = tmp_path / "out.yaml"
    convert_lmeval(_write(tmp_path, {**MC, "validation_split": "validation"}), out)
    tf = load_template_file(out)
    first = fewshot_contexts(tf, POOL, POOL, 2)
    assert first == fewshot_contexts(tf, POOL, POOL, 2)  # seed 1234 by default
    assert first != fewshot_contexts(tf, POOL, POOL, 2, seed=5)
    for row, ctx in zip(POOL, first):
        own = f"Question: {row['goal']}\nAnswer:"
        assert ctx.endswith(own) and ctx.count("Question: ") == 3 and own not in ctx[: -len(own)]
    assert fewshot_contexts(tf, [ROW], POOL, 0) == ["Question: Watch the news\nAnswer:"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"fewshot_config": {"sampler": "balanced"}}, "fewshot_config.sampler 'balanced'"),
    ({"fewshot_config": {"samples": [{"goal": "x"}]}}, "fewshot_config key(s) samples"),
    ({"fewshot_config": {"doc_to_text": "{{goal}}?", "fewshot_indices": [0]}},
     "fewshot_config key(s) doc_to_text, fewshot_indices"),
    ({"description": "Pick one.\n"}, "a 'description' before few-shot examples"),
])
def test_unsupported_fewshot_features_fail_in_one_line(tmp_path, change, expected):
    from taskmill.templates.lmeval import fewshot_contexts

    path = _write(tmp_path, {**MC, **change})
    out = tmp_path / "out.yaml"
    convert_lmeval(path, out)  # zero-shot requests do not depend on them: the task converts
    tf = load_template_file(out)
    assert len(fewshot_contexts(tf, [ROW], POOL, 0)) == 1
    with pytest.raises(ConfigError) as err:
        fewshot_contexts(tf, [ROW], POOL, 2)
    line = err.value.line()
    assert expected in line and "\n" not in line and "few-shot feature" in line


def test_fewshot_pool_too_small_is_one_line(tmp_path):
    from taskmill.errors import DataError
    from taskmill.templates.lmeval import fewshot_contexts

    out = tmp_path / "out.yaml"
    convert_lmeval(_write(tmp_path, MC), out)
    with pytest.raises(DataError, match="num_fewshot 4 exceeds the 4 few-shot rows"):
        fewshot_contexts(load_template_file(out), [ROW], POOL, 4)  # lm-eval draws 4 + 1 (the row, dropped)
