"""Convert an lm-evaluation-harness task YAML into a taskmill template file.

The converted template renders, for every dataset row, exactly the strings lm-eval's
``ConfigurableTask.construct_requests`` builds for a zero-shot multiple-choice request:
``(context, target_delimiter + choice)`` for each choice. Three things make that exact:

* the template sets ``keep_whitespace: true``, so the input and every choice keep their leading and
  trailing spaces (taskmill strips them otherwise; lm-eval scores ``" on a television "`` as is);
* choices are joined on a bare ``|||`` (no padding spaces), so the split returns them unchanged;
* the file's ``source.eval`` says ``prompt_style: lmeval`` and ``separator: <target_delimiter>``:
  ``taskmill eval --prompt-style lmeval`` asks the backend for ``(prompt, separator + choice)``.

Supported task keys (everything else fails with one line naming the key):

============================  ==================================================================
``doc_to_text``               Jinja text or a field name (``description`` is prefixed, as lm-eval does)
``doc_to_choice``             a YAML list or mapping, a field name, or one ``{{ expression }}``
``doc_to_target``             an index, a field name, or Jinja (digits index the choices, else text)
``target_delimiter``          the eval separator (default ``" "``)
``fewshot_delimiter``         recorded in ``source.eval``; used by :func:`fewshot_contexts`
``fewshot_config``            ``sampler`` (``default`` / ``first_n``), ``split``, the two delimiters;
                              other keys fail few-shot contexts only (``source.lm_eval.fewshot``)
``*_split``                   which split lm-eval draws few-shot examples from
``process_docs``              ``!function`` of a known function, recognised by its code (hellaswag's)
``include``                   merged first, the including file's keys win (as lm-eval does)
============================  ==================================================================

Keys that do not change a zero-shot request (``dataset_*``, ``metric_list`` without
``acc_mutual_info``, ``metadata``, ``tag``, decontamination keys, ``num_fewshot``) are read or
ignored. Only ``output_type: multiple_choice`` converts.

Few-shot: :func:`fewshot_contexts` rebuilds lm-eval's ``fewshot_context(doc, num_fewshot)`` for a
converted task from the file's ``source.lm_eval.fewshot`` (:class:`FewshotSpec`): the same pool
split, sampler, ``fewshot_random_seed`` (1234 by default) and row order give byte-identical contexts.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from taskmill.errors import ConfigError, DataError, TaskmillError
from taskmill.fileio import read_text
from taskmill.records import Template, TemplateFile, TemplateMetadata

# lm-eval's TaskConfig defaults for the keys that shape a request.
DEFAULT_TARGET_DELIMITER = " "
DEFAULT_FEWSHOT_DELIMITER = "\n\n"

# Keys read by the converter.
_HANDLED = {"task", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter",
            "fewshot_delimiter", "description", "process_docs", "metadata", "dataset_path", "dataset_name",
            "metric_list", "fewshot_config", "training_split", "validation_split", "test_split", "fewshot_split"}
# Keys that never change a zero-shot request's strings.
_IGNORED = {"task_alias", "tag", "group", "dataset_kwargs", "should_decontaminate", "doc_to_decontamination_query",
            "num_fewshot"}
# Keys lm-eval knows that change requests in ways a taskmill template cannot express (yet).
_UNSUPPORTED = {"use_prompt", "doc_to_image", "doc_to_audio", "gen_prefix", "process_results", "filter_list",
                "generation_kwargs", "repeats", "custom_dataset", "unsafe_code", "class",
                "task_list", "multiple_input"}
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ONE_EXPRESSION = re.compile(r"\s*\{\{(.*)\}\}\s*", re.DOTALL)
_TARGET_VAR = "lmeval_target"


@dataclass(frozen=True)
class FunctionRef:
    """A ``!function module.name`` tag of a task YAML, not imported (taskmill never runs its code).

    Attributes:
        ref: The tag's text, ``module.function``.
        folder: The folder of the YAML file that holds the tag (the module is ``folder/module.py``).
    """

    ref: str
    folder: Path

    @property
    def module_path(self) -> Path:
        """The Python file the tag names."""
        return self.folder / (self.ref.rsplit(".", 1)[0].replace(".", "/") + ".py")

    @property
    def function(self) -> str:
        """The function's name."""
        return self.ref.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class KnownFunction:
    """A ``process_docs`` function taskmill re-expresses in Jinja (set before every source renders).

    Attributes:
        name: Human name for messages.
        fingerprint: sha256 of the function's code and of the module functions it calls (AST dump,
            so comments and formatting do not matter); the function is recognised only by it.
        fields: The fields it adds to a row, in order: name -> Jinja expression over the row.
    """

    name: str
    fingerprint: str
    fields: tuple[tuple[str, str], ...]


# hellaswag's clean-up of one text, as Jinja filters: strip, "[title]" becomes a sentence end, other
# bracketed WikiHow markers go, double spaces become one (the regex is \[.*?\]; a Jinja string
# literal needs its backslashes doubled).
_HELLASWAG_CLEAN: tuple[tuple[str, str], ...] = (
    ("trim", ""), ("replace", "' [title]', '. '"), ("regex_replace", r"'\\[.*?\\]', ''"), ("replace", "'  ', ' '"),
)


def _clean(expr: str) -> str:
    """Jinja applying hellaswag's clean-up to one text."""
    return f"({expr}) | " + " | ".join(f"{f}({a})" if a else f for f, a in _HELLASWAG_CLEAN)


def _clean_each(expr: str) -> str:
    """Jinja applying hellaswag's clean-up to every item of a list."""
    return f"{expr} | " + " | ".join(f"map('{f}', {a})" if a else f"map('{f}')" for f, a in _HELLASWAG_CLEAN) + " | list"


KNOWN_PROCESS_DOCS: tuple[KnownFunction, ...] = (
    KnownFunction(
        # lm-eval 0.4.13 tasks/hellaswag/utils.py: process_docs and its preprocess helper.
        name="hellaswag's utils.process_docs",
        fingerprint="68c4df493b96e3d239843f3969e41060291234e3d7eb1201c3af396edf056490",
        fields=(
            ("query", _clean("activity_label ~ ': ' ~ ctx_a ~ ' ' ~ (ctx_b | capitalize)")),
            ("choices", _clean_each("endings")),
            ("gold", "label | int"),
        ),
    ),
)


@dataclass(frozen=True)
class LmevalConversion:
    """What :func:`convert_lmeval` wrote.

    Attributes:
        template_file: The converted file (one template).
        task: lm-eval's task name.
        eval_settings: The ``taskmill eval`` settings that reproduce lm-eval's requests.
        ignored: Keys read but without effect on a zero-shot request.
    """

    template_file: TemplateFile
    task: str
    eval_settings: dict[str, str]
    ignored: tuple[str, ...]


# --- reading --------------------------------------------------------------------------------------


def _loader(folder: Path) -> type[yaml.SafeLoader]:
    """A safe loader that keeps ``!function`` tags as :class:`FunctionRef` (never imports them)."""

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> FunctionRef:
        return FunctionRef(str(loader.construct_scalar(node)), folder)  # type: ignore[arg-type]

    Loader.add_constructor("!function", function)
    return Loader


def read_task_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An lm-eval task YAML as a mapping, its ``include`` files merged under it (its keys win).

    Raises:
        TaskmillError: The file is missing, is not YAML, is not a mapping, or includes itself.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise TaskmillError("include cycle: the file includes itself", file=str(path))
    text = read_text(path, missing="lm-eval task YAML not found")
    try:
        data = yaml.load(text, Loader=_loader(path.parent))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise TaskmillError(f"malformed YAML: {where}{getattr(err, 'problem', None) or err}", file=str(path)) from None
    if not isinstance(data, dict):
        raise TaskmillError("expected an lm-eval task (a YAML mapping with 'task')", file=str(path))
    includes = data.pop("include", None)
    if includes is None:
        return data
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(str(inc)) if Path(str(inc)).is_absolute() else path.parent / str(inc)
        merged.update(read_task_yaml(inc_path, (*_seen, path)))
    merged.update(data)
    return merged


def installed_tasks_dir() -> Path | None:
    """``lm_eval/tasks`` of the installed lm-evaluation-harness (found, not imported), or None."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "tasks"
    return folder if folder.is_dir() else None


def resolve_task_yaml(task: str | Path) -> Path:
    """The task YAML: ``task`` itself when it is a path, else ``<name>.yaml`` among lm-eval's own tasks.

    Raises:
        TaskmillError: A bare name that no (or more than one) installed lm-eval task file has.
    """
    path = Path(task)
    if path.exists() or path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        return path  # a missing file is reported by read_task_yaml
    tasks = installed_tasks_dir()
    if tasks is None:
        raise TaskmillError(f"'{task}' is not a file and lm-eval is not installed to look it up by name "
                            "(pip install lm-eval); expected the task YAML's path")
    matches = sorted(tasks.rglob(f"{path.name}.yaml"))
    if len(matches) != 1:
        found = ", ".join(str(m.relative_to(tasks)) for m in matches[:5]) or "none"
        raise TaskmillError(f"'{task}': expected exactly one lm-eval task file named {path.name}.yaml under "
                            f"{tasks} (found {found}); give the task YAML's path")
    return matches[0]


# --- known functions ------------------------------------------------------------------------------


def function_fingerprint(ref: FunctionRef) -> str | None:
    """sha256 over the AST of the named function and of the module-level functions it calls.

    Returns None when the module or the function cannot be read (the caller reports it).
    """
    try:
        tree = ast.parse(ref.module_path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if ref.function not in defs:
        return None
    order, todo = [], [ref.function]
    while todo:  # the function, then every module function it names, once each, first-seen order
        name = todo.pop(0)
        if name in order:
            continue
        order.append(name)
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    digest = hashlib.sha256()
    for name in order:
        digest.update(ast.dump(defs[name], include_attributes=False).encode())
    return digest.hexdigest()


def known_process_docs(ref: FunctionRef) -> KnownFunction | None:
    """The known function ``ref`` names (recognised by its code), or None."""
    fingerprint = function_fingerprint(ref)
    return next((k for k in KNOWN_PROCESS_DOCS if k.fingerprint == fingerprint), None)


# --- Jinja translation ----------------------------------------------------------------------------


def jinja_literal(value: str) -> str:
    """A Jinja string literal that evaluates to ``value`` exactly (JSON escapes are Jinja's too)."""
    return json.dumps(value, ensure_ascii=False)


def _is_field(value: str) -> bool:
    # lm-eval reads a bare name as a field when the dataset has it; taskmill has no dataset at
    # conversion time, so a bare identifier is taken for a field (a literal one-word text is not).
    return _FIELD.fullmatch(value) is not None


def _text_source(value: Any, key: str, problems: list[str]) -> str | None:
    """Jinja source printing ``value`` (a field name or Jinja text) as lm-eval renders it."""
    if isinstance(value, FunctionRef):
        problems.append(f"{key}: !function {value.ref} is Python code; only Jinja text or a field name converts")
        return None
    if not isinstance(value, str):
        problems.append(f"{key}: {type(value).__name__} value {value!r}; expected Jinja text or a field name")
        return None
    return "{{ " + value + " }}" if _is_field(value) else value


def _keep_trailing_newline(source: str) -> str:
    """lm-eval's Jinja keeps a source's trailing newline; taskmill's drops one, so add one."""
    return source + "\n" if source.endswith("\n") else source


def _choices_source(value: Any, problems: list[str]) -> str | None:
    """Jinja printing lm-eval's ``doc_to_choice`` joined on a bare ``|||`` (split back unchanged)."""
    join = " | join('|||') }}"
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            problems.append(f"doc_to_choice: list {value!r}; expected strings")
            return None
        return "{{ [" + ", ".join(jinja_literal(str(v)) for v in value) + "]" + join
    if isinstance(value, FunctionRef):
        problems.append(f"doc_to_choice: !function {value.ref} is Python code; expected a list, a field name "
                        "or one {{ expression }}")
        return None
    if not isinstance(value, str):
        problems.append(f"doc_to_choice: {type(value).__name__} value; expected a list, a field name or one "
                        "{{ expression }}")
        return None
    if _is_field(value):
        return "{{ " + value + join
    expression = _single_expression(value)
    if expression is None:
        problems.append(f"doc_to_choice: {value!r} is not one {{{{ expression }}}}; lm-eval evaluates its "
                        "rendered text as a Python list, which taskmill converts only for a single expression")
        return None
    return "{{ (" + expression + ")" + join


def _single_expression(source: str) -> str | None:
    """The expression of a source that is exactly one ``{{ expression }}`` (spaces around allowed)."""
    match = _ONE_EXPRESSION.fullmatch(source)
    if match is None:
        return None
    from taskmill.templates.engine import environment

    import jinja2
    from jinja2 import nodes

    try:
        body = environment(True).parse(source.strip()).body
    except jinja2.TemplateSyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    if isinstance(body[0].nodes[0], nodes.TemplateData):
        return None
    return match.group(1).strip()


def _target_source(value: Any, problems: list[str]) -> str | None:
    """Jinja printing the gold choice's text, decided as lm-eval's ``doc_to_target`` decides it."""
    if isinstance(value, bool) or isinstance(value, (list, FunctionRef)) or not isinstance(value, (int, str)):
        what = f"!function {value.ref}" if isinstance(value, FunctionRef) else repr(value)
        problems.append(f"doc_to_target: {what}; expected an index, a field name or Jinja text "
                        "(multiple targets and Python functions do not convert)")
        return None
    if isinstance(value, int):
        return "{{ answer_choices[" + str(value) + "] }}"
    if _is_field(value):  # a field: an int indexes the choices, a string is the gold text
        return (f"{{% set {_TARGET_VAR} = {value} %}}"
                f"{{{{ answer_choices[{_TARGET_VAR}] if {_TARGET_VAR} is integer else {_TARGET_VAR} }}}}")
    # Jinja: rendered text; digits index the choices (lm-eval's literal_eval), other text is the gold.
    return (f"{{% set {_TARGET_VAR} %}}{value}{{% endset %}}"
            f"{{{{ answer_choices[{_TARGET_VAR} | int] if {_TARGET_VAR}.isdigit() else {_TARGET_VAR} }}}}")


# --- few-shot contexts ----------------------------------------------------------------------------

# lm-eval's default ``fewshot_random_seed`` (``simple_evaluate``, the CLI's ``--seed`` third value).
FEWSHOT_SEED = 1234
# lm-eval's samplers that taskmill reproduces (``lm_eval.api.samplers.SAMPLER_REGISTRY``).
FEWSHOT_SAMPLERS = ("default", "first_n")
# ``fewshot_config`` keys that keep requests reproducible (the rest fail few-shot contexts).
_FEWSHOT_CONFIG_KEYS = {"sampler", "split", "fewshot_delimiter", "target_delimiter"}


@dataclass(frozen=True)
class FewshotSpec:
    """How lm-eval picks and formats a task's few-shot examples (``source.lm_eval.fewshot``).

    Attributes:
        sampler: ``default`` (``random.Random(seed).sample`` over the pool, one generator for the
            whole run, advanced row by row) or ``first_n`` (the pool's first rows).
        pool_split: The split the examples come from, by lm-eval's rule: ``fewshot_split`` (or
            ``fewshot_config.split``), else ``training_split``, else ``validation_split``, else
            ``test_split``.
        exclude_eval_doc: lm-eval leaves the evaluated row out of its own examples (drawing one
            more, then dropping it) exactly when the few-shot split equals ``test_split`` (both
            unset counts as equal); this changes which rows the generator returns.
        fewshot_delimiter: After each example's answer.
        target_delimiter: Between an example's text and its answer.
        unsupported: Why lm-eval's few-shot contexts cannot be reproduced ('' when they can).
    """

    sampler: str = "default"
    pool_split: str | None = None
    exclude_eval_doc: bool = True
    fewshot_delimiter: str = DEFAULT_FEWSHOT_DELIMITER
    target_delimiter: str = DEFAULT_TARGET_DELIMITER
    unsupported: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as written into ``source.lm_eval.fewshot``."""
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FewshotSpec":
        """The spec read back from ``source.lm_eval.fewshot``."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def fewshot_spec(cfg: dict[str, Any]) -> FewshotSpec:
    """lm-eval's few-shot behaviour for the task config ``cfg`` (as :func:`read_task_yaml` returns it).

    What taskmill cannot reproduce goes into ``unsupported`` (one line) instead of failing the
    conversion: zero-shot requests do not depend on it.
    """
    fs = cfg.get("fewshot_config") or {}
    reasons: list[str] = []
    if not isinstance(fs, dict):
        fs = {}
        reasons.append("'fewshot_config' must be a mapping")
    extra = sorted(k for k, v in fs.items() if k not in _FEWSHOT_CONFIG_KEYS and v is not None)
    if extra:
        supported = ", ".join(sorted(_FEWSHOT_CONFIG_KEYS))
        reasons.append(f"fewshot_config key(s) {', '.join(extra)} (supported: {supported})")
    sampler = fs.get("sampler", "default")
    if sampler not in FEWSHOT_SAMPLERS:
        reasons.append(f"fewshot_config.sampler {sampler!r} (supported: {', '.join(FEWSHOT_SAMPLERS)})")
    if cfg.get("description"):
        reasons.append("a 'description' before few-shot examples")
    fewshot_delim = str(fs.get("fewshot_delimiter", cfg.get("fewshot_delimiter", DEFAULT_FEWSHOT_DELIMITER)))
    target_delim = str(fs.get("target_delimiter", cfg.get("target_delimiter", DEFAULT_TARGET_DELIMITER)))
    split = fs.get("split", cfg.get("fewshot_split"))
    test_split = cfg.get("test_split")
    pool = split or cfg.get("training_split") or cfg.get("validation_split") or test_split
    unsupported = ("lm-eval few-shot feature(s) taskmill does not reproduce: " + "; ".join(reasons)) if reasons else ""
    return FewshotSpec(str(sampler), pool, split == test_split, fewshot_delim, target_delim, unsupported)


class FewshotSampler:
    """lm-eval's example sampling, reproduced: same pool, seed and row order -> the same examples.

    Rows are compared as lm-eval compares its documents (dict equality), so a pool row equal to
    the evaluated row is left out when :attr:`FewshotSpec.exclude_eval_doc` is set. The generator
    consumes only what ``random.sample`` consumes for the pool's size, so drawing pool indices
    (:meth:`sample_indices`) gives lm-eval's rows by position.
    """

    def __init__(self, spec: FewshotSpec, pool: Sequence[dict[str, Any]], seed: int | None = FEWSHOT_SEED) -> None:
        import random

        self.spec = spec
        self.pool = pool if isinstance(pool, list) else list(pool)
        self.rnd = random.Random(seed)

    def sample(self, n: int, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``n`` examples lm-eval puts before ``row`` (advances the generator as lm-eval does)."""
        return [self.pool[j] for j in self.sample_indices(n, row)]

    def sample_indices(self, n: int, row: dict[str, Any]) -> list[int]:
        """Pool positions of the ``n`` examples lm-eval puts before ``row``, in prompt order.

        Raises:
            DataError: The pool is too small for ``n`` (lm-eval's assertion, as one line).
        """
        if n <= 0:
            return []
        exclude = self.spec.exclude_eval_doc
        size = len(self.pool)
        if self.spec.sampler == "first_n":
            kept = [j for j in range(size) if self.pool[j] != row] if exclude else range(size)
            if n > len(kept):
                raise DataError(f"num_fewshot {n} exceeds the {len(kept)} few-shot rows available")
            return list(kept[:n])
        if n + int(exclude) > size:
            raise DataError(f"num_fewshot {n} exceeds the {size} few-shot rows available")
        if not exclude:
            return self.rnd.sample(range(size), n)
        picked = [j for j in self.rnd.sample(range(size), n + 1) if self.pool[j] != row][:n]
        if len(picked) < n:  # the pool holds several copies of the row: draw again without any
            rest = [j for j in range(size) if self.pool[j] != row]
            if n > len(rest):
                raise DataError(f"num_fewshot {n} exceeds the {len(rest)} few-shot rows other than the evaluated one")
            picked = self.rnd.sample(rest, n)
        return picked


def fewshot_draws(spec: FewshotSpec, pool: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                  num_fewshot: int, seed: int | None = FEWSHOT_SEED) -> list[tuple[int, ...]]:
    """Pool positions of lm-eval's examples for every evaluated row, in row order.

    One generator runs over ``rows`` in order (lm-eval's ``default`` sampler), so a row's examples
    depend on every row before it: callers that render rows in parallel compute the draws once,
    in order, and give each worker its rows' draws.

    Raises:
        DataError: The pool is too small.
    """
    sampler = FewshotSampler(spec, pool, seed)
    return [tuple(sampler.sample_indices(num_fewshot, row)) for row in rows]


def fewshot_example(rendered: Any, spec: FewshotSpec) -> str:
    """One lm-eval example: ``text + target_delimiter + answer + fewshot_delimiter``.

    lm-eval writes the delimiters only around an answer (a choice index, or non-empty text).
    """
    answered = rendered.target_index is not None or rendered.target != ""
    return rendered.input + spec.target_delimiter + rendered.target + spec.fewshot_delimiter if answered else rendered.input


def stored_fewshot_spec(template_file: TemplateFile) -> FewshotSpec | None:
    """The ``source.lm_eval.fewshot`` of a converted file, or None for any other template file."""
    source = template_file.source if isinstance(template_file.source, dict) else {}
    return fewshot_spec_of(source)


def fewshot_spec_of(source: dict[str, Any] | None) -> FewshotSpec | None:
    """The :class:`FewshotSpec` stored in a template file's ``source`` block, or None."""
    lm_eval = (source or {}).get("lm_eval")
    stored = lm_eval.get("fewshot") if isinstance(lm_eval, dict) else None
    return FewshotSpec.from_dict(stored) if isinstance(stored, dict) else None


def fewshot_contexts(template_file: TemplateFile, rows: Sequence[dict[str, Any]], pool: Sequence[dict[str, Any]],
                     num_fewshot: int, *, seed: int | None = FEWSHOT_SEED,
                     spec: FewshotSpec | None = None) -> list[str]:
    """lm-eval's ``fewshot_context(row, num_fewshot)`` for every row of a converted task, in order.

    Each example is ``text + target_delimiter + answer + fewshot_delimiter`` (its text and answer
    rendered by the converted template), and the row's own text follows the last one. The
    requests are then ``(context, target_delimiter + choice)``, as for zero-shot.

    Args:
        template_file: A file written by :func:`convert_lmeval`.
        rows: The evaluated rows (raw dataset rows), in lm-eval's order: the ``default`` sampler's
            generator advances row by row, so a row's examples depend on the rows before it.
        pool: The rows of :attr:`FewshotSpec.pool_split` (raw, before ``process_docs``).
        num_fewshot: Examples per row.
        seed: lm-eval's ``fewshot_random_seed``.
        spec: Overrides the file's ``source.lm_eval.fewshot``.

    Raises:
        ConfigError: The task uses a few-shot feature taskmill does not reproduce (one line).
        DataError: The pool is too small.
    """
    from taskmill.templates.engine import CompiledTemplate

    if spec is None:
        spec = stored_fewshot_spec(template_file)
        if spec is None:
            raise ConfigError(["no source.lm_eval.fewshot: convert the task again with convert-lmeval"],
                              file=template_file.path)
    if spec.unsupported and num_fewshot > 0:
        raise ConfigError([spec.unsupported], file=template_file.path)
    ct = CompiledTemplate(template_file.templates[0])
    sampler = FewshotSampler(spec, pool, seed)
    rendered: dict[int, str] = {}

    def example(doc: dict[str, Any]) -> str:
        key = id(doc)  # pool rows are rendered once
        if key not in rendered:
            rendered[key] = fewshot_example(ct.render(doc), spec)
        return rendered[key]

    return ["".join(example(d) for d in sampler.sample(num_fewshot, row)) + ct.render(row).input for row in rows]


# --- conversion -----------------------------------------------------------------------------------


def _is_default(key: str, value: Any) -> bool:
    """True when an unsupported key holds lm-eval's default (a no-op, e.g. ``repeats: 1``)."""
    return value is None or value is False or (key == "repeats" and value == 1)


def _key_problems(cfg: dict[str, Any]) -> list[str]:
    """Problems of the task's keys: unsupported, unknown, wrong output type or metric."""
    problems = []
    for key in sorted(cfg):
        if key in _UNSUPPORTED and not _is_default(key, cfg[key]):
            problems.append(f"'{key}' is not supported by the converter")
        elif key not in _HANDLED | _IGNORED | _UNSUPPORTED:
            problems.append(f"unknown lm-eval task key '{key}'")
        elif key in _IGNORED and isinstance(cfg[key], FunctionRef):
            problems.append(f"'{key}': !function {cfg[key].ref} is not supported")
    if cfg.get("output_type") != "multiple_choice":
        problems.append(f"output_type '{cfg.get('output_type', 'generate_until')}' is not supported "
                        "(only multiple_choice converts)")
    for metric in cfg.get("metric_list") or []:
        name = metric.get("metric") if isinstance(metric, dict) else None
        if name == "acc_mutual_info":  # adds unconditional requests ("", delimiter + choice)
            problems.append("metric 'acc_mutual_info' is not supported (taskmill's --calibrate uses its own prompt)")
    for key in ("target_delimiter", "fewshot_delimiter"):
        if key in cfg and not isinstance(cfg[key], str):
            problems.append(f"'{key}' must be a string")
    if not isinstance(cfg.get("task"), str) or not cfg.get("task"):
        problems.append("'task' (the task name) must be a non-empty string")
    return problems


def _prelude(cfg: dict[str, Any], problems: list[str]) -> str:
    """``{% set %}`` statements adding the fields a known ``process_docs`` adds to every row."""
    ref = cfg.get("process_docs")
    if ref is None:
        return ""
    if not isinstance(ref, FunctionRef):
        problems.append("process_docs: expected !function module.name")
        return ""
    known = known_process_docs(ref)
    if known is None:
        names = ", ".join(k.name for k in KNOWN_PROCESS_DOCS)
        problems.append(f"process_docs: !function {ref.ref} ({ref.module_path}) is not a known function; "
                        f"supported: {names}")
        return ""
    return "".join(f"{{% set {name} = {expr} %}}" for name, expr in known.fields)


def lmeval_version() -> str | None:
    """The installed lm-evaluation-harness version, or None."""
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return None


def _task_file_label(path: Path) -> str:
    """The task file relative to lm-eval's ``tasks`` folder when it is one of lm-eval's own."""
    parts = path.resolve().parts
    if "lm_eval" in parts and "tasks" in parts[parts.index("lm_eval"):]:
        start = parts.index("tasks", parts.index("lm_eval"))
        return "/".join(parts[start + 1:])
    return path.name


def build_lmeval_template(path: str | Path, dataset: str | None = None) -> LmevalConversion:
    """Convert the lm-eval task YAML at ``path`` (not written; see :func:`convert_lmeval`).

    Args:
        path: The task YAML (lm-eval's own under ``lm_eval/tasks/`` or a user's), or the name of
            one of lm-eval's own task files (``piqa`` -> ``lm_eval/tasks/piqa/piqa.yaml``).
        dataset: HF id of the output file (``name``, ``owner/name``, ``name/config`` or
            ``owner/name/config``); default: the task's ``dataset_path`` / ``dataset_name``.

    Raises:
        ConfigError: Every unsupported feature found, in one line.
    """
    path = resolve_task_yaml(path)
    cfg = read_task_yaml(path)
    problems = _key_problems(cfg)
    prelude = _prelude(cfg, problems)
    text = _text_source(cfg.get("doc_to_text"), "doc_to_text", problems) if "doc_to_text" in cfg else None
    if "doc_to_text" not in cfg:
        problems.append("'doc_to_text' is missing")
    description = cfg.get("description") or ""
    desc = _text_source(description, "description", problems) if description else ""
    choices = _choices_source(cfg.get("doc_to_choice"), problems) if "doc_to_choice" in cfg else None
    if "doc_to_choice" not in cfg:
        problems.append("'doc_to_choice' is missing (multiple_choice needs it)")
    target = _target_source(cfg.get("doc_to_target"), problems) if "doc_to_target" in cfg else None
    if "doc_to_target" not in cfg:
        problems.append("'doc_to_target' is missing")
    if problems or text is None or choices is None or target is None:
        raise ConfigError(problems, file=str(path))
    task = str(cfg["task"])
    template = Template(
        id=f"lmeval-{task}", name=f"lm-eval {task}",
        input=_keep_trailing_newline(prelude + (desc or "") + text),
        target=prelude + target, answer_choices=prelude + choices,
        metadata=TemplateMetadata(original_task=True, metrics=("Accuracy",)),
        reference=f"lm-evaluation-harness task {task}", keep_whitespace=True,
    )
    _check_compiles(template, path)
    settings = {"prompt_style": "lmeval",
                "separator": str(cfg.get("target_delimiter", DEFAULT_TARGET_DELIMITER)),
                "fewshot_delimiter": str(cfg.get("fewshot_delimiter", DEFAULT_FEWSHOT_DELIMITER))}
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    source = {
        "lm_eval": {"task": task, "version": metadata.get("version"), "file": _task_file_label(path),
                    "lm_eval_version": lmeval_version(), "fewshot": fewshot_spec(cfg).to_dict()},
        "eval": settings,
    }
    hub, subset = _dataset(cfg, dataset, path)
    tf = TemplateFile(str(path), hub, subset, (template,), source)
    ignored = tuple(sorted(k for k in cfg if k in _IGNORED))
    return LmevalConversion(tf, task, settings, ignored)


def _dataset(cfg: dict[str, Any], dataset: str | None, path: Path) -> tuple[str, str | None]:
    """(HF id, config) of the output file: ``--dataset``, else the task's ``dataset_path``/``dataset_name``."""
    if dataset is not None:
        from taskmill.templates.dataset_ids import split_dataset_id

        return split_dataset_id(dataset)
    hub = cfg.get("dataset_path")
    name = cfg.get("dataset_name")
    if not isinstance(hub, str) or not hub:
        raise ConfigError(["'dataset_path' is missing; give --dataset"], file=str(path))
    return hub, name if isinstance(name, str) and name else None


def _check_compiles(template: Template, path: Path) -> None:
    from taskmill.errors import TemplateError
    from taskmill.templates.engine import CompiledTemplate

    try:
        CompiledTemplate(template)
    except TemplateError as err:
        raise TemplateError(f"the converted template does not compile: {err.message}", file=str(path)) from None


def convert_lmeval(path: str | Path, out: str | Path, dataset: str | None = None) -> LmevalConversion:
    """Convert an lm-eval task YAML and write the taskmill template file atomically at ``out``.

    Args:
        path: The task YAML.
        out: The taskmill YAML file to write.
        dataset: HF id overriding the task's ``dataset_path`` / ``dataset_name``.

    Raises:
        ConfigError: Unsupported features (all listed, one line); nothing is written.
    """
    from dataclasses import replace

    from taskmill.templates.fileformat import write_template_file

    conversion = build_lmeval_template(path, dataset)
    tf = replace(conversion.template_file, path=str(out))
    write_template_file(tf, out)
    return replace(conversion, template_file=tf)
