"""Bounds on what one CEL expression may cost, checked before it runs.

CEL always terminates, but not soon: comprehensions nested three deep over a
list of a few hundred items, or `lists.range` over a large number, ran for
minutes and took gigabytes. The CEL engine holds the GIL while it evaluates, so
a thread cannot keep the event loop responsive and nothing can interrupt it;
the cost has to be bounded before evaluation starts:

- at load time (`playbooks validate` and every loader): the expression's
  length, how deeply comprehensions nest, how many there are, and that
  `lists.range` takes a small literal;
- at run time, for expressions with nested comprehensions: the largest list
  in the data they can read, raised to the nesting depth, must stay within
  `MAX_ITERATIONS`. Otherwise the expression is not evaluated and reported as
  an error (the decision escalates, as for any unevaluated rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "MAX_COMPREHENSIONS",
    "MAX_EXPRESSION_CHARS",
    "MAX_ITERATIONS",
    "MAX_NESTING",
    "MAX_ORIGINAL_VALUES",
    "MAX_RANGE",
    "comprehension_depth",
    "count_values",
    "largest_list",
    "runtime_cost_problem",
    "static_cost_problem",
]

MAX_EXPRESSION_CHARS = 2000
MAX_NESTING = 2
MAX_COMPREHENSIONS = 8
MAX_RANGE = 10_000
MAX_ORIGINAL_VALUES = 50_000  # an alert's source document larger than this is not read
MAX_ITERATIONS = 200_000  # about 0.2 s of the CEL engine on the reference machine (measured)

_MACRO = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(")
_RANGE = re.compile(r"\blists\s*\.\s*range\s*\(")
_RANGE_LITERAL = re.compile(r"\s*(\d+)\s*\)")


@lru_cache(maxsize=4096)
def comprehension_depth(blanked: str) -> tuple[int, int]:
    """(deepest nesting, count) of comprehension macros in an expression whose strings
    are blanked."""
    spans = [(m.end() - 1, _closing(blanked, m.end() - 1)) for m in _MACRO.finditer(blanked)]
    deepest = max(
        (sum(1 for s, e in spans if s <= start and end <= e) for start, end in spans), default=0
    )
    return deepest, len(spans)


def static_cost_problem(expression: str, blanked: str) -> str | None:
    """Why the expression may cost too much whatever the data, or None."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"expression too long: {len(expression)} characters (at most {MAX_EXPRESSION_CHARS})"
    depth, count = comprehension_depth(blanked)
    if depth > MAX_NESTING:
        return (
            f"comprehensions (all, exists, exists_one, map, filter) nest {depth} deep; at most "
            f"{MAX_NESTING}: each level multiplies the work by the size of a list"
        )
    if count > MAX_COMPREHENSIONS:
        return f"{count} comprehensions in one expression (at most {MAX_COMPREHENSIONS})"
    for match in _RANGE.finditer(blanked):
        literal = _RANGE_LITERAL.match(blanked, match.end())
        if literal is None or int(literal.group(1)) > MAX_RANGE:
            return f"lists.range takes an integer literal of at most {MAX_RANGE}"
    return None


def runtime_cost_problem(depth: int, largest: int) -> str | None:
    """Why evaluating now would cost too much, given the largest list it can read."""
    if depth < 2:
        return None  # one pass over data that is already in memory
    estimate = largest**depth
    if estimate <= MAX_ITERATIONS:
        return None
    return (
        f"not evaluated: comprehensions nested {depth} deep over lists of up to {largest} "
        f"items could take {estimate:,} iterations (the limit is {MAX_ITERATIONS:,})"
    )


def largest_list(values: Iterable[Any]) -> int:
    """The length of the longest list (or map) anywhere inside `values`."""
    largest = 0
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            largest = max(largest, len(value))
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            largest = max(largest, len(value))
            stack.extend(value)
    return largest


def count_values(value: Any, *, stop_after: int) -> int:
    """How many values (scalars, lists, maps) `value` holds, counting at most `stop_after + 1`."""
    count = 0
    stack = [value]
    while stack and count <= stop_after:
        item = stack.pop()
        count += 1
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def _closing(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(text)
