"""Rewards of sampled responses for ``objective: rlhf``: rules on the corpus row, or a reward model.

* ``exact_match`` — 1.0 when the response equals the row's target after Super-NaturalInstructions'
  normalisation (lower-case, ASCII punctuation dropped, whitespace collapsed; the rule
  ``taskmill eval`` scores with), else 0.0.
* ``rouge_l`` — ROUGE-L F-measure in [0, 1] against the target (``rouge-score``, Porter stemmer, as
  ``taskmill eval``'s ``rougeL``).
* ``callable`` — a user function named ``module.path:function`` or ``path/to/file.py:function``,
  called as ``fn(prompt, response, row)`` and returning a finite number.
* ``model`` — a reward model folder (``OUTPUT/reward_model`` of an ``objective: reward`` run),
  scoring prompt + response tokenised like its training pairs.

A function that raises or returns something other than a finite number stops the run with one
line naming the corpus row.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import string
from pathlib import Path
from typing import Any, Callable, Sequence

from taskmill.errors import ConfigError, DataError

RULES = ("exact_match", "rouge_l", "callable", "model")
_PUNCT = set(string.punctuation)


def normalise(text: str) -> str:
    """Super-NaturalInstructions' answer normalisation (the eval room's ``normalize_sni``)."""
    return " ".join("".join(ch for ch in text.lower() if ch not in _PUNCT).split())


def exact_match(response: str, target: str) -> float:
    """1.0 when the normalised texts are equal."""
    return float(normalise(response) == normalise(target))


@functools.cache
def _rouge_scorer() -> Any:
    """One scorer per process: building it (stemmer, tokenizer) per rollout was repeated work."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(response: str, target: str) -> float:
    """ROUGE-L F-measure in [0, 1]."""
    return float(_rouge_scorer().score(target, response)["rougeL"].fmeasure)


def load_callable(spec: str) -> Callable[..., Any]:
    """``module.path:function`` or ``file.py:function`` -> the function.

    Raises:
        ConfigError: malformed name, missing module/file or function.
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ConfigError([f"rlhf.reward_callable: expected 'module:function' or 'file.py:function', got {spec!r}"])
    try:
        if where.endswith(".py"):
            path = Path(where)
            mod_spec = importlib.util.spec_from_file_location(f"taskmill_reward_{path.stem}", path)
            if mod_spec is None or not path.is_file():
                raise ConfigError([f"rlhf.reward_callable: file not found: {where}"])
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(where)
    except ImportError as err:
        raise ConfigError([f"rlhf.reward_callable: cannot import {where!r} ({err})"]) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError([f"rlhf.reward_callable: {where!r} has no function {name!r}"])
    return fn


def _checked(value: Any, row: dict[str, Any], source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"reward {source} returned {value!r}, expected a finite number", row=_row_name(row))
    return float(value)


def _row_name(row: dict[str, Any]) -> str:
    return str(row.get("id") or row.get("_line", "?"))


class RewardFunction:
    """Scores ``(prompt, response, row)`` triples with the configured rule or reward model.

    Args:
        kind: One of :data:`RULES`.
        callable_spec: ``module:function`` for ``callable``.
        model_dir: Reward model folder for ``model``.
        max_length: Longest sequence the reward model reads.
    """

    def __init__(self, kind: str, callable_spec: str | None = None, model_dir: str | None = None,
                 max_length: int = 2048) -> None:
        self.kind, self.max_length = kind, max_length
        self.fn = load_callable(callable_spec) if kind == "callable" and callable_spec else None
        self.model = self.tokenizer = None
        if kind == "model" and model_dir:
            from taskmill.trainer.reward import load_reward_model

            self.model, self.tokenizer = load_reward_model(model_dir)

    def __call__(self, prompts: Sequence[str], responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[float]:
        """One reward per response."""
        if self.kind == "model":
            return self._model_scores(prompts, responses)
        out = []
        for prompt, response, row in zip(prompts, responses, rows):
            if self.kind == "exact_match":
                out.append(exact_match(response, row["completion"]))
            elif self.kind == "rouge_l":
                out.append(rouge_l(response, row["completion"]))
            else:
                try:
                    value = self.fn(prompt, response, row)  # type: ignore[misc]
                except Exception as err:  # noqa: BLE001 - a user function: any failure is a bad-input line
                    raise DataError(f"reward callable raised {type(err).__name__}: {err}", row=_row_name(row)) from None
                out.append(_checked(value, row, "callable"))
        return out

    def _model_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        from taskmill.trainer.data import tokenize_rows
        from taskmill.trainer.reward import score_documents

        docs = tokenize_rows(self.tokenizer, [{"prompt": p, "completion": r} for p, r in zip(prompts, responses)],
                             self.max_length)
        return score_documents(self.model, docs, self.tokenizer.pad_token_id)
