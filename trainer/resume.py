"""What a run folder already holds: a finished run, a checkpoint to resume, and whether the config
still matches.

A resumed run must be the run it continues: a checkpoint records the config that wrote it, and
resuming with settings that shape the result (learning rate, batch, steps, data, model...) is
refused unless asked for (``taskmill train --force-config``). Settings that only change how the run
is watched or saved (:data:`FREE_KEYS`) may change. A run that finished writes ``finished.json``;
running it again with the same config does nothing and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError
from taskmill.fileio import write_json, write_text
from taskmill.trainer.config import TrainConfig

FINISHED = "finished.json"
LOG = "log.jsonl"
# run settings that do not change what is trained (where it goes, how it is watched and saved)
FREE_KEYS = ("run.output_dir", "run.progress", "run.log_every", "run.save_every", "run.keep_checkpoints",
             "run.eval_every", "run.peak_tflops", "run.save_final", "run.threads", "run.progress_every_s")


def comparable(cfg: TrainConfig) -> dict[str, Any]:
    """The config as flat ``section.key -> value``, without :data:`FREE_KEYS`."""
    flat: dict[str, Any] = {}
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            flat.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            flat[section] = values
    return {k: v for k, v in flat.items() if k not in FREE_KEYS}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each setting that differs (sorted by key).

    A key the recorded config lacks is no difference while the new config holds its default: it
    is a setting added to taskmill after the run started, and its default keeps the behaviour the
    run had (so runs from an older version resume).
    """
    defaults = comparable(TrainConfig())
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
            and not (k not in old and k in defaults and new.get(k) == defaults[k])]


def refuse_changed(where: str, old: dict[str, Any] | None, cfg: TrainConfig, force: bool) -> list[str]:
    """Differences between the recorded config ``old`` and ``cfg``; raises unless ``force``.

    Raises:
        ConfigError: the settings differ and ``force`` is false (one line naming each difference).
    """
    if old is None:
        return []
    diffs = differences(old, comparable(cfg))
    if diffs and not force:
        raise ConfigError([f"{where} was written with another config ({'; '.join(diffs)}); pass --force-config "
                           "to continue it with the new settings, or choose another run.output_dir"])
    return diffs


def finished(out: Path) -> dict[str, Any] | None:
    """The ``finished.json`` record of a run folder, or None."""
    try:
        return json.loads((out / FINISHED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_finished(out: Path, cfg: TrainConfig, steps: int, saved: Path | None, eval_loss: float | None) -> None:
    """Mark the run finished (written last, atomically)."""
    write_json(out / FINISHED, {"steps": steps, "saved": saved.name if saved else None, "eval_loss": eval_loss,
                                "config": comparable(cfg)}, sort_keys=True)


def truncate_log(out: Path, step: int) -> int:
    """Keep the ``log.jsonl`` records of steps up to ``step`` (the checkpoint resumed); returns lines dropped.

    A run killed after its last checkpoint logged steps it will now run again; without this they
    would appear twice.
    """
    path = out / LOG
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _step(line) <= step]
    if len(kept) != len(lines):
        write_text(path, "".join(kept))
    return len(lines) - len(kept)


def _step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return float("inf")  # a torn last line from a killed run: drop it
