"""`${...}` templates: CEL expressions embedded in playbook strings.

A string that is exactly one `${expr}` renders to the expression's value with
its type kept (a list stays a list, a number a number). Anything else is
interpolation: each `${expr}` is replaced by its value as text. `$${` writes
a literal `${`. Templates apply recursively inside mappings and lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from soc_agent.errors import ExpressionError
from soc_agent.playbooks.expressions import evaluate

__all__ = ["Template", "TemplatePart", "iter_templates", "parse_template", "render"]


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


def parse_template(text: str) -> Template:
    """Split a string into literal text and `${...}` expressions.

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
