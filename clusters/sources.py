"""Which source dataset a task was built from, for the same-source guard of the folds.

A source is the thing whose instances two tasks can share. For a Hugging Face dataset that is the
hub dataset, not one of its configs: ``wino_bias/type1_pro`` and ``wino_bias/type1_anti`` hold the
same sentences with the pronoun swapped, ``ai2_arc/ARC-Easy`` and ``ai2_arc/ARC-Challenge`` come
from one question pool, ``tweet_eval/*`` from one tweet collection. So by default every config of
one dataset is one source, and holding one config out drops its siblings from training.

The exception is a benchmark *collection* whose configs are independent datasets that only share a
name: :data:`INDEPENDENT_CONFIGS` (``glue``, ``super_glue``, and taskmill's own starter collection).
There each config is its own source. Users replace that list (``FoldConfig.independent_configs``,
``taskmill folds make --independent-configs``) and join or split sources by hand with aliases
(``--alias glue/rte=rte --alias super_glue/rte=rte``).

A corpus row's ``dataset`` string alone can be ambiguous (``a/b`` is dataset ``a`` config ``b`` or
the hub repo ``a/b``, see :mod:`taskmill.templates.dataset_ids`), so the hub id and config the build
resolved - ``config.tasks[].hf_id`` / ``subset`` in the corpus's ``manifest.json`` - are preferred
when the corpus has them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from taskmill.errors import DataError

# Benchmark collections whose configs are independent datasets (GLUE's CoLA and SST-2 share no
# instances); every other dataset's configs are one source. Kept short on purpose: a user who
# knows another collection is independent adds it.
INDEPENDENT_CONFIGS: tuple[str, ...] = ("glue", "super_glue", "taskmill_starter")

# task -> (the rows' dataset id, hub id, config), as `taskmill build` resolved them
Resolved = Mapping[str, tuple[str, str, str | None]]


def corpus_datasets(corpus_dir: str | Path) -> dict[str, tuple[str, str, str | None]]:
    """Task -> (rows' dataset id, hub id, config) as ``taskmill build`` resolved them, from the
    corpus's ``manifest.json`` (``config.tasks[]``: ``name``, ``dataset``, ``hf_id``, ``subset``).

    A corpus without a manifest (hand-made, or written by another tool) gives ``{}``: the rows'
    dataset ids are then read with the library's rules.

    Raises:
        DataError: ``manifest.json`` exists but is not JSON.
    """
    from taskmill.fileio import read_text

    folder = Path(corpus_dir)
    path = (folder.parent if folder.is_file() else folder) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"corpus manifest is not JSON ({err.msg} at line {err.lineno})", file=str(path)) from None
    tasks = raw.get("config", {}).get("tasks", []) if isinstance(raw, dict) and isinstance(raw.get("config"), dict) else []
    out: dict[str, tuple[str, str, str | None]] = {}
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict) and all(isinstance(task.get(k), str) for k in ("name", "dataset", "hf_id")):
            subset = task.get("subset")
            out[task["name"]] = (task["dataset"], task["hf_id"], subset if isinstance(subset, str) and subset else None)
    return out


def hub_id_and_config(dataset: str, resolved: tuple[str, str | None] | None = None) -> tuple[str, str | None]:
    """``(hub id, config)`` of a corpus row's ``dataset``: the build's resolution when given, else
    :func:`taskmill.templates.dataset_ids.split_dataset_id` (``glue/sst2`` -> glue, sst2;
    ``SetFit/sst5`` -> SetFit/sst5, no config)."""
    if resolved is not None and resolved[0]:
        return resolved
    from taskmill.templates.dataset_ids import split_dataset_id

    return split_dataset_id(dataset)


def source_of(dataset: str, resolved: tuple[str, str | None] | None = None, *,
              independent: Iterable[str] = INDEPENDENT_CONFIGS, aliases: Mapping[str, str] | None = None) -> str:
    """The source name of a task's dataset.

    Args:
        dataset: The corpus rows' ``dataset`` (``ai2_arc/ARC-Easy``).
        resolved: ``(hub id, config)`` from the corpus manifest, when known.
        independent: Hub ids whose configs are independent datasets (each config its own source).
        aliases: Dataset id (or hub id) -> source name; wins over everything else.

    Returns:
        The alias if one is given for ``dataset`` or its hub id; else ``hub id/config`` for a
        dataset in ``independent``; else the hub id (every config of one dataset is one source).
    """
    aliases = aliases or {}
    if dataset in aliases:
        return aliases[dataset]
    hub, config = hub_id_and_config(dataset, resolved)
    if hub in aliases:
        return aliases[hub]
    if config is not None and hub in set(independent):
        return f"{hub}/{config}"
    return hub


def task_sources(datasets: Mapping[str, str], resolved: Resolved, independent: Iterable[str],
                 aliases: Mapping[str, str]) -> dict[str, str]:
    """Task -> source for every task of a manifest (``datasets``: task -> row dataset id).

    The corpus manifest's resolution is used only when it names the same dataset id as the rows
    (a manifest of another build falls back to the library's rules).
    """
    independent = tuple(independent)
    out = {}
    for task, dataset in datasets.items():
        known = resolved.get(task)
        out[task] = source_of(dataset, known[1:] if known is not None and known[0] == dataset else None,
                              independent=independent, aliases=aliases)
    return out
