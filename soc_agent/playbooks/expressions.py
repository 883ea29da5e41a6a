"""CEL expressions: compile once, evaluate safely, and read what they refer to.

Playbook conditions are CEL (common-expression-language), never Python: an
expression can read the context it is given and nothing else, and always
terminates. Compile errors become `ExpressionError` carrying the position;
evaluation errors (a missing key, a type mismatch, an index out of range)
become `ExpressionError` too, with `missing_data` set when the cause is data
that is absent rather than an expression that is wrong.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cel
from cel.stdlib import STDLIB_FUNCTIONS

from soc_agent.errors import ExpressionError
from soc_agent.playbooks.expression_cost import (
    comprehension_depth,
    largest_list,
    runtime_cost_problem,
    static_cost_problem,
)

__all__ = [
    "EvaluationError",
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
# Namespaced extensions (`math.greatest`) are reported by their last part.
KNOWN_FUNCTIONS = _NATIVE_FUNCTIONS | frozenset(n.rsplit(".", 1)[-1] for n in STDLIB_FUNCTIONS)

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


@lru_cache(maxsize=4096)
def _compile(expression: str) -> Any:
    return cel.compile(expression)


def compile_expression(expression: str) -> Any:
    """Compile (cached) or raise ExpressionError naming line, column and cause.

    An expression that could cost too much whatever the data is refused here
    (see `expression_cost`), so loading a playbook fails fast on it.
    """
    if not expression.strip():
        raise ExpressionError("empty expression")
    problem = static_cost_problem(expression, _blank_strings(expression))
    if problem is not None:
        raise ExpressionError(problem)
    try:
        return _compile(expression)
    except ValueError as exc:
        raise ExpressionError(_syntax_message(str(exc))) from None
    except Exception as exc:  # the CEL binding may raise other types for odd input
        raise ExpressionError(f"cannot compile: {type(exc).__name__}: {exc}") from None


# Converting a context into CEL values costs far more than evaluating a rule: the alert
# (with its original document) and the incident dominate, and they are shared by every
# expression of one decision. They are converted once into a base CEL context (cached
# by identity: contexts are never mutated once built); the small per-expression parts
# (`steps`, `item`) are set on it before each evaluation.
_SHARED = ("alert", "incident")
_BASES: OrderedDict[tuple[int, int], _Base] = OrderedDict()
_BASE_CACHE_SIZE = 32


@dataclass
class _Base:
    shared: tuple[Any, ...]  # the objects converted, held so their ids stay unique
    context: Any
    extra: set[str] = field(default_factory=set)
    largest: dict[str, int] = field(default_factory=dict)  # longest list per shared name


def _cel_context(context: Mapping[str, Any]) -> Any:
    shared = tuple(context.get(name) for name in _SHARED)
    key = (id(shared[0]), id(shared[1]))
    base = _BASES.get(key)
    if base is None or any(a is not b for a, b in zip(base.shared, shared, strict=True)):
        variables = {n: v for n, v in zip(_SHARED, shared, strict=True) if v is not None}
        base = _Base(shared, cel.Context(variables=variables, functions=STDLIB_FUNCTIONS))
        _BASES[key] = base
        if len(_BASES) > _BASE_CACHE_SIZE:
            _BASES.popitem(last=False)
    else:
        _BASES.move_to_end(key)
    extra = {name for name in context if name not in _SHARED}
    for stale in base.extra - extra:
        base.context.add_variable(stale, None)  # no leftovers from an earlier expression
    for name in extra:
        base.context.add_variable(name, context[name])
    base.extra = extra
    return base.context


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate against a context of plain JSON-like data; errors become EvaluationError.

    An expression whose cost on this data could exceed the bound is not run
    (EvaluationError, not missing data: see `expression_cost`).
    """
    program = compile_expression(expression)
    cel_context = _cel_context(context)
    depth, _ = comprehension_depth(_blank_strings(expression))
    if depth >= 2:
        names = {str(v) for v in program.variables()}
        problem = runtime_cost_problem(depth, _largest_list(context, names))
        if problem is not None:
            raise EvaluationError(expression, problem, missing_data=False)
    try:
        return program.execute(cel_context)
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


def _largest_list(context: Mapping[str, Any], names: set[str]) -> int:
    """The longest list among the context variables the expression reads."""
    shared = tuple(context.get(name) for name in _SHARED)
    base = _BASES.get((id(shared[0]), id(shared[1])))
    largest = 0
    for name in names & context.keys():
        if base is not None and name in _SHARED:
            # Measured once per decision: the alert and incident do not change within one.
            if name not in base.largest:
                base.largest[name] = largest_list([context[name]])
            size = base.largest[name]
        else:
            size = largest_list([context[name]])
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


def step_references(expression: str) -> set[str]:
    """Step ids the expression reads as `steps.<id>` or `steps["<id>"]`."""
    found = {m.group(2) for m in _STEP_INDEX.finditer(expression)}
    found.update(m.group(1) for m in _STEP_ATTR.finditer(_blank_strings(expression)))
    return found


def comprehension_variables(expression: str) -> set[str]:
    """Variables bound by macros such as `list.exists(r, ...)`."""
    return {m.group(1) for m in _MACRO_VAR.finditer(_blank_strings(expression))}


def free_variables(expression: str) -> set[str]:
    """Top-level names the expression reads from its context (macro variables excluded)."""
    program = compile_expression(expression)
    names = {str(v) for v in program.variables()}
    return names - comprehension_variables(expression)


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
