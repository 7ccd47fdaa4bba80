"""Reading a ``dataset:`` id the way the Hugging Face Hub names datasets.

``datasets.load_dataset(path, name)`` takes a hub repo id (``knkarthick/dialogsum``: owner/name,
or a legacy canonical name without an owner such as ``glue``) and, separately, a config
(``sst2``). Collections write both in one string, so ``a/b`` is ambiguous: config ``b`` of the
canonical dataset ``a`` (``glue/sst2``), or the repo ``a/b`` with no config (``SetFit/sst5``).
:func:`split_dataset_id` settles it without asking the hub:

* an explicit config (``subset:``) always wins, and the whole string is then the repo id;
* ``name`` is a repo with no config; ``owner/name/config`` is repo ``owner/name``, config ``config``;
* ``a/b`` is dataset ``a`` config ``b`` when a template file says so (its header reads
  ``dataset: a`` and ``subset: b``: the task's own file, or the library file ``a__b.yaml``), or when
  ``a`` is a canonical dataset that the template library uses with configs (``glue``,
  ``super_glue``, ...); otherwise it is the hub repo ``a/b`` (modern hub ids all have an owner).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent / "library"
# Top-level `dataset:` / `subset:` lines of a template file (taskmill and PromptSource files both
# start with them), read without parsing the templates.
_HEADER_KEY = re.compile(r"^(dataset|subset):[ \t]*(.*?)[ \t]*(?:#.*)?$", re.M)
_HEADER_BYTES = 8192


def header(path: Path) -> tuple[str, str | None] | None:
    """The ``(dataset, subset)`` a template file declares at its top, or None if unreadable.

    Only the top-level keys before the templates are read (a quick look, not a parse): a file
    that does not declare ``dataset:`` there gives None.
    """
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            text = fh.read(_HEADER_BYTES)
    except OSError:
        return None
    text = text.split("\ntemplates:", 1)[0]
    found = {key: value.strip("'\"") for key, value in _HEADER_KEY.findall(text)}
    if not found.get("dataset"):
        return None
    subset = found.get("subset")
    return found["dataset"], (subset if subset and subset not in ("null", "~") else None)


@functools.lru_cache(maxsize=1)
def canonical_with_configs() -> frozenset[str]:
    """Owner-less dataset names that the template library uses with a config (``glue``, ...)."""
    names = set()
    for path in sorted(LIBRARY.glob("*.yaml")):
        declared = header(path)
        if declared is not None and declared[1] is not None and "/" not in declared[0]:
            names.add(declared[0])
    return frozenset(names)


def split_dataset_id(dataset: str, template_file: Path | None = None) -> tuple[str, str | None]:
    """``(hub id, config)`` of a collection's ``dataset`` string given without ``subset:``.

    Args:
        dataset: ``name``, ``owner/name``, ``name/config`` or ``owner/name/config`` (valid parts).
        template_file: The task's template file, whose header may say how ``a/b`` splits.

    Returns:
        The id for ``load_dataset``'s ``path`` and its ``name`` (config) argument.
    """
    parts = dataset.split("/")
    if len(parts) == 1:
        return dataset, None
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[2]
    first, second = parts
    files = [template_file] if template_file is not None else []
    files.append(LIBRARY / f"{first}__{second}.yaml")
    for path in files:
        declared = header(path) if path.is_file() else None
        if declared == (first, second):
            return first, second
        if declared == (dataset, None):
            return dataset, None
    if first in canonical_with_configs():
        return first, second
    return dataset, None
