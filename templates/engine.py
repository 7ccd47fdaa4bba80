"""Sandboxed Jinja rendering of templates, compiled once and applied to many rows.

Two dialects share one engine:

* ``taskmill``: ``input``, ``target`` and ``answer_choices`` are separate Jinja sources rendered in a
  :class:`~jinja2.sandbox.SandboxedEnvironment` with :class:`~jinja2.StrictUndefined`, so a field the
  row lacks is an error, never an empty string.
* ``promptsource``: one combined source rendered and split on ``|||``, reproducing PromptSource's
  ``Template.apply`` byte for byte (including its 2,048-character truncation of every ``{{ }}``
  expression and its protection of ``|||`` inside row values), but compiled once instead of on
  every call, and sandboxed.

Every row is also available whole as ``example`` (unless the row has a field of that name), so a
field whose name is not a Python identifier -- GAP's ``A-coref``, a column with a space or a leading
digit -- is read as ``example['A-coref']``; ``{{ A-coref }}`` would be Jinja's subtraction
``A - coref``.

Randomness is explicit: the ``choice`` filter draws from a :class:`random.Random` seeded by the
caller, so the same seed gives the same output on every machine.

Nulls are explicit too (:class:`Nulls`): in the taskmill dialect a null (``None``) that a template
*prints* -- a ``{{ }}`` expression, or a filter that turns its input into text or a number
(``string``, ``trim``, ``upper``, ``join`` of items, ``int``, ...) -- raises
:class:`NullValueError` instead of writing the text ``None``; testing it (``{% if x is none %}``,
``x | default('-', true)``) is fine. The promptsource dialect prints ``None`` as PromptSource does,
unless the caller asks for another rule (the builders raise by default for both dialects).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes, pass_context
from jinja2.sandbox import SandboxedEnvironment

from taskmill.errors import TemplateError
from taskmill.records import Rendered, Template

# Separator between prompt and target (promptsource dialect) and between answer choices.
SEPARATOR = "|||"
# Stand-in for "|||" inside row values while a render is split on the separator; it cannot occur
# in text because it contains NUL characters.
_PIPE_GUARD = "\x00taskmill:pipes\x00"
# The promptsource dialect must use PromptSource's own stand-in (its Template.pipe_protector):
# templates see the guarded value, so its length (under the 2,048-character truncation, ``length``)
# and its case (``upper``) show in the output, and byte-identity needs the same characters.
_PS_PIPE_GUARD = "3ed2dface8203c4c9dfb1a5dc58e41e0"
# PromptSource truncates every {{ }} expression to this many characters (its TEXT_VAR_LENGTH).
PROMPTSOURCE_TRUNCATE = 2048
_RNG_KEY = "__taskmill_rng__"
# The variable holding the whole row (for fields whose names are not identifiers).
ROW_VARIABLE = "example"
# Methods of the row dict: ``example.get('x')`` reads field x, not a field named "get".
_DICT_METHODS = frozenset(("get", "items", "keys", "values"))
# Set in a render context when ``example`` is the row (not a field of the row named "example").
_ROW_ADDED = "__taskmill_example__"
# Built-in filters that turn their input into text (None -> "None"), and those that turn it into a
# number (None -> 0): a null reaching them is printed, so the null rule applies to their input
# (``string`` too, fused into one function, and ``join`` per item).
_TEXT_FILTERS = ("trim", "upper", "lower", "title", "capitalize", "replace")
_NUMBER_FILTERS = ("int", "float")
# taskmill's own filters, named in the unknown-filter message.
_OWN_FILTERS = ("choice", "most_frequent", "highlight", "regex_replace")


class NullValueError(TemplateError):
    """A template printed a null (``None``) value.

    Attributes:
        fields: The top-level fields the failing source reads whose value is null in the row
            (empty when the null sits deeper, e.g. in a list item).
    """

    def __init__(self, message: str, *, fields: tuple[str, ...] = (), template: str | None = None) -> None:
        self.fields = fields
        super().__init__(message, template=template)


class ChoiceIndexError(TemplateError):
    """An index into ``answer_choices`` is outside the choices (the taskmill dialect's message for
    any index expression, e.g. ``answer_choices[label | int]`` with label 3 of 3 choices)."""


class _Choices(list):  # type: ignore[type-arg]
    """``answer_choices`` as the taskmill dialect sees it: an index past either end is the clear
    label error, not Jinja's ``list object has no element 3``. (Negative indices inside the range
    stay Python's, for ``answer_choices[-1]``; a label of -1 is caught by the label check.)"""

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int) and not isinstance(index, bool) and not -len(self) <= index < len(self):
            raise ChoiceIndexError(choice_index_problem(index, tuple(self)))
        return super().__getitem__(index)


def choice_index_problem(index: int, choices: Sequence[str]) -> str:
    """The message for an out-of-range index into ``answer_choices`` (build's and lint's)."""
    return (f"answer_choices index {index} is out of range of the template's {len(choices)} answer_choices "
            f"{list(choices)}; expected 0..{len(choices) - 1}")


@dataclass(frozen=True)
class Nulls:
    """What a printed null becomes.

    Attributes:
        text: The text printed in its place, or None to raise :class:`NullValueError`.
    """

    text: str | None = None


RAISE_ON_NULL = Nulls()
# PromptSource prints str(None); with this rule the engine adds no hook at all (Jinja's own output).
PROMPTSOURCE_NULLS = Nulls("None")


def dialect_nulls(dialect: str) -> Nulls:
    """A dialect's own null rule: taskmill raises, promptsource prints ``None`` like PromptSource."""
    return PROMPTSOURCE_NULLS if dialect == "promptsource" else RAISE_ON_NULL


@pass_context
def _choice(context: jinja2.runtime.Context, items: Any) -> Any:
    """Pick one item with the render's seeded RNG (never the global one)."""
    rng = context.get(_RNG_KEY)
    if rng is None:
        raise TemplateError("the 'choice' filter needs a seeded RNG; render with a seed")
    return rng.choice(items)


def _most_frequent(items: Any) -> list[Any] | None:
    """Items sharing the highest count, in first-seen order (PromptSource's filter)."""
    if not items:
        return None
    counts = Counter(items).most_common()
    top = counts[0][1]
    return [item for item, count in counts if count == top]


def _regex_replace(text: Any, pattern: str, repl: str, count: int = 0) -> str:
    """``re.sub(pattern, repl, text, count=count)``: the filter lm-evaluation-harness's templates use."""
    return re.sub(pattern, repl, text, count=count)


def _highlight(text: Any) -> str:
    """Wrap text in a coloured span (PromptSource's UI filter, kept so its templates parse)."""
    return "<span style='color: #F08080'>" + text + "</span>"


def _null_rule(nulls: Nulls) -> Any:
    """The function a value passes through before it is printed: None -> the rule's text, or raise."""
    text = nulls.text

    def rule(value: Any) -> Any:
        if value is None:
            if text is None:
                raise NullValueError("prints a null value")
            return text
        return value

    return rule


def _number_rule(value: Any) -> Any:
    """A null is never a number: Jinja's ``int``/``float`` would silently make it 0."""
    if value is None:
        raise NullValueError("converts a null value to a number")
    return value


def _guarded(func: Any, rule: Any) -> Any:
    """``func`` (a Jinja filter) with ``rule`` applied to its input value, pass-arg kept."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    if pass_arg is None:
        def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
            return func(rule(value), *args, **kwargs)
    else:
        def guarded(first: Any, value: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return func(first, rule(value), *args, **kwargs)
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def _guarded_string(nulls: Nulls) -> Any:
    """Jinja's ``string`` filter (markupsafe's ``soft_str``) with the null rule fused in: the
    promptsource dialect runs it on every ``{{ }}``, so it stays one call."""
    text = nulls.text

    def string(value: Any) -> str:
        if isinstance(value, str):
            return value
        if value is None:
            if text is None:
                raise NullValueError("prints a null value")
            return text
        return str(value)

    return string


def _guarded_join(func: Any, rule: Any) -> Any:
    """``join`` with the rule applied to each item (``[a, None] | join`` would print ``None``)."""
    def join(eval_ctx: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        items = value if value is None or isinstance(value, str) else [rule(v) for v in value]
        return func(eval_ctx, items, *args, **kwargs)
    join.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    return join


@lru_cache(maxsize=8)
def environment(strict: bool = True, nulls: Nulls | None = None) -> SandboxedEnvironment:
    """The sandboxed environment templates compile in.

    Args:
        strict: Use :class:`~jinja2.StrictUndefined` (a missing field raises). The promptsource
            dialect uses lenient undefined values, as PromptSource does, so that a field it would
            render as an empty string renders the same here.
        nulls: What a printed null becomes (None: the dialect's own rule, :func:`dialect_nulls`).
            :data:`PROMPTSOURCE_NULLS` adds no hook (Jinja prints ``None`` itself, so parity
            renders are untouched); any other rule is a ``finalize`` hook on every ``{{ }}`` plus
            guards on the text and number filters.
    """
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters.update(choice=_choice, most_frequent=_most_frequent, highlight=_highlight, regex_replace=_regex_replace)
    env.globals.update(zip=zip)
    nulls = nulls if nulls is not None else dialect_nulls("taskmill" if strict else "promptsource")
    if nulls != PROMPTSOURCE_NULLS:
        rule = _null_rule(nulls)
        env.finalize = rule
        env.filters.update({name: _guarded(env.filters[name], rule) for name in _TEXT_FILTERS})
        env.filters["string"] = _guarded_string(nulls)
        env.filters.update({name: _guarded(env.filters[name], _number_rule) for name in _NUMBER_FILTERS})
        env.filters["join"] = _guarded_join(env.filters["join"], rule)
    return env


def _uses_choice(ast: nodes.Template) -> bool:
    return any(f.name == "choice" for f in ast.find_all(nodes.Filter))


def _unknown_names(ast: nodes.Template, env: SandboxedEnvironment) -> str | None:
    """The first filter or test the environment lacks, described for the error (Jinja itself only
    fails on one when a render reaches it, so one inside an untaken ``{% if %}`` would pass)."""
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        is_filter = isinstance(node, nodes.Filter)
        if node.name not in (env.filters if is_filter else env.tests):
            kind = "filter" if is_filter else "test"
            extra = f" or one of taskmill's ({', '.join(_OWN_FILTERS)})" if is_filter else ""
            return (f"unknown Jinja {kind} '{node.name}' at line {node.lineno}; expected a Jinja built-in "
                    f"{kind}{extra}")
    return None


@dataclass(frozen=True)
class _Source:
    """One compiled Jinja source and whether it needs the seeded RNG.

    ``globals`` is the template's globals flattened once: ``Template.render`` rebuilds the same
    dict from a ChainMap on every call, which cost about half of each render.
    """

    compiled: jinja2.Template
    needs_rng: bool
    globals: dict[str, Any] = dataclasses.field(default_factory=dict)
    constant: str | None = None  # the output when the source reads no variable (e.g. "no ||| yes")
    fields: tuple[str, ...] = ()  # the row fields it reads (to name a null one in errors)
    reads_row: bool = False  # it names ``example`` (the whole row)

    def render(self, ctx: Mapping[str, Any]) -> str:
        """Exactly ``compiled.render(ctx)``: same context contents (globals, then ctx), same output."""
        if self.constant is not None:
            return self.constant
        t = self.compiled
        # Globals given as a plain dict: Context.__init__ iterates them, and a ChainMap iterates slowly.
        context = jinja2.runtime.new_context(t.environment, t.name, t.blocks, {**self.globals, **ctx}, True, self.globals)
        return "".join(t.root_render_func(context))


def _compile(source: str, template: Template, field: str, *, strict: bool, nulls: Nulls | None = None) -> _Source:
    env = environment(strict, nulls)
    try:
        ast = env.parse(source)
        unknown = _unknown_names(ast, env)
        if unknown:
            raise TemplateError(f"{field}: {unknown}", template=template.name)
        compiled = env.from_string(ast)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(
            f"{field}: Jinja syntax error at line {err.lineno}: {err.message}", template=template.name
        ) from None
    needs_rng = _uses_choice(ast)
    free = jinja2.meta.find_undeclared_variables(ast)  # a code-generation pass: made once, read twice
    fields = tuple(sorted(_read_fields(ast, env, free)))
    constant = None
    if not needs_rng and not fields:
        try:  # reads no row field and draws nothing: the same text for every row
            constant = compiled.render()
        except Exception:  # noqa: BLE001 - left to fail (or not) per row, as before
            constant = None
    reads_row = ROW_VARIABLE in free
    return _Source(compiled, needs_rng, dict(compiled.globals), constant, fields, reads_row)


def _read_fields(ast: nodes.Template, env: SandboxedEnvironment, free: set[str] | None = None) -> set[str]:
    """The row fields a parsed source reads: its free variables (``free``, when already found),
    with ``example`` replaced by the constant keys read from it (``example['A-coref']``, ``example.label``)."""
    names = (jinja2.meta.find_undeclared_variables(ast) if free is None else free) - set(env.globals)
    if ROW_VARIABLE not in names:
        return names
    names.discard(ROW_VARIABLE)
    for node in ast.find_all((nodes.Getitem, nodes.Getattr)):
        if not (isinstance(node.node, nodes.Name) and node.node.name == ROW_VARIABLE):
            continue
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            names.add(node.arg.value)
        elif isinstance(node, nodes.Getattr) and node.attr not in _DICT_METHODS:
            names.add(node.attr)
    return names


def _guard(row: Mapping[str, Any], marker: str) -> dict[str, Any]:
    """Copy of the row with "|||" in top-level string values hidden from the separator split."""
    return {k: v.replace(SEPARATOR, marker) if isinstance(v, str) else v for k, v in row.items()}


class CompiledTemplate:
    """A template compiled once, rendered against many rows.

    Args:
        template: The template to compile.
        nulls: What a printed null becomes (None: the dialect's own rule, :func:`dialect_nulls`).

    Raises:
        TemplateError: A Jinja source does not parse, or uses a filter or test that does not exist.
    """

    def __init__(self, template: Template, nulls: Nulls | None = None) -> None:
        self.template = template
        self.nulls = nulls if nulls is not None else dialect_nulls(template.dialect)
        strict = template.dialect == "taskmill"
        self._marker = _PIPE_GUARD if strict else _PS_PIPE_GUARD
        self._choices = (
            _compile(template.answer_choices, template, "answer_choices", strict=strict, nulls=self.nulls)
            if template.answer_choices is not None
            else None
        )
        if template.dialect == "promptsource":
            source = template.jinja if template.jinja is not None else f"{template.input} ||| {template.target}"
            # PromptSource rewrites the source this way before every render; doing it once here
            # keeps its output (the truncation applies to the last filter-able term of each
            # expression, exactly as its textual rewrite does).
            source = source.replace("}}", f" | string | truncate({PROMPTSOURCE_TRUNCATE}) }}}}")
            self._parts = [_compile(source, template, "jinja", strict=False, nulls=self.nulls)]
        else:
            self._parts = [
                _compile(template.input, template, "input", strict=True, nulls=self.nulls),
                _compile(template.target, template, "target", strict=True, nulls=self.nulls),
            ]
        self._cot = (
            _compile(template.cot_target, template, "cot_target", strict=True, nulls=self.nulls)
            if template.cot_target is not None
            else None
        )
        sources = [*self._parts, *([self._choices] if self._choices else []), *([self._cot] if self._cot else [])]
        self.needs_rng = any(s.needs_rng for s in sources)
        # The row is copied into ``example`` only for templates that name it (no cost for others).
        self.reads_row = any(s.reads_row for s in sources)
        self.fields = tuple(sorted({f for s in sources for f in s.fields} - {"answer_choices"}))

    def null_fields(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        """The fields the template reads whose value is null in ``row`` (for error messages)."""
        return tuple(f for f in self.fields if f in row and row[f] is None)

    def _context(self, row: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        if "answer_choices" in row:
            raise TemplateError("row has a field named 'answer_choices', which templates reserve",
                                template=self.template.name)
        ctx = _guard(row, self._marker)
        if self.reads_row and ROW_VARIABLE not in ctx:  # a row's own field of that name wins
            ctx[ROW_VARIABLE] = dict(ctx)
            ctx[_ROW_ADDED] = True
        if self.needs_rng:
            ctx[_RNG_KEY] = random.Random(seed) if seed is not None else None
        return ctx

    def _unguard(self, text: str) -> str:
        return text.replace(self._marker, SEPARATOR)

    def _run(self, source: _Source, ctx: dict[str, Any], field: str) -> str:
        try:
            return source.render(ctx)
        except NullValueError as err:
            culprits = self._printed_nulls(source, ctx)
            raise NullValueError(f"{field}: {err.message} ({describe_nulls(culprits)})", fields=culprits,
                                 template=self.template.name) from None
        except ChoiceIndexError as err:
            raise ChoiceIndexError(f"{field}: {err.message}", template=self.template.name) from None
        except TemplateError:
            raise
        except Exception as err:  # any failure inside a user's template is the template's problem
            if isinstance(err, jinja2.UndefinedError):
                message = f"{field}: {err.message} (the row has: {_fields(ctx)})"
            else:
                message = f"{field}: {type(err).__name__}: {err}"
            nulls = _null_reads(source, ctx)
            if nulls:  # e.g. answer_choices[label] with a null label: a null problem, named as one
                raise NullValueError(f"{message}; {describe_nulls(nulls)}", fields=nulls,
                                     template=self.template.name) from None
            raise TemplateError(message, template=self.template.name) from None

    @staticmethod
    def _printed_nulls(source: _Source, ctx: dict[str, Any]) -> tuple[str, ...]:
        """The null fields whose value was printed: those that, set to "", stop the null error.

        Runs only on the error path; a field that is null but only tested (``is none``) is not named.
        """
        culprits = []
        for name in _null_reads(source, ctx):
            try:
                source.render(_with_field(ctx, name, ""))
            except NullValueError:
                continue
            except Exception:  # noqa: BLE001 - another failure: this null was the one printed
                pass
            culprits.append(name)
        return tuple(culprits)

    def choices(self, row: Mapping[str, Any], seed: int | None = 0) -> tuple[str, ...] | None:
        """The rendered answer choices for a row, or None when the template has none."""
        return self._choices_in(self._context(row, seed))

    def _choices_in(self, ctx: dict[str, Any]) -> tuple[str, ...] | None:
        if self._choices is None:
            return None
        text = self._run(self._choices, ctx, "answer_choices")
        if self.template.keep_whitespace:  # lm-eval scores " a choice " with its spaces
            return tuple(self._unguard(c) for c in text.split(SEPARATOR))
        return tuple(self._unguard(c.strip()) for c in text.split(SEPARATOR))

    def _prepare(self, row: Mapping[str, Any], seed: int | None) -> tuple[dict[str, Any], tuple[str, ...] | None]:
        """The render context of a row, with its ``answer_choices`` rendered in, and those choices."""
        ctx = self._context(row, seed)
        choices = self._choices_in(ctx)
        if choices is None:
            ctx["answer_choices"] = None
        else:  # PromptSource's own list in its dialect, so an out-of-range index renders as it does there
            ctx["answer_choices"] = list(choices) if self.template.dialect == "promptsource" else _Choices(choices)
        return ctx, choices

    def _parts_in(self, ctx: dict[str, Any]) -> list[str]:
        if self.template.dialect == "promptsource":
            text = self._run(self._parts[0], ctx, "jinja")
            return [self._unguard(part).strip() for part in text.split(SEPARATOR)]
        parts = [self._unguard(self._run(self._parts[0], ctx, "input")),
                 self._unguard(self._run(self._parts[1], ctx, "target"))]
        return parts if self.template.keep_whitespace else [part.strip() for part in parts]

    def render_parts(self, row: Mapping[str, Any], seed: int | None = 0) -> list[str]:
        """Render and return the parts, as PromptSource's ``Template.apply`` returns them.

        For the promptsource dialect this is the combined render split on ``|||`` (each part
        stripped); for the taskmill dialect it is ``[input, target]``.

        Args:
            row: One dataset row (field name -> value).
            seed: Seed of the RNG the ``choice`` filter draws from.
        """
        return self.render_parts_and_choices(row, seed)[0]

    def render_parts_and_choices(self, row: Mapping[str, Any], seed: int | None = 0) -> tuple[list[str], tuple[str, ...] | None]:
        """:meth:`render_parts` and :meth:`choices` of a row, from one render context."""
        ctx, choices = self._prepare(row, seed)
        return self._parts_in(ctx), choices

    def render(self, row: Mapping[str, Any], seed: int | None = 0) -> Rendered:
        """Render one row into input, target and answer choices.

        Raises:
            TemplateError: The template fails on this row, or a promptsource template does not
                render to exactly two parts.
        """
        ctx, choices = self._prepare(row, seed)
        parts = self._parts_in(ctx)
        if len(parts) != 2:  # only the promptsource dialect can split otherwise
            raise TemplateError(f"rendered to {len(parts)} part(s); expected 'prompt ||| target'",
                                template=self.template.name)
        return Rendered(parts[0], parts[1], choices)

    def render_cot(self, row: Mapping[str, Any], seed: int | None = 0) -> str | None:
        """The chain-of-thought target for a row, or None when the template has none."""
        if self._cot is None:
            return None
        ctx, _ = self._prepare(row, seed)
        text = self._unguard(self._run(self._cot, ctx, "cot_target"))
        return text if self.template.keep_whitespace else text.strip()


def _with_field(ctx: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of a render context with one row field replaced, in the row and in ``example``."""
    out = {**ctx, name: value}
    if ctx.get(_ROW_ADDED):
        out[ROW_VARIABLE] = {**ctx[ROW_VARIABLE], name: value}
    return out


def _null_reads(source: _Source, ctx: Mapping[str, Any]) -> tuple[str, ...]:
    """The row fields a source reads whose value is null."""
    return tuple(f for f in source.fields if f != "answer_choices" and f in ctx and ctx[f] is None)


def null_error_message(message: str, on_null: str = "error") -> str:
    """The one-line message of a printed null under a task's ``on_null`` rule (build's and lint's;
    lint, which has no task, reports it as under the default rule, ``error``)."""
    hint = "on_null: skip" if on_null == "default" else "on_null: skip or on_null: default"
    return f"{message}; expected a value (or set {hint} for the task)"


def describe_nulls(fields: Sequence[str]) -> str:
    """For messages: ``field 'x' is null``, ``fields 'x', 'y' are null`` or, when none is, a nested value is."""
    if not fields:
        return "a value inside a field is null"
    names = ", ".join(f"'{f}'" for f in fields)
    return f"field {names} is null" if len(fields) == 1 else f"fields {names} are null"


def _fields(ctx: Mapping[str, Any]) -> str:
    added = (_RNG_KEY, "answer_choices", _ROW_ADDED, *((ROW_VARIABLE,) if ctx.get(_ROW_ADDED) else ()))
    return ", ".join(k for k in ctx if k not in added) or "no fields"


@lru_cache(maxsize=4096)
def compile_template(template: Template, nulls: Nulls | None = None) -> CompiledTemplate:
    """Compile a template once per process (templates and rules are frozen, so they key the cache).

    Args:
        template: The template.
        nulls: What a printed null becomes (None: the dialect's own rule, :func:`dialect_nulls`).
    """
    return CompiledTemplate(template, nulls)


def template_fields(templates: Sequence[Template], nulls: Nulls | None = None) -> dict[str, list[str]]:
    """Template id -> the row fields it reads (its Jinja free variables, sorted), in the given order.

    ``nulls`` changes no field; given the rule the templates render with, the compiled templates
    already in :func:`compile_template`'s cache are reused.

    Raises:
        TemplateError: A template does not compile.
    """
    return {t.id: list(compile_template(t, nulls).fields) for t in templates}


def variables(source: str) -> set[str]:
    """Row fields a Jinja source reads (for lint and build: fields the row must have), including
    those read through ``example`` (``example['A-coref']`` reads ``A-coref``)."""
    env = environment(True)
    try:
        return _read_fields(env.parse(source), env)
    except jinja2.TemplateSyntaxError:  # also an unknown filter; compiling the template reports it
        return set()


PLACEHOLDER = "{value}"
_BLANKS = re.compile(r"[ \t]+")
# Lexing and parsing need only the delimiters, which every taskmill environment shares: one plain
# environment serves every call (building the sandboxed one per template cost more than the lexing).
_LEXER = jinja2.Environment()


def masked_source(source: str) -> str:
    """A Jinja source as a reader sees it: its literal text, each printed expression (``{{ ... }}``)
    replaced by :data:`PLACEHOLDER`, its tags (``{% ... %}``) and comments dropped, runs of blanks
    made one space. A source that does not parse gives ``""`` (compiling it reports the error)."""
    out: list[str] = []
    try:
        _LEXER.parse(source)  # the lexer alone accepts an unclosed {{
        for _, token, value in _LEXER.lex(source):
            if token == "data":
                out.append(value)
            elif token == "variable_begin":
                out.append(PLACEHOLDER)
    except jinja2.TemplateSyntaxError:
        return ""
    return _BLANKS.sub(" ", "".join(out)).strip()


def masked_text(template: Template) -> str:
    """What a template asks, with every row value masked: its prompt source through
    :func:`masked_source`, then its answer choices (``a | b | c``) when it has any.

    This is the template's own text, not a rendering: ``Premise: {value} ... Does the premise
    entail the hypothesis?`` followed by ``entailment | neutral | contradiction``. A fixed label set
    stays as written; choices read from the row become placeholders. The promptsource dialect's
    prompt is the part of ``jinja`` before its ``|||``.
    """
    if template.dialect == "promptsource":
        prompt = masked_source(template.jinja or "").split(SEPARATOR)[0].strip()
    else:
        prompt = masked_source(template.input)
    if template.answer_choices:
        choices = [c.strip() for c in masked_source(template.answer_choices).split(SEPARATOR)]
        prompt += "\n" + " | ".join(c for c in choices if c)
    return prompt


def template_texts(templates: Sequence[Template]) -> dict[str, str]:
    """Template id -> :func:`masked_text`, in the given order."""
    return {t.id: masked_text(t) for t in templates}
