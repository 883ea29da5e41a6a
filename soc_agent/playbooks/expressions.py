"""CEL expressions: compile once, evaluate safely, and read what they refer to.

Playbook conditions are CEL (common-expression-language), never Python: an
expression can read the context it is given and nothing else, and always
terminates. Compile errors become `ExpressionError` carrying the position;
evaluation errors (a missing key, a type mismatch, an index out of range)
become `ExpressionError` too, with `missing_data` set when the cause is data
that is absent rather than an expression that is wrong.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cel
from cel.stdlib import STDLIB_FUNCTIONS

from soc_agent.errors import ExpressionError
from soc_agent.playbooks.expression_closures import Defer, closure_for
from soc_agent.playbooks.expression_cost import (
    MAX_ORIGINAL_VALUES,
    comprehension_depth,
    count_values,
    largest_list,
    runtime_cost_problem,
    static_cost_problem,
)
from soc_agent.playbooks.history import HISTORY_FUNCTIONS

__all__ = [
    "EvaluationError",
    "attribute_reads",
    "attribute_references",
    "compile_expression",
    "comprehension_variables",
    "evaluate",
    "evaluate_bool",
    "free_variables",
    "step_references",
    "unknown_functions",
]

# The CEL core the Rust engine implements natively, plus the pure-function extension
# libraries (strings, lists, sets, math, encoders) that cel.stdlib registers.
_NATIVE_FUNCTIONS = frozenset(
    {
        "size", "has", "all", "exists", "exists_one", "map", "filter",
        "int", "uint", "double", "string", "bytes", "bool", "dyn", "type",
        "timestamp", "duration", "matches", "contains", "startsWith", "endsWith",
        "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek",
        "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
# The extensions expressions may call: cel.stdlib's and the memory of past cases.
_FUNCTIONS: dict[str, Callable[..., Any]] = {**STDLIB_FUNCTIONS, **HISTORY_FUNCTIONS}
# Namespaced extensions (`math.greatest`) are reported by their last part.
KNOWN_FUNCTIONS = _NATIVE_FUNCTIONS | frozenset(n.rsplit(".", 1)[-1] for n in _FUNCTIONS)

_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
# String literals (with escapes) are blanked before looking for identifiers in the text.
_STRING = re.compile(
    r"""(?s)(?:[rR]?'''.*?'''|[rR]?\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")"""
)
_STEP_ATTR = re.compile(r"\bsteps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_STEP_INDEX = re.compile(r"""\bsteps\s*\[\s*(['"])([^'"]+)\1\s*\]""")
_MACRO_VAR = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)


class EvaluationError(ExpressionError):
    """An expression failed at run time.

    `missing_data` is true when the failure comes from absent data (a missing
    key, a null where an object was expected, an index out of range), which a
    caller may treat as "evidence missing" rather than as a broken playbook.
    """

    def __init__(self, expression: str, message: str, *, missing_data: bool) -> None:
        self.expression, self.missing_data = expression, missing_data
        super().__init__(f"{message} (in `{_shorten(expression)}`)")


_Fields = tuple[tuple[str, tuple[str, ...]], ...]  # (name, fields read of it) per name


@dataclass(frozen=True)
class _Shape:
    """What evaluating an expression needs to know about it, worked out once."""

    program: Any
    names: frozenset[str]  # top-level context names it reads (macro variables excluded)
    reads_original: bool  # may read alert.original
    depth: int  # how deeply its comprehensions nest
    # The fields it reads of each name, when it reads every name only as `<name>.<field>`
    # and calls nothing that reads outside state (its value is then a function of those
    # fields' values); None otherwise.
    fields: _Fields | None = None
    # The expression as a Python closure, when it is in the subset `expression_closures`
    # evaluates without the engine; None otherwise.
    closure: Callable[[Mapping[str, Any]], Any] | None = None

    shared: frozenset[str] = field(init=False)  # of `names`, the alert and the incident
    extra: frozenset[str] = field(init=False)  # of `names`, the others

    def __post_init__(self) -> None:  # read on every evaluation: worked out once here
        object.__setattr__(self, "shared", self.names & _SHARED_NAMES)
        object.__setattr__(self, "extra", self.names - _SHARED_NAMES)


@lru_cache(maxsize=4096)
def _shape(expression: str) -> _Shape:
    """Compile and analyse (cached); errors are raised, so never cached."""
    if not expression.strip():
        raise ExpressionError("empty expression")
    blanked = _blank_strings(expression)
    problem = static_cost_problem(expression, blanked)
    if problem is not None:
        raise ExpressionError(problem)
    try:
        program = cel.compile(expression)
    except ValueError as exc:
        raise ExpressionError(_syntax_message(str(exc))) from None
    except Exception as exc:  # the CEL binding may raise other types for odd input
        raise ExpressionError(f"cannot compile: {type(exc).__name__}: {exc}") from None
    names = frozenset(str(v) for v in program.variables()) - comprehension_variables(expression)
    depth, _ = comprehension_depth(blanked)
    reads_original = "original" in blanked
    pure = not reads_original and not _HISTORY_CALLS & {str(f) for f in program.functions()}
    fields = _fields_read(expression, names) if pure else None
    return _Shape(program, names, reads_original, depth, fields, closure_for(expression))


_HISTORY_CALLS = frozenset(name.rsplit(".", 1)[-1] for name in HISTORY_FUNCTIONS)


def _fields_read(expression: str, names: frozenset[str]) -> _Fields | None:
    out = []
    for name in sorted(names):
        fields = attribute_reads(expression, name)
        if fields is None:
            return None
        out.append((name, tuple(sorted(fields))))
    return tuple(out)


def compile_expression(expression: str) -> Any:
    """Compile (cached) or raise ExpressionError naming line, column and cause.

    An expression that could cost too much whatever the data is refused here
    (see `expression_cost`), so loading a playbook fails fast on it.
    """
    return _shape(expression).program


# Converting a context into CEL values costs far more than evaluating a rule, and the CEL
# binding converts every variable of a context again on the first evaluation after any
# of them changes. So each expression is given only the names it reads: the alert (with
# its original document, or without it when the expression never reads it) and the
# incident are converted once per decision into a CEL context holding just the shared
# objects the expression reads (cached by identity: contexts are never mutated once
# built), and the small per-expression parts (`steps`, `item`, `entity`) are set on it
# only when the expression reads them and they changed. An expression that reads only
# the shared objects gives the same value every time, so its value is kept per decision.
_SHARED = ("alert", "incident")
_SHARED_NAMES = frozenset(_SHARED)
_BASES: OrderedDict[tuple[int, int], _Base] = OrderedDict()
_BASE_CACHE_SIZE = 32
_SCALARS = (bool, int, float, str, type(None))  # values safe to hand out twice
# Values of expressions by the values of the fields they read (see `_Shape.fields`),
# across decisions: most alerts of a storm share their rule, tactics and format, most
# entities their criticality, and one `matches()` (the binding compiles its regular
# expression on every call) cost more than the rest of a risk rule. Keys are the
# fields' JSON (made in C, and nothing for the garbage collector to walk, unlike tuples
# of values), so 1, 1.0 and true differ, and a missing field differs from a null one.
_BY_VALUES: OrderedDict[tuple[str, str], Any] = OrderedDict()
_BY_VALUES_SIZE = 4096
_BY_VALUES_MAX_KEY = 2048  # characters of field values; larger ones are not kept
# An expression whose fields rarely repeat (a step's whole result, an alert's entities)
# costs a key and buys nothing: after a probe of `_PROBE` evaluations finding fewer than
# one hit in `_WORTH`, it is evaluated unkeyed for `_REST` evaluations, then probed again.
_PROBE, _WORTH, _REST = 128, 8, 4096
_KEYING: dict[str, list[int]] = {}  # expression -> [evaluations this round, hits]
_BY_VALUES_LOCK = threading.Lock()  # a playbook test in the API may evaluate off the loop


@dataclass
class _Slot:
    """One CEL context and the per-expression objects last set on it (held, so an
    identical object is recognised by identity and not converted again)."""

    context: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Base:
    shared: tuple[Any, ...]  # the objects converted, held so their ids stay unique
    # One CEL context per (reads alert.original, shared names read).
    slots: dict[tuple[bool, frozenset[str]], _Slot] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # expression -> its value, see above
    largest: dict[str, int] = field(default_factory=dict)  # longest list per shared name
    original_values: int | None = None  # how many values alert.original holds (capped count)

    def slot(self, with_original: bool, names: frozenset[str]) -> _Slot:
        key = (with_original, names)
        slot = self.slots.get(key)
        if slot is None:
            pairs = zip(_SHARED, self.shared, strict=True)
            variables = {n: v for n, v in pairs if n in names and v is not None}
            alert = variables.get("alert")
            if not with_original and isinstance(alert, dict) and "original" in alert:
                variables["alert"] = {k: v for k, v in alert.items() if k != "original"}
            slot = self.slots[key] = _Slot(cel.Context(variables=variables, functions=_FUNCTIONS))
        return slot


def _base(context: Mapping[str, Any]) -> _Base:
    # Run for every evaluation (about 30 per alert): kept to plain lookups.
    alert, incident = context.get("alert"), context.get("incident")
    key = (id(alert), id(incident))
    base = _BASES.get(key)
    if base is not None and base.shared[0] is alert and base.shared[1] is incident:
        _BASES.move_to_end(key)
        return base
    base = _BASES[key] = _Base((alert, incident))
    if len(_BASES) > _BASE_CACHE_SIZE:
        _BASES.popitem(last=False)
    return base


def _cel_context(base: _Base, shape: _Shape, context: Mapping[str, Any]) -> Any:
    slot = base.slot(shape.reads_original, shape.shared)
    for name in shape.extra:
        value = context.get(name, _ABSENT)
        if value is _ABSENT:
            if name in slot.extra:  # set by an earlier expression: no leftovers
                slot.context.add_variable(name, None)
                del slot.extra[name]
        elif slot.extra.get(name, _ABSENT) is not value:
            slot.context.add_variable(name, value)
            slot.extra[name] = value
    return slot.context


_ABSENT = object()


def _original_too_large(base: _Base, context: Mapping[str, Any]) -> int | None:
    """How many values alert.original holds, when that is more than expressions may read."""
    if base.original_values is None:
        alert = context.get("alert")
        original = alert.get("original") if isinstance(alert, dict) else None
        base.original_values = count_values(original, stop_after=MAX_ORIGINAL_VALUES)
    return base.original_values if base.original_values > MAX_ORIGINAL_VALUES else None


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate against a context of plain JSON-like data; errors become EvaluationError.

    An expression whose cost on this data could exceed the bound is not run
    (EvaluationError, not missing data: see `expression_cost`).
    """
    shape = _shape(expression)
    reads_original = shape.reads_original
    base = _base(context)
    if reads_original and (values := _original_too_large(base, context)) is not None:
        raise EvaluationError(
            expression,
            f"not evaluated: alert.original holds more than {values - 1:,} values, over the "
            f"{MAX_ORIGINAL_VALUES:,} expressions may read",
            missing_data=False,
        )
    if not shape.extra and expression in base.values:
        return base.values[expression]
    if shape.depth >= 2:
        largest = _largest_list(base, context, shape.names, with_original=reads_original)
        problem = runtime_cost_problem(shape.depth, largest)
        if problem is not None:
            raise EvaluationError(expression, problem, missing_data=False)
    if shape.closure is not None:
        try:
            value = shape.closure(context)
        except Defer:
            pass  # the engine decides: its value, or its error
        else:
            if not shape.extra and isinstance(value, _SCALARS):
                base.values[expression] = value
            return value
    key = _values_key(shape, expression, context)
    if key is not None and (known := _by_values(key)) is not _ABSENT:
        _hit(expression)
        if not shape.extra:
            base.values[expression] = known
        return known
    cel_context = _cel_context(base, shape, context)
    try:
        value = shape.program.execute(cel_context)
    except KeyError as exc:
        raise EvaluationError(expression, f"no such key: {exc}", missing_data=True) from None
    except IndexError as exc:
        raise EvaluationError(expression, str(exc), missing_data=True) from None
    except TypeError as exc:
        # CEL reports field access on null as "no such overload"; missing data, usually.
        message = str(exc).split(". ")[0]
        raise EvaluationError(expression, message, missing_data=True) from None
    except RuntimeError as exc:
        message = str(exc).split(". ")[0]
        raise EvaluationError(expression, message, missing_data=False) from None
    except Exception as exc:
        raise EvaluationError(
            expression, f"{type(exc).__name__}: {exc}", missing_data=False
        ) from None
    if isinstance(value, _SCALARS):
        if not shape.extra:
            base.values[expression] = value
        if key is not None:
            with _BY_VALUES_LOCK:
                _BY_VALUES[key] = value
                if len(_BY_VALUES) > _BY_VALUES_SIZE:
                    _BY_VALUES.popitem(last=False)
    return value


def _by_values(key: tuple[str, str]) -> Any:
    with _BY_VALUES_LOCK:
        value = _BY_VALUES.get(key, _ABSENT)
        if value is not _ABSENT:
            _BY_VALUES.move_to_end(key)
        return value


def _values_key(
    shape: _Shape, expression: str, context: Mapping[str, Any]
) -> tuple[str, str] | None:
    """The key of the expression's value among those kept, or None (not kept now)."""
    if shape.fields is None or not _keying(expression):
        return None
    read: list[Any] = []
    for name, fields in shape.fields:
        if name not in context:
            read.append(0)  # not in the context, which a dict never equals
            continue
        value = context[name]
        if not isinstance(value, dict):
            return None
        read.append({f: value[f] for f in fields if f in value})
    try:
        values = json.dumps(read)
    except (TypeError, ValueError):
        return None
    return (expression, values) if len(values) <= _BY_VALUES_MAX_KEY else None


def _keying(expression: str) -> bool:
    """Whether to key this evaluation (see `_PROBE`); counts it."""
    with _BY_VALUES_LOCK:
        counts = _KEYING.get(expression)
        if counts is None:
            if len(_KEYING) >= _BY_VALUES_SIZE:  # expressions tried in the API, say
                del _KEYING[next(iter(_KEYING))]
            counts = _KEYING[expression] = [0, 0]
        counts[0] += 1
        tried = counts[0]
        if tried <= _PROBE:
            return True
        if tried > _PROBE + _REST or (tried == _PROBE + 1 and counts[1] * _WORTH >= _PROBE):
            counts[:] = [1, 0]  # rested, or worth keying: a new probe
            return True
        return False


def _hit(expression: str) -> None:
    with _BY_VALUES_LOCK:
        if (counts := _KEYING.get(expression)) is not None:
            counts[1] += 1


def _largest_list(
    base: _Base, context: Mapping[str, Any], names: frozenset[str], *, with_original: bool
) -> int:
    """The longest list among the context variables the expression reads."""
    largest = 0
    for name in names & context.keys():
        value = context[name]
        if name in _SHARED:
            # Measured once per decision: the alert and incident do not change within one.
            key = f"{name}:{with_original}"
            if key not in base.largest:
                if name == "alert" and not with_original and isinstance(value, dict):
                    value = {k: v for k, v in value.items() if k != "original"}
                base.largest[key] = largest_list([value])
            size = base.largest[key]
        else:
            size = largest_list([value])
        largest = max(largest, size)
    return largest


def evaluate_bool(expression: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a condition; anything but a boolean is an error, not a truthiness guess."""
    value = evaluate(expression, context)
    if not isinstance(value, bool):
        raise EvaluationError(
            expression,
            f"condition must be true or false, got {type(value).__name__} {value!r:.60}",
            missing_data=False,
        )
    return value


@lru_cache(maxsize=4096)
def step_references(expression: str) -> tuple[str, ...]:
    """Step ids the expression reads as `steps.<id>` or `steps["<id>"]`, sorted.

    Cached: scoring asks it of every rule for every alert."""
    found = {m.group(2) for m in _STEP_INDEX.finditer(expression)}
    found.update(m.group(1) for m in _STEP_ATTR.finditer(_blank_strings(expression)))
    return tuple(sorted(found))


def attribute_references(expression: str, name: str) -> set[str]:
    """Fields the expression reads as `<name>.<field>` (string contents ignored)."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
    return {m.group(1) for m in pattern.finditer(_blank_strings(expression))}


def attribute_reads(expression: str, name: str) -> frozenset[str] | None:
    """The fields the expression reads of `name`, or None when it reads `name` in any other
    way (`name["field"]`, `name` as a whole) and so may need all of it."""
    blanked = _blank_strings(expression)
    uses = len(re.findall(rf"(?<![\w.]){re.escape(name)}\b", blanked))
    fields = re.findall(rf"(?<![\w.]){re.escape(name)}\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)", blanked)
    return frozenset(fields) if len(fields) == uses else None


def comprehension_variables(expression: str) -> set[str]:
    """Variables bound by macros such as `list.exists(r, ...)`."""
    return {m.group(1) for m in _MACRO_VAR.finditer(_blank_strings(expression))}


def free_variables(expression: str) -> set[str]:
    """Top-level names the expression reads from its context (macro variables excluded)."""
    return set(_shape(expression).names)


def unknown_functions(expression: str) -> set[str]:
    """Functions the expression calls that neither CEL nor the enabled extensions define."""
    program = compile_expression(expression)
    called = {str(f) for f in program.references().get("functions", [])}
    return {f for f in called if _is_name(f) and f not in KNOWN_FUNCTIONS}


def _is_name(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _blank_strings(expression: str) -> str:
    return _STRING.sub(lambda m: '""', expression)


def _syntax_message(raw: str) -> str:
    match = _POSITION.search(raw)
    if not match:
        return f"syntax error: {raw.splitlines()[0] if raw else 'invalid expression'}"
    line, column, cause = match.groups()
    cause = cause.removeprefix("Syntax error: ").strip()
    return f"syntax error at line {line}, column {column}: {cause}"


def _shorten(expression: str, limit: int = 120) -> str:
    flat = " ".join(expression.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
