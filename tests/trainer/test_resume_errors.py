"""Resume says where it starts and checks the config; a finished run is done; one-line errors with
nothing left behind; counts before training; progress lines without a terminal (tiny random
Llama, pre-tokenised documents, the real SmolLM2 tokenizer where text is tokenised)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taskmill.errors import ConfigError, DataError

pytest.importorskip("torch")


def _cfg(tm, out: Path, **sections):
    from taskmill.trainer import config_from_dict

    base = {"run": {"save_every": 2, "max_steps": 6, "progress_every_s": 0}, "data": {"tokens_per_step": 128,
                                                                                   "micro_batch_tokens": 128}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return config_from_dict(tm.base_config(out, **base))


def _steps(out: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines() if "loss" in x]


def test_resume_says_so_and_log_has_each_step_once(tm, tmp_path, capsys):
    from taskmill.trainer import train

    docs, out = tm.random_docs(60), tmp_path / "run"
    train(_cfg(tm, out), docs, stop_after=5)  # checkpoint at 4, step 5 logged, then "killed"
    assert _steps(out) == [1, 2, 3, 4, 5]
    assert "starting: 6 steps" in capsys.readouterr().err
    resumed = train(_cfg(tm, out), docs)
    err = capsys.readouterr().err
    assert "resuming from step 4 of 6" in err and "dropped 1 log lines" in err
    assert [r["step"] for r in resumed.records] == [5, 6]
    assert _steps(out) == [1, 2, 3, 4, 5, 6]
    ref = train(_cfg(tm, tmp_path / "ref"), docs)
    assert resumed.losses == ref.losses[4:]  # resumed exactly


def test_changed_config_is_refused_unless_forced(tm, tmp_path, capsys):
    from taskmill.trainer import train

    docs, out = tm.random_docs(60), tmp_path / "run"
    train(_cfg(tm, out), docs, stop_after=3)
    for change in ({"optim": {"lr": 5e-4}}, {"data": {"tokens_per_step": 256, "micro_batch_tokens": 256}},
                   {"run": {"max_steps": 9}}):
        with pytest.raises(ConfigError, match="--force-config") as err:
            train(_cfg(tm, out, **change), docs)
        key = next(iter(change)) + "." + next(iter(next(iter(change.values()))))
        assert key in str(err.value) and "\n" not in err.value.line()
    # watching and saving settings may change
    train(_cfg(tm, out, run={"log_every": 2, "keep_checkpoints": 3}), docs, stop_after=4)
    capsys.readouterr()
    forced = train(_cfg(tm, out, optim={"lr": 5e-4}), docs, force_config=True)
    assert "optim.lr: 0.001 -> 0.0005" in capsys.readouterr().err and forced.records[-1]["step"] == 6


def test_finished_run_is_done(tm, tmp_path, capsys):
    from taskmill.trainer import train

    docs, out = tm.random_docs(60), tmp_path / "run"
    first = train(_cfg(tm, out, lora={"enabled": True, "r": 4}), docs)
    log = (out / "log.jsonl").read_bytes()
    capsys.readouterr()
    again = train(_cfg(tm, out, lora={"enabled": True, "r": 4}), docs)
    assert "already holds this finished run (6 steps" in capsys.readouterr().err
    assert again.records == [] and again.saved == first.saved == out / "adapter"
    assert (out / "log.jsonl").read_bytes() == log
    with pytest.raises(ConfigError, match="finished run .*run.max_steps: 6 -> 8"):
        train(_cfg(tm, out, lora={"enabled": True, "r": 4}, run={"max_steps": 8}), docs)


def test_cli_finished_run_exits_zero_and_says_so(tm, tmp_path, smol_tok_dir, toy_corpus):
    from typer.testing import CliRunner

    from taskmill.cli import app

    raw = tm.file_config(tmp_path / "out", smol_tok_dir, toy_corpus, run={"max_steps": 2, "progress_every_s": 0})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(tmp_path / "c.yaml")]).exit_code == 0
    again = runner.invoke(app, ["train", str(tmp_path / "c.yaml")])
    assert again.exit_code == 0 and "nothing to do" in again.output and "step " not in again.output.split("nothing")[1]
    changed = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "optim.lr=1e-2"])
    assert changed.exit_code == 2 and "--force-config" in changed.output
    forced = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "optim.lr=1e-2", "--force-config"])
    assert forced.exit_code == 0, forced.output


def test_bad_model_path_is_one_line_and_leaves_nothing(tmp_path):
    from typer.testing import CliRunner

    from taskmill.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    for model in ({"path": str(tmp_path / "no-such-model")}, {"path": str(tmp_path)}):
        cfg = {"model": model, "data": {"corpus": str(corpus)}, "run": {"output_dir": str(tmp_path / "out")}}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        res = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml")])
        assert res.exit_code == 2, res.output
        lines = [x for x in res.output.splitlines() if x.strip() and not x.startswith("taskmill train:")]
        assert len(lines) == 1 and lines[0].startswith("taskmill: error: ") and "model.path: cannot load" in lines[0]
        assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_varlen_on_cpu_is_refused_before_writing(tm, tmp_path):
    from taskmill.trainer import train

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="model.attention: varlen needs CUDA"):
        train(_cfg(tm, out, model={"attention": "varlen"}), tm.random_docs(10))
    assert not out.exists()


def test_failure_in_the_first_step_leaves_nothing(tm, tmp_path, monkeypatch):
    from taskmill.trainer import train
    from taskmill.trainer.loop import Trainer

    def boom(self, step_docs):
        raise RuntimeError("stand-in for a kernel failing in the first step")

    monkeypatch.setattr(Trainer, "run_step", boom)
    (tmp_path / "mine").mkdir()  # the user's own empty folder stays, emptied
    for out in (tmp_path / "new", tmp_path / "mine"):
        with pytest.raises(RuntimeError):
            train(_cfg(tm, out), tm.random_docs(10))
    assert not (tmp_path / "new").exists() and list((tmp_path / "mine").iterdir()) == []


def test_counts_before_training_and_no_target_setting(smol_tokenizer, tmp_path):
    from taskmill.trainer.data import load_documents

    rows = [{"id": "r0", "prompt": "short question?", "completion": "yes"},
            {"id": "r1", "prompt": "long " * 80, "completion": "kept end"},
            {"id": "r2", "prompt": "q", "completion": "word " * 80},  # the answer alone fills max_length
            {"id": "r3", "prompt": "empty answer", "completion": "  "}]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        load_documents(smol_tokenizer, corpus, 64)
    assert "row 4" in err.value.line() and "r3" in err.value.line() and "data.no_target=skip" in err.value.line()
    docs, report = load_documents(smol_tokenizer, corpus, 64, "skip")
    assert len(docs) == 3 and (report.rows, report.truncated, report.prompt_lost, report.no_target, report.skipped) == (4, 2, 1, 1, 1)
    line = report.line("corpus.jsonl", 64)
    assert "4 rows; 2 (50.0%) longer than data.max_length=64" in line and "1 of them with no prompt token" in line


def test_progress_lines_without_a_terminal(tmp_path, capsys):
    from taskmill.trainer.metrics import RunLog

    log = RunLog(tmp_path / "log.jsonl", total=4, start=1, progress=True, every_s=1e-9)
    assert not (tmp_path / "log.jsonl").exists()  # opened at the first record
    for step in (2, 3, 4):
        log.write({"step": step, "loss": 2.5 / step, "tokens_per_s": 1234.4})
    log.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("train step 2/4  loss 1.2500  1,234 tok/s  ETA ") and len(lines) == 3
    assert lines[-1].endswith("ETA 0m00s")
    quiet = RunLog(tmp_path / "q.jsonl", total=2, start=0, progress=True, every_s=3600)
    quiet.write({"step": 1, "loss": 1.0})
    quiet.write({"step": 2, "loss": 1.0})  # the last step is always reported
    quiet.close()
    assert len(capsys.readouterr().err.splitlines()) == 1
