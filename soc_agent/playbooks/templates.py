"""`${...}` templates: CEL expressions embedded in playbook strings.

A string that is exactly one `${expr}` renders to the expression's value with
its type kept (a list stays a list, a number a number). Anything else is
interpolation: each `${expr}` is replaced by its value as text. `$${` writes
a literal `${`. Templates apply recursively inside mappings and lists.

`ItemTemplates` renders one value for each `for_each` item as `render` would with
`item` added to the context, doing the work no item changes only once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from soc_agent.errors import ExpressionError
from soc_agent.playbooks.expressions import compile_expression, evaluate

__all__ = [
    "ItemTemplates",
    "Template",
    "TemplatePart",
    "iter_templates",
    "parse_template",
    "render",
]


@dataclass(frozen=True)
class TemplatePart:
    """Either literal text or one embedded expression."""

    text: str
    is_expression: bool


@dataclass(frozen=True)
class Template:
    parts: tuple[TemplatePart, ...]

    @property
    def expressions(self) -> list[str]:
        return [p.text for p in self.parts if p.is_expression]

    @property
    def single_expression(self) -> str | None:
        """The expression when the whole string is one `${...}`, else None."""
        if len(self.parts) == 1 and self.parts[0].is_expression:
            return self.parts[0].text
        return None


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    """Split a string into literal text and `${...}` expressions (cached: a playbook's
    templates are parsed again for every alert otherwise).

    The closing brace is found by tracking CEL string literals and nested
    braces, so `${ {"a": 1}.a }` and `${ x == "}" }` work.
    """
    parts: list[TemplatePart] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            expression = text[i + 2 : end].strip()
            if not expression:
                raise ExpressionError(f"empty ${{}} at offset {i}")
            if literal:
                parts.append(TemplatePart("".join(literal), False))
                literal = []
            parts.append(TemplatePart(expression, True))
            i = end + 1
            continue
        literal.append(text[i])
        i += 1
    if literal:
        parts.append(TemplatePart("".join(literal), False))
    return Template(tuple(parts))


def _closing_brace(text: str, start: int) -> int:
    depth, i, quote = 0, start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ExpressionError(f"unterminated ${{ starting at offset {start - 2}")


def iter_templates(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside a (nested) value, with its path, for static checks."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from iter_templates(inner, (*path, str(key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from iter_templates(inner, (*path, index))


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates inside a value; raises ExpressionError on the first failure."""
    if isinstance(value, str):
        return _render_string(value, context)
    if isinstance(value, Mapping):
        return {str(k): render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    if "${" not in text:
        return text
    template = parse_template(text)
    single = template.single_expression
    if single is not None:
        return evaluate(single, context)
    out: list[str] = []
    for part in template.parts:
        out.append(_as_text(evaluate(part.text, context)) if part.is_expression else part.text)
    return "".join(out)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


# --- per for_each item ------------------------------------------------------------------


@dataclass(frozen=True)
class _Shared:
    value: Any  # rendered once: the same for every item


@dataclass(frozen=True)
class _Failed:
    error: ExpressionError  # rendered once, and it failed: the same failure for every item


@dataclass(frozen=True)
class _PerItem:
    text: str
    expressions: int
    names: frozenset[str] | None  # what the template reads; None: unknown, read everything


class ItemTemplates:
    """A value rendered for many `item`s, as `render(value, {**context, "item": item})` would.

    Converting the context into CEL values dominates an evaluation, and the CEL binding
    converts every variable again whenever one changes, so adding `item` to the whole
    context made each item pay for the alert, the incident and every step's result.
    Here, what reads no `item` is rendered once (on the first item); a template that
    does is evaluated per item against only the names it reads. The values, their
    types, the errors and which error comes first are those of rendering per item.
    `evaluations` counts the expression evaluations made (or attempted) so far.
    """

    def __init__(self, value: Any, context: Mapping[str, Any]) -> None:
        self._value = value
        self._context = context
        self._plan: Any = None
        self._planned = False
        self.evaluations = 0

    def render(self, item: Any) -> Any:
        """The value rendered with `item` in scope; raises ExpressionError on the first failure."""
        if not self._planned:
            self._plan, self._planned = self._build(self._value), True
        return self._apply(self._plan, item)

    def _build(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._build_string(value)
        if isinstance(value, Mapping):
            return {str(k): self._build(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._build(v) for v in value]
        return _Shared(value)

    def _build_string(self, text: str) -> _Shared | _Failed | _PerItem:
        if "${" not in text:
            return _Shared(text)
        try:
            expressions = parse_template(text).expressions
        except ExpressionError as exc:
            return _Failed(exc)
        names: set[str] = set()
        for expression in expressions:
            try:
                # Macro variables are listed too, so `map(item, ...)` counts as reading
                # `item`: evaluated per item, which is never wrong, only slower.
                names.update(str(v) for v in compile_expression(expression).variables())
            except ExpressionError:
                # Rendered per item over everything, failing where and as it would.
                return _PerItem(text, len(expressions), None)
        if "item" in names:
            return _PerItem(text, len(expressions), frozenset(names))
        self.evaluations += len(expressions)
        try:
            return _Shared(_render_string(text, self._context))
        except ExpressionError as exc:
            return _Failed(exc)

    def _apply(self, node: Any, item: Any) -> Any:
        if isinstance(node, _Shared):
            # A fresh copy per item, as rendering per item gave: a connector may change its args.
            return copy.deepcopy(node.value) if isinstance(node.value, dict | list) else node.value
        if isinstance(node, _Failed):
            raise node.error.with_traceback(None)
        if isinstance(node, _PerItem):
            if node.names is None:
                scope = {**self._context, "item": item}
            else:
                scope = {n: self._context[n] for n in node.names if n in self._context}
                scope["item"] = item
            self.evaluations += node.expressions
            return _render_string(node.text, scope)
        if isinstance(node, dict):
            return {k: self._apply(v, item) for k, v in node.items()}
        return [self._apply(v, item) for v in node]
