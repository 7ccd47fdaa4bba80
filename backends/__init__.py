"""Model backends (hf, vllm, openai-compatible) behind one contract (:class:`~taskmill.backends.base.Backend`),
used by evaluation, preference scoring and Self-Instruct.

Backends are imported lazily by name so that ``taskmill --help`` and the scoring code work without
torch or vLLM; a missing dependency becomes one line with the install command.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from taskmill.errors import TaskmillError

# name -> (module, factory, modules it needs, install hint)
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "hf": ("taskmill.backends.hf", "HFBackend", ("torch", "transformers"), "pip install taskmill[eval]"),
    "vllm": ("taskmill.backends.vllm", "VLLMBackend", ("vllm",), "pip install taskmill[vllm]"),
    "openai": ("taskmill.backends.openai", "OpenAIBackend", (), "pip install taskmill"),
}

BACKENDS: tuple[str, ...] = tuple(_REGISTRY)


def require(modules: tuple[str, ...], backend: str) -> None:
    """Raise a one-line :class:`TaskmillError` naming the install command if a module is missing."""
    hint = _REGISTRY[backend][3]
    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            raise TaskmillError(f"backend '{backend}' needs {mod}, which is not installed: {hint}")


def get_backend(name: str, **kwargs: Any) -> Any:
    """Build the backend ``name`` with ``kwargs`` (see each backend's constructor).

    Raises:
        TaskmillError: Unknown name, or its dependencies are not installed.
    """
    if name not in _REGISTRY:
        raise TaskmillError(f"unknown backend '{name}': expected one of {', '.join(BACKENDS)}")
    module, factory, needs, _ = _REGISTRY[name]
    require(needs, name)
    cls = getattr(importlib.import_module(module), factory)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise TaskmillError(f"backend '{name}' does not take option(s) {', '.join(unknown)}")
    return cls(**kwargs)
