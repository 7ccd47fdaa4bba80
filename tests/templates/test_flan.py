"""FLAN pattern conversion: field mapping, options block, literal text, skipped patterns, CLI.

Unit tests use made-up patterns in FLAN's format; the slow test converts the real
../shared/flan_templates.json with every shipped mapping and renders the datasets' rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmill.cli import app
from taskmill.errors import ConfigError, TaskmillError
from taskmill.templates import compile_template, load_template_file
from taskmill.templates.flan import Conversion, FlanMapping, convert_pattern, convert_task, load_mappings, resolve_mapping

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
NLI = FlanMapping("toy_nli", "toy_nli", "glue", "rte",
                  {"premise": "sentence1", "hypothesis": "sentence2", "answer": "answer_choices[label]", "title": None},
                  "yes ||| no", ("Accuracy",))
PATTERNS = {"toy_nli": [
    ("{premise}\n\nDoes it follow that \"{hypothesis}\"?\n\n{options_}", "{answer}"),
    ("Premise: {premise}\nHypothesis: {hypothesis}n\n{options_}", "{answer}"),
    ("Title: {title}\n{premise}", "{answer}"),
    ("Write a claim in {{braces}} about: {premise}", "{hypothesis}"),
]}
ROW = {"sentence1": "A cat sat.", "sentence2": "An animal sat.", "label": 0, "idx": 3}


def test_pattern_to_jinja() -> None:
    assert convert_pattern("{premise} / {hypothesis}n", NLI) == "{{ sentence1 }} / {{ sentence2 }}n"
    assert convert_pattern("{answer}", NLI) == "{{ answer_choices[label] }}"
    assert convert_pattern("x {{braces}} {premise}", NLI) == "{% raw %}x {braces} {% endraw %}{{ sentence1 }}"


def test_convert_renders_flan_style_options_and_keeps_typos() -> None:
    conv = convert_task(PATTERNS, NLI)
    ids = [t.id for t in conv.template_file.templates]
    assert ids == ["flan-toy_nli-0", "flan-toy_nli-1", "flan-toy_nli-3"]
    assert conv.skipped == ("pattern 2: dataset has no title",)
    first, typo, inverted = (compile_template(t).render(ROW) for t in conv.template_file.templates)
    assert first.input == 'A cat sat.\n\nDoes it follow that "An animal sat."?\n\nOPTIONS:\n- yes\n- no'
    assert (first.target, first.answer_choices) == ("yes", ("yes", "no"))
    assert "Hypothesis: An animal sat.n\nOPTIONS:" in typo.input  # FLAN's own typo, kept as written
    assert inverted.input == "Write a claim in {braces} about: A cat sat." and inverted.target == "An animal sat."
    meta = {t.id: t.metadata for t in conv.template_file.templates}
    assert meta["flan-toy_nli-0"].original_task and meta["flan-toy_nli-0"].choices_in_prompt
    assert meta["flan-toy_nli-3"].original_task is False
    assert conv.template_file.templates[2].answer_choices is None


def test_unmapped_fields_listed_and_bad_patterns_refused() -> None:
    bare = FlanMapping("bare", "toy_nli", "glue", None, {"premise": "sentence1"}, None)
    with pytest.raises(ConfigError) as info:
        convert_task(PATTERNS, bare)
    assert {p.split("'")[-2] for p in info.value.problems} == {"answer", "hypothesis", "title"}
    with pytest.raises(TaskmillError, match="no answer_choices"):
        convert_pattern("{options_}", bare)
    with pytest.raises(TaskmillError, match="format spec"):
        convert_pattern("{premise:>10}", NLI)
    with pytest.raises(TaskmillError, match="not a Python format string"):
        convert_pattern("{premise", NLI)
    with pytest.raises(TaskmillError, match="no task 'nope'"):
        convert_task(PATTERNS, FlanMapping("x", "nope", "d"))


def test_shipped_mappings_load_and_resolve() -> None:
    mappings = load_mappings()
    assert {"rte", "cb", "snli", "arc_easy", "arc_challenge", "hellaswag", "record"} <= set(mappings)
    assert resolve_mapping("rte", None).subset == "rte"
    assert resolve_mapping("arc", "arc_challenge").subset == "ARC-Challenge"
    with pytest.raises(TaskmillError, match="arc_easy, arc_challenge"):
        resolve_mapping("arc", None)


def test_mapping_file_problems_listed(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("a: {dataset: '', fields: [x], colour: 1}\nb: {dataset: d, metrics: Accuracy}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_mappings(path)
    assert len(info.value.problems) == 4


def test_cli_convert_flan(tmp_path: Path) -> None:
    flan = tmp_path / "flan.json"
    flan.write_text(json.dumps(PATTERNS), encoding="utf-8")
    out = tmp_path / "out" / "toy.yaml"
    args = ["templates", "convert-flan", "toy_nli", "--flan", str(flan), "--out", str(out), "--dataset", "glue/rte",
            "--field", "premise=sentence1", "--field", "hypothesis=sentence2", "--field", "answer=answer_choices[label]",
            "--field", "title=''", "--choices", "yes ||| no"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 4 template(s) for glue/rte" in result.output
    tf = load_template_file(out)
    assert compile_template(tf.templates[0]).render(ROW).target == "yes"
    bad = CliRunner().invoke(app, ["templates", "convert-flan", "toy_nli", "--flan", str(flan), "--out", str(out), "--mapping", "nope"])
    assert bad.exit_code == 2 and "unknown FLAN mapping 'nope'" in bad.output


@pytest.mark.slow
def test_every_shipped_mapping_renders_its_dataset() -> None:
    flan = SHARED / "flan_templates.json"
    if not flan.is_file():
        pytest.skip(f"{flan} absent (CI has ../shared beside the clone)")
    patterns = json.loads(flan.read_text(encoding="utf-8"))
    for name, mapping in load_mappings().items():
        folder = SHARED / "data" / (mapping.dataset + (f"__{mapping.subset}" if mapping.subset else ""))
        rows = [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()[:40]]
        assert rows, folder
        conv = convert_task(patterns, mapping)
        for template in conv.template_file.templates:
            compiled = compile_template(template)
            for row in rows:
                out = compiled.render(row)
                assert out.input and out.target, (name, template.id)
                if template.metadata.original_task and template.answer_choices:
                    assert out.target_index is not None, (name, template.id, out.target, out.answer_choices)
                if template.metadata.choices_in_prompt:
                    assert "OPTIONS:\n- " + out.answer_choices[0] in out.input


TASK_PATTERNS = {
    "samsum": [("{dialogue}\n\nWhat was that dialogue about, in two sentences or less?", "{summary}"),
               ("Write a dialog about anything you want", "{dialogue}")],
    "wmt16_translate": [("{sent1}\n\nTranslate to {lang2}", "{sent2}"), ("{sent2}\n\nTranslate to {lang1}", "{sent1}"),
                        ("Write a sentence not in {lang1}.", "{sent2}"), ("{sent2}\n\nWhich language is this?", "{lang2}")],
    "sst2": [("Review:\n{sentence}\nIs this movie review sentence negative or positive?\n{options_}", "{answer}"),
             ("Generate a short movie review that has {answer} sentiment.", "{sentence}")],
    "my_own_task": [("{text}\n\nWhat is the headline?", "{headline}"), ("{text}\nHeadline:", "{headline}"),
                    ("Write an article titled \"{headline}\"", "{text}")],
}


def _metadata(conv: Conversion) -> list[tuple[bool | None, bool | None, tuple[str, ...]]]:
    return [(t.metadata.original_task, t.metadata.choices_in_prompt, t.metadata.metrics) for t in conv.template_file.templates]


def test_custom_mappings_get_metadata_from_the_flan_task_kind() -> None:
    """Custom field mappings (no metrics given): summarisation and translation patterns are their
    dataset's original task, classification ones are scored by accuracy."""
    dialogsum = FlanMapping("d", "samsum", "knkarthick/dialogsum", None, {"dialogue": "dialogue", "summary": "summary"})
    assert _metadata(convert_task(TASK_PATTERNS, dialogsum)) == [(True, False, ("ROUGE",)), (False, False, ("ROUGE",))]
    wmt = FlanMapping("w", "wmt16_translate", "wmt16", "de-en",
                      {"sent1": "translation.de", "sent2": "translation.en", "lang1": "'German'", "lang2": "'English'"})
    assert _metadata(convert_task(TASK_PATTERNS, wmt)) == [
        (True, False, ("BLEU",)), (True, False, ("BLEU",)),        # either direction translates
        (False, False, ("ROUGE",)), (False, False, ("ROUGE",))]     # writing a sentence, naming the language
    sst = FlanMapping("s", "sst2", "rotten_tomatoes", None, {"sentence": "text", "answer": "answer_choices[label]"},
                      "negative ||| positive")
    assert _metadata(convert_task(TASK_PATTERNS, sst)) == [(True, True, ("Accuracy",)), (False, False, ("ROUGE",))]
    # A task FLAN does not have: a generation task whose own target is its most frequent one.
    own = FlanMapping("o", "my_own_task", "news", None, {"text": "text", "headline": "title"})
    assert _metadata(convert_task(TASK_PATTERNS, own)) == [(True, False, ("ROUGE",))] * 2 + [(False, False, ("ROUGE",))]


def test_mapping_overrides_kind_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "headlines:\n  flan_task: my_own_task\n  dataset: news\n  fields: {text: text, headline: title}\n"
        "  kind: summarisation\n  metrics: [ROUGE, BLEU]\n  metadata: {languages: [de]}\n"
        "  pattern_metadata: {2: {original_task: true, metrics: [Exact Match]}}\n", encoding="utf-8")
    mapping = load_mappings(path)["headlines"]
    conv = convert_task(TASK_PATTERNS, mapping)
    assert _metadata(conv) == [(True, False, ("ROUGE", "BLEU"))] * 2 + [(True, False, ("Exact Match",))]
    assert {t.metadata.languages for t in conv.template_file.templates} == {("de",)}
    path.write_text("x:\n  dataset: d\n  kind: poetry\n  metadata: {colour: red}\n  pattern_metadata: {a: {}}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_mappings(path)
    assert len(info.value.problems) == 3 and "unknown kind 'poetry'" in info.value.problems[0]


def test_cli_custom_mapping_for_a_summarisation_task(tmp_path: Path) -> None:
    flan = tmp_path / "flan.json"
    flan.write_text(json.dumps(TASK_PATTERNS), encoding="utf-8")
    out = tmp_path / "dialogsum.yaml"
    args = ["templates", "convert-flan", "samsum", "--flan", str(flan), "--out", str(out),
            "--dataset", "knkarthick/dialogsum", "--field", "dialogue=dialogue", "--field", "summary=summary"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    tf = load_template_file(out)
    assert (tf.dataset, tf.subset) == ("knkarthick/dialogsum", None)  # an owner/name hub id, not id/config
    assert [(t.metadata.original_task, t.metadata.metrics) for t in tf.templates] == [(True, ("ROUGE",)), (False, ("ROUGE",))]
    kinded = CliRunner().invoke(app, [*args, "--kind", "qa"])
    assert kinded.exit_code == 0, kinded.output
    assert load_template_file(out).templates[0].metadata.metrics == ("Squad",)
    bad = CliRunner().invoke(app, [*args, "--kind", "poetry"])
    assert bad.exit_code == 2 and "unknown FLAN task kind 'poetry'" in bad.output
