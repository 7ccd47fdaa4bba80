"""Collection files: which tasks to build, from which sources and templates, in which formats.

```yaml
seed: 0
formats: [zero_shot, few_shot, zero_shot_options]   # see taskmill.records.FORMATS
shots: 2                      # exemplars per few-shot prompt (SNI: positive examples)
dedup: true                   # drop exact duplicates (same split, prompt and completion)
mixing: {cap: 3000, temperature: 2.0, total: null, splits: [train]}   # optional
tasks:
  - name: sst2
    dataset: glue/sst2        # HF id and config; owner/name is one hub repo (see _dataset_id), or give `subset:`
    data_files: {train: data/train.jsonl}   # optional local JSONL/CSV/Parquet (HF schema)
    splits: [train]           # default: the data_files keys
    templates: sst2.yaml      # taskmill or PromptSource YAML; default: the template library
    template_ids: [...]       # optional subset of the file's templates
    max_examples: 1000        # at most this many source rows per split (seeded sample)
    shots_split: train        # where few-shot exemplars come from
    fewshot_seed: 1234        # lm-eval conversions only: lm-eval's fewshot_random_seed (default 1234)
    on_null: error            # a null field a template prints: error (default) | skip | default
    null_default: ""          # with on_null: default, the text printed for a null
  - name: sni_task
    sni: tasks/task001.json   # a Super-NaturalInstructions task file instead of `dataset`
    negative_examples: 0
  - name: my_instructions
    instructions: mine.yaml   # hand-written instruction/input/output (JSONL or YAML; builders.handwritten)
```

Paths are relative to the collection file. Every problem is reported at once as a
:class:`~taskmill.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskmill.errors import ConfigError
from taskmill.records import FORMATS

DATA_EXTENSIONS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_TOP_KEYS = {"name", "description", "seed", "formats", "shots", "dedup", "mixing", "tasks"}
_TASK_KEYS = {
    "name", "dataset", "subset", "data_files", "splits", "templates", "template_ids", "max_examples",
    "shots", "formats", "shots_split", "sni", "negative_examples", "instructions", "on_null", "null_default",
    "fewshot_seed",
}
ON_NULL = ("error", "skip", "default")
_MIXING_KEYS = {"cap", "temperature", "total", "splits"}


@dataclass(frozen=True)
class MixingConfig:
    """Examples-proportional mixing with a cap, and temperature sampling across tasks.

    Attributes:
        cap: A task counts as at most this many rows when weighting (None: no cap).
        temperature: Weights are ``min(n, cap) ** (1 / temperature)``; above 1 flattens the mix.
        total: Rows wanted per mixed split (None: the sum of the capped sizes).
        splits: Splits that are mixed; others are kept whole.
    """

    cap: int | None = None
    temperature: float = 1.0
    total: int | None = None
    splits: tuple[str, ...] = ("train",)


@dataclass(frozen=True)
class TaskConfig:
    """One task of a collection (paths as written, relative to the collection file).

    Attributes:
        name: Task name, unique in the collection.
        dataset: HF id with config, the provenance written on rows (``glue/sst2``).
        hf_id: The HF dataset id passed to ``load_dataset``.
        subset: The HF config, or None.
        data_files: Split -> local files, or None to load from the Hub.
        splits: Splits turned into rows.
        templates: Template file, or None for the library file of ``dataset``.
        template_ids: Subset of the template ids to use (None: all).
        max_examples: At most this many source rows per split (None: all).
        shots: Few-shot exemplars per prompt.
        formats: Formats built for this task.
        shots_split: Split the few-shot exemplars are drawn from.
        sni: Super-NaturalInstructions task file (then there are no templates).
        negative_examples: SNI negative examples shown in the prompt.
        instructions: Hand-written instruction file (JSONL/YAML), the task's one split.
        on_null: What a null field that a template prints (or converts, or indexes with) does:
            ``error`` (one line naming the row and field), ``skip`` (the row is left out for that
            template and format, and cannot be a few-shot exemplar; counted in the card) or
            ``default`` (``null_default`` is printed instead).
        null_default: The text printed for a null with ``on_null: default``.
        fewshot_seed: lm-eval's ``fewshot_random_seed`` for a task whose template file is an
            lm-eval conversion (None: lm-eval's default, 1234); other tasks may not set it.
    """

    name: str
    dataset: str
    hf_id: str
    subset: str | None
    data_files: dict[str, tuple[str, ...]] | None
    splits: tuple[str, ...]
    templates: str | None
    template_ids: tuple[str, ...] | None
    max_examples: int | None
    shots: int
    formats: tuple[str, ...]
    shots_split: str
    sni: str | None = None
    negative_examples: int = 0
    instructions: str | None = None
    on_null: str = "error"
    null_default: str | None = None
    fewshot_seed: int | None = None


@dataclass(frozen=True)
class Collection:
    """A validated collection file.

    Attributes:
        path: The collection file (paths in it are relative to its folder).
        seed: Seed every derived choice hashes from.
        formats: Default formats of the tasks.
        shots: Default exemplars per few-shot prompt.
        dedup: Drop exact duplicates.
        mixing: Mixing across tasks, or None to keep every row.
        tasks: The tasks, in build order.
    """

    path: Path
    seed: int
    formats: tuple[str, ...]
    shots: int
    dedup: bool
    mixing: MixingConfig | None
    tasks: tuple[TaskConfig, ...]

    @property
    def root(self) -> Path:
        """The folder relative paths are resolved against."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A path of the collection, resolved against its folder."""
        return self.root / relative

    def resolved(self) -> dict[str, Any]:
        """The resolved config as JSON-ready data (machine-independent: relative paths only)."""
        out = asdict(self)
        out["path"] = self.path.name
        for task in out["tasks"]:  # unset: left out, so manifests of collections without it are unchanged
            if task.get("fewshot_seed") is None:
                task.pop("fewshot_seed", None)
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _formats(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if not _str_list(raw) or not raw:
        problems.append(f"{where}formats must be a non-empty list of {list(FORMATS)}")
        return ()
    for name in raw:
        if name not in FORMATS:
            problems.append(f"{where}unknown format '{name}' (expected one of {list(FORMATS)})")
    return tuple(raw)


def _count(raw: dict[str, Any], key: str, default: int | None, where: str, problems: list[str],
           minimum: int = 0) -> int | None:
    value = raw.get(key, default)
    if value is None or (_is_int(value) and value >= minimum):
        return value
    problems.append(f"{where}{key} must be an integer >= {minimum}")
    return default


def _mixing(raw: Any, problems: list[str]) -> MixingConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("mixing must be a mapping with cap, temperature, total, splits")
        return None
    for key in sorted(set(raw) - _MIXING_KEYS):
        problems.append(f"mixing: unknown key '{key}' (expected one of {sorted(_MIXING_KEYS)})")
    cap = _count(raw, "cap", None, "mixing: ", problems, minimum=1)
    total = _count(raw, "total", None, "mixing: ", problems, minimum=1)
    temperature = raw.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature <= 0:
        problems.append("mixing: temperature must be a number > 0")
        temperature = 1.0
    splits = raw.get("splits", ["train"])
    if not _str_list(splits):
        problems.append("mixing: splits must be a list of split names")
        splits = ["train"]
    return MixingConfig(cap, float(temperature), total, tuple(splits))


def _dataset_id(raw: dict[str, Any], root: Path, where: str, problems: list[str]) -> tuple[str, str, str | None]:
    """(provenance id, HF id, HF config) from `dataset` and the optional `subset`.

    Read as ``load_dataset`` names datasets (:func:`taskmill.templates.dataset_ids.split_dataset_id`):
    ``owner/name`` is one hub repo, so ``knkarthick/dialogsum`` is not dataset ``knkarthick``
    with config ``dialogsum``; ``glue/sst2`` stays name/config because the template library says so.
    """
    from taskmill.templates.dataset_ids import split_dataset_id

    dataset = raw["dataset"]
    if "subset" in raw:
        subset = raw["subset"]
        if subset is not None and not isinstance(subset, str):
            problems.append(f"{where}subset must be a string or null")
            subset = None
        return (f"{dataset}/{subset}" if subset else dataset), dataset, subset
    parts = dataset.split("/")
    if len(parts) > 3 or not all(parts):
        problems.append(f"{where}dataset '{dataset}' must be 'name', 'owner/name', 'name/config' or "
                        "'owner/name/config' (or give the config as `subset:`)")
        return dataset, dataset, None
    templates = raw.get("templates")
    template_file = root / templates if isinstance(templates, str) and templates else None
    hf_id, subset = split_dataset_id(dataset, template_file)
    return dataset, hf_id, subset


def _data_files(raw: Any, root: Path, where: str, problems: list[str]) -> dict[str, tuple[str, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{where}data_files must map split names to a file or a list of files")
        return None
    out: dict[str, tuple[str, ...]] = {}
    kinds = set()
    for split, files in raw.items():
        files = [files] if isinstance(files, str) else files
        if not _str_list(files) or not files:
            problems.append(f"{where}data_files.{split} must be a file or a non-empty list of files")
            continue
        for name in files:
            kind = DATA_EXTENSIONS.get(Path(name).suffix.lower())
            if kind is None:
                problems.append(f"{where}data file '{name}': unknown extension (expected {sorted(DATA_EXTENSIONS)})")
            kinds.add(kind)
            if not (root / name).is_file():
                problems.append(f"{where}data file not found: {root / name}")
        out[str(split)] = tuple(files)
    if len(kinds - {None}) > 1:
        problems.append(f"{where}data_files mix formats {sorted(k for k in kinds if k)}; use one per task")
    return out


def starter_collection() -> Path:
    """The starter collection shipped inside taskmill (built when ``taskmill build`` gets no file)."""
    return Path(__file__).resolve().parent / "starter" / "collection.yaml"


def library_file(dataset_id: str) -> Path:
    """The template library file of a dataset (``glue/sst2`` -> ``templates/library/glue__sst2.yaml``)."""
    import taskmill.templates

    return Path(taskmill.templates.__file__).parent / "library" / f"{dataset_id.replace('/', '__')}.yaml"


def _source(raw: dict[str, Any], root: Path, where: str, problems: list[str]) -> dict[str, Any]:
    """The source keys: an HF dataset (hub or data_files) or an SNI task file."""
    if raw.get("instructions") is not None:
        from taskmill.builders.handwritten import instruction_source

        return instruction_source(raw, root, where, problems)
    sni = raw.get("sni")
    if sni is not None:
        if not isinstance(sni, str) or not sni:
            problems.append(f"{where}sni must be the path of a task JSON file")
            return {"dataset": "sni", "hf_id": "sni", "subset": None, "data_files": None, "sni": None}
        if not (root / sni).is_file():
            problems.append(f"{where}SNI task file not found: {root / sni}")
        for key in ("data_files", "templates", "template_ids"):
            if key in raw:
                problems.append(f"{where}'{key}' does not apply to an SNI task")
        dataset = raw.get("dataset") if isinstance(raw.get("dataset"), str) else f"sni/{Path(sni).stem}"
        return {"dataset": dataset, "hf_id": dataset, "subset": None, "data_files": None, "sni": sni}
    if not isinstance(raw.get("dataset"), str) or not raw["dataset"]:
        problems.append(f"{where}needs 'dataset' (HF id/config) or 'sni' (task file)")
        return {"dataset": "", "hf_id": "", "subset": None, "data_files": None, "sni": None}
    dataset, hf_id, subset = _dataset_id(raw, root, where, problems)
    files = _data_files(raw.get("data_files"), root, where, problems)
    return {"dataset": dataset, "hf_id": hf_id, "subset": subset, "data_files": files, "sni": None}


def _templates(raw: dict[str, Any], dataset: str, root: Path, where: str, problems: list[str]) -> str | None:
    templates = raw.get("templates")
    if templates is None:
        if raw.get("sni") is None and raw.get("instructions") is None and dataset and not library_file(dataset).is_file():
            problems.append(f"{where}no 'templates:' given and the template library has no "
                            f"{library_file(dataset).name} for dataset '{dataset}'")
        return None
    if not isinstance(templates, str) or not templates:
        problems.append(f"{where}templates must be the path of a template file")
        return None
    if not (root / templates).is_file():
        problems.append(f"{where}template file not found: {root / templates}")
    return templates


def _splits(raw: dict[str, Any], source: dict[str, Any], where: str, problems: list[str]) -> tuple[str, ...]:
    splits = raw.get("splits")
    if splits is None:
        if source["sni"] is not None or source.get("instructions"):
            return ("train",)
        if source["data_files"]:
            return tuple(source["data_files"])
        problems.append(f"{where}splits must list the splits to build (e.g. [train, validation])")
        return ()
    if not _str_list(splits) or not splits or len(set(splits)) != len(splits):
        problems.append(f"{where}splits must be a non-empty list of distinct split names")
        return ()
    if source["sni"] is not None and len(splits) != 1:
        problems.append(f"{where}an SNI task has one split (its Instances); give one name")
    files = source["data_files"]
    for split in splits if files else ():
        if split not in files:
            problems.append(f"{where}split '{split}' has no data_files entry (have {sorted(files)})")
    return tuple(splits)


def _nulls(raw: dict[str, Any], where: str, problems: list[str]) -> tuple[str, str | None]:
    """``on_null`` and ``null_default``, checked together (a default without ``on_null: default``
    would be silently unused)."""
    on_null = raw.get("on_null", "error")
    if on_null not in ON_NULL:
        problems.append(f"{where}on_null must be one of {list(ON_NULL)} (got {on_null!r})")
        on_null = "error"
    default = raw.get("null_default")
    if "null_default" in raw and not isinstance(default, str):
        problems.append(f"{where}null_default must be a string (the text printed for a null)")
        default = None
    if on_null == "default" and "null_default" not in raw:
        problems.append(f"{where}on_null: default needs null_default (the text printed for a null)")
    if on_null != "default" and "null_default" in raw and raw.get("on_null", "error") in ON_NULL:
        problems.append(f"{where}null_default applies only with on_null: default (have on_null: {on_null})")
    if raw.get("sni") is not None and ("on_null" in raw or "null_default" in raw):
        problems.append(f"{where}'on_null' does not apply to an SNI task")
    return on_null, default


def _task(raw: Any, index: int, defaults: dict[str, Any], root: Path, problems: list[str]) -> TaskConfig | None:
    if not isinstance(raw, dict):
        problems.append(f"tasks[{index}]: expected a mapping with name and dataset (or sni)")
        return None
    name = raw.get("name")
    where = f"task '{name}': " if isinstance(name, str) and name else f"tasks[{index}]: "
    if not isinstance(name, str) or not name:
        problems.append(f"{where}needs a non-empty 'name'")
    for key in sorted(set(raw) - _TASK_KEYS):
        problems.append(f"{where}unknown key '{key}' (expected one of {sorted(_TASK_KEYS)})")
    source = _source(raw, root, where, problems)
    templates = _templates(raw, source["dataset"], root, where, problems) if source["sni"] is None else None
    splits = _splits(raw, source, where, problems)
    ids = raw.get("template_ids")
    if ids is not None and not _str_list(ids):
        problems.append(f"{where}template_ids must be a list of template ids")
        ids = None
    formats = _formats(raw["formats"], where, problems) if "formats" in raw else defaults["formats"]
    shots = _count(raw, "shots", defaults["shots"], where, problems)
    shots_split = raw.get("shots_split", "train")
    if not isinstance(shots_split, str) or not shots_split:
        problems.append(f"{where}shots_split must be a split name")
        shots_split = "train"
    files = source["data_files"]
    few = [f for f in formats if f.startswith("few_shot")]
    if few and source["sni"] is None and files is not None and shots_split not in files:
        problems.append(f"{where}formats {few} need exemplars from split '{shots_split}': add it to "
                        f"data_files or set shots_split")
    if few and not shots:
        problems.append(f"{where}formats {few} need shots >= 1")
    nulls = _nulls(raw, where, problems)
    fewshot_seed = raw.get("fewshot_seed")
    if fewshot_seed is not None and not _is_int(fewshot_seed):
        problems.append(f"{where}fewshot_seed must be an integer (lm-eval's fewshot_random_seed)")
        fewshot_seed = None
    elif fewshot_seed is not None and source["sni"] is not None:
        problems.append(f"{where}fewshot_seed applies to lm-eval conversions, not to an SNI task")
    return TaskConfig(
        name=name if isinstance(name, str) else "", dataset=source["dataset"], hf_id=source["hf_id"],
        subset=source["subset"], data_files=files, splits=splits, templates=templates,
        template_ids=tuple(ids) if ids is not None else None,
        max_examples=_count(raw, "max_examples", None, where, problems, minimum=1), shots=shots or 0,
        formats=formats, shots_split=shots_split, sni=source["sni"],
        negative_examples=_count(raw, "negative_examples", 0, where, problems) or 0,
        instructions=source.get("instructions"), on_null=nulls[0], null_default=nulls[1],
        fewshot_seed=fewshot_seed,
    )


def parse_collection(data: Any, path: Path) -> Collection:
    """Validate a parsed collection file, listing every problem at once.

    Raises:
        ConfigError: The content is invalid (all problems listed).
    """
    if not isinstance(data, dict):
        raise ConfigError(["expected a mapping with 'tasks' (and seed, formats, shots, ...)"], file=str(path))
    problems: list[str] = []
    for key in sorted(set(data) - _TOP_KEYS):
        problems.append(f"unknown key '{key}' (expected one of {sorted(_TOP_KEYS)})")
    seed = data.get("seed", 0)
    if not _is_int(seed):
        problems.append("seed must be an integer")
        seed = 0
    formats = _formats(data.get("formats", ["zero_shot"]), "", problems)
    shots = _count(data, "shots", 2, "", problems) or 0
    dedup = data.get("dedup", True)
    if not isinstance(dedup, bool):
        problems.append("dedup must be true or false")
    mixing = _mixing(data.get("mixing"), problems)
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        problems.append("tasks must be a non-empty list")
        raw_tasks = []
    defaults = {"formats": formats, "shots": shots}
    tasks = [t for i, r in enumerate(raw_tasks) if (t := _task(r, i, defaults, path.parent, problems))]
    names = [t.name for t in tasks if t.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"task name '{name}' is used more than once")
    if problems:
        raise ConfigError(problems, file=str(path))
    return Collection(path, seed, formats, shots, bool(dedup), mixing, tuple(tasks))


def _with_formats(data: dict[str, Any], formats: Sequence[str]) -> dict[str, Any]:
    """The parsed file with ``formats`` as its formats and no task-level ``formats``."""
    out = {**data, "formats": list(dict.fromkeys(formats))}
    if isinstance(data.get("tasks"), list):
        out["tasks"] = [{k: v for k, v in t.items() if k != "formats"} if isinstance(t, dict) else t
                        for t in data["tasks"]]
    return out


def load_collection(path: str | Path, formats: Sequence[str] | None = None) -> Collection:
    """Read and validate a collection file.

    Args:
        path: The collection file.
        formats: Replace the formats of the file and of every task (``taskmill build --format``).
            They are validated with the rest, so what a format needs (shots, an exemplar split)
            is checked as if the file had named them.

    Raises:
        TaskmillError: The file is missing or is not valid YAML.
        ConfigError: The content is invalid (all problems listed).
    """
    from taskmill.fileio import read_yaml

    path = Path(path)
    data = read_yaml(path)
    if formats and isinstance(data, dict):
        data = _with_formats(data, formats)
    return parse_collection(data, path)
