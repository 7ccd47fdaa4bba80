"""The ``executor`` settings of a LOCO or pipeline file (and of ``--executor`` / ``--address``).

```yaml
executor:
  kind: ray                # local (default: one unit after another in this process) or ray
  address: auto            # ray only: auto (the cluster `ray start` runs here), HOST:PORT, ray://HOST:PORT;
                           # absent: start a private Ray instance on this machine
  num_gpus_per_unit: 1     # GPUs each unit asks Ray for (0: CPU units); fractions share a GPU
  num_cpus_per_unit: 1     # CPUs each unit asks for, and the torch threads it computes with
  max_retries: 3           # times a unit whose worker process died is started again
  connect_timeout_s: 10    # how long an --address may take to answer
```

``num_cpus_per_unit`` is honoured by both executors: on a CPU the rounding of float sums depends on
the number of threads, so the local executor pins the same count, and the two give the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from taskmill.errors import ConfigError

EXECUTORS = ("local", "ray")
_KEYS = ("kind", "address", "num_gpus_per_unit", "num_cpus_per_unit", "max_retries", "connect_timeout_s")
# auto, HOST:PORT or ray://HOST:PORT (a host name, IPv4 or bracketed IPv6, then a port)
_ADDRESS = re.compile(r"^(auto|(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5})$")


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the units of a run execute (see the module docstring for the YAML form).

    Attributes:
        kind: ``local`` or ``ray``.
        address: Ray cluster address (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts
            a private Ray instance on this machine.
        num_gpus_per_unit: GPUs each unit asks for.
        num_cpus_per_unit: CPUs each unit asks for and the torch threads it uses.
        max_retries: Restarts of a unit whose worker died (SIGKILL, out of memory, lost node).
        connect_timeout_s: Seconds an address may take to accept a connection.
    """

    kind: str = "local"
    address: str | None = None
    num_gpus_per_unit: float = 0
    num_cpus_per_unit: int = 1
    max_retries: int = 3
    connect_timeout_s: float = 10.0

    @classmethod
    def from_mapping(cls, raw: Any, prefix: str = "executor") -> ExecutorConfig:
        """Validate an ``executor`` mapping (None: the defaults), listing every problem at once."""
        problems = executor_problems(raw, prefix)
        if problems:
            raise ConfigError(problems)
        return cls(**(raw or {}))

    def overridden(self, kind: str | None = None, address: str | None = None) -> ExecutorConfig:
        """This config with the command line's ``--executor`` / ``--address`` applied (and checked);
        ``--address`` alone means the ray executor."""
        raw = {f: getattr(self, f) for f in _KEYS}
        if kind is None and address is not None:
            kind = "ray"
        if kind is not None:
            raw["kind"] = kind
        if address is not None:
            raw["address"] = address
        problems = executor_problems(raw, "executor")
        if problems:
            cli = {"executor.kind": "--executor", "executor.address": "--address"}
            raise ConfigError([_rename(p, cli) for p in problems])
        return replace(self, **raw)


def _rename(problem: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        if problem.startswith(old + ":"):
            return new + problem[len(old):]
    return problem


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def executor_problems(raw: Any, prefix: str = "executor") -> list[str]:
    """Every problem of an ``executor`` mapping (None is fine: the defaults)."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [f"{prefix}: expected a mapping with kind (local or ray) and its settings"]
    problems = [f"{prefix}.{k}: unknown key (expected one of {', '.join(_KEYS)})" for k in sorted(set(raw) - set(_KEYS))]
    kind = raw.get("kind", "local")
    if kind not in EXECUTORS:
        problems.append(f"{prefix}.kind: {kind!r}: expected one of {', '.join(EXECUTORS)}")
    address = raw.get("address")
    if address is not None and (not isinstance(address, str) or not _ADDRESS.match(address)):
        problems.append(f"{prefix}.address: {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    elif address is not None and kind == "local":
        problems.append(f"{prefix}.address: only used by the ray executor (kind: ray)")
    gpus = raw.get("num_gpus_per_unit", 0)
    if not _number(gpus) or gpus < 0:
        problems.append(f"{prefix}.num_gpus_per_unit: {gpus!r}: expected a number >= 0")
    for key in ("num_cpus_per_unit", "max_retries"):
        value, least = raw.get(key, 1), 1 if key == "num_cpus_per_unit" else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            problems.append(f"{prefix}.{key}: {value!r}: expected an integer >= {least}")
    timeout = raw.get("connect_timeout_s", 10.0)
    if not _number(timeout) or timeout <= 0:
        problems.append(f"{prefix}.connect_timeout_s: {timeout!r}: expected a number of seconds > 0")
    return problems
