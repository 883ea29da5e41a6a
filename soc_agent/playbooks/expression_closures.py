"""A fast path for simple CEL expressions: compiled once to Python closures.

Handing a context to the CEL engine costs far more than most playbook and risk
conditions cost to evaluate: every shared object is converted into the engine's
values, and a context is built, before `alert.severity == "high"` can run. So
an expression written in a common subset (field reads, indexing, comparisons,
`&&`, `||`, `!`, `?:`, `in`, integer and string arithmetic, `size`, `has`,
`startsWith`, `endsWith`, `contains`, `join` and the list macros) is also compiled
into a Python closure that reads the context's plain data directly.

The closure gives a value only where it is certain the engine gives the same
one. Anything else (a missing key, a null, operands of different types, an
integer out of the engine's 64-bit range, a string the engine cannot take, a
value of a type JSON does not have) raises `Defer`, and the caller evaluates
the expression on the engine, which then gives its exact value or its exact
error. An expression outside the subset (regular expressions, conversions,
extension functions, byte and unsigned literals) gets no closure at all.

Written by hand rather than taken from a pure-Python CEL library because the
point is speed: the interpreters available walk a parse tree per evaluation.
The subset's semantics are those the engine was measured to have (a string's
size is its UTF-8 length; integer division truncates; errors inside `&&` and
`||` are absorbed by the other side), and tests compare the two on generated
expressions and data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Defer", "closure_for"]


class Defer(Exception):
    """The fast path cannot be sure of the engine's answer: ask the engine."""


Env = Mapping[str, Any]
Locals = dict[str, Any]
Node = Callable[[Env, Locals], Any]

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<float>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)(?![\w.])
  | (?P<string>[rR]?(?:"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!?:.,()\[\]{}+\-*/%])
    """,
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")
_CONJUNCT_ENDS = frozenset({"&&", "||", "?", ":", ","})
_DISJUNCT_ENDS = frozenset({"||", "?", ":", ","})
_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_ADDITIVE, _MULTIPLICATIVE = frozenset("+-"), frozenset("*/%")


class _Unsupported(Exception):
    """The expression is valid CEL outside the subset: it gets no closure."""


def closure_for(expression: str) -> Callable[[Env], Any] | None:
    """The expression's closure, or None when it is outside the subset.

    Only call it for an expression the CEL engine has compiled: the parser
    here trusts its input is valid CEL and only recognises the subset.
    """
    try:
        tokens = _tokenize(expression)
        parser = _Parser(tokens)
        node = parser.expression()
        if parser.peek() is not None:
            raise _Unsupported("trailing input")
    except (_Unsupported, RecursionError):
        return None

    def run(env: Env) -> Any:
        try:
            return _result(node(env, {}))
        except RecursionError:  # a value nested deeper than Python recurses: the engine's
            raise Defer from None

    return run


# --- values -----------------------------------------------------------------------------


def _clean_str(value: str) -> str:
    """The string, when the engine can take it (no lone surrogates)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Defer from None
    return value


def _clean_int(value: int) -> int:
    if _INT_MIN <= value <= _INT_MAX:
        return value
    raise Defer


def _scalar(value: Any) -> Any:
    """A value the fast path compares: a clean string, a 64-bit int, a float, a bool
    or null; anything else (lists, maps, other types) defers."""
    kind = type(value)
    if kind is str:
        return _clean_str(value)
    if kind is int:
        return _clean_int(value)
    if kind is bool or kind is float or value is None:
        return value
    raise Defer


def _result(value: Any) -> Any:
    """A fresh copy of the value in the types the engine hands back, or Defer."""
    kind = type(value)
    if kind is list:
        return [_result(item) for item in value]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise Defer
            out[_clean_str(key)] = _result(item)
        return out
    return _scalar(value)


def _bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise Defer


def _str(value: Any) -> str:
    if type(value) is str:
        return _clean_str(value)
    raise Defer


def _list(value: Any) -> list[Any]:
    if type(value) is list:
        return value
    raise Defer


# --- operators --------------------------------------------------------------------------


def _same_kind(left: Any, right: Any) -> tuple[Any, Any]:
    """Both operands as scalars of one type (None only with None); else Defer."""
    left, right = _scalar(left), _scalar(right)
    if type(left) is not type(right):
        raise Defer
    return left, right


def _eq(left: Any, right: Any) -> bool:
    left, right = _same_kind(left, right)
    return bool(left == right)


def _ordered(left: Any, right: Any) -> tuple[Any, Any]:
    left, right = _same_kind(left, right)
    if type(left) is bool or left is None:
        raise Defer
    return left, right


def _add(left: Any, right: Any) -> Any:
    if type(left) is list and type(right) is list:
        return left + right
    left, right = _same_kind(left, right)
    kind = type(left)
    if kind is int:
        return _clean_int(left + right)
    if kind is str or kind is float:
        return left + right
    raise Defer


def _sub(left: Any, right: Any) -> Any:
    left, right = _same_kind(left, right)
    if type(left) is int:
        return _clean_int(left - right)
    if type(left) is float:
        return left - right
    raise Defer


def _mul(left: Any, right: Any) -> Any:
    left, right = _same_kind(left, right)
    if type(left) is int:
        return _clean_int(left * right)
    if type(left) is float:
        return left * right
    raise Defer


def _int_div(left: Any, right: Any) -> tuple[int, int]:
    """Quotient truncated toward zero and its remainder (CEL's, not Python's flooring)."""
    left, right = _same_kind(left, right)
    if type(left) is not int or right == 0 or (left == _INT_MIN and right == -1):
        raise Defer
    quotient = abs(left) // abs(right)
    if (left < 0) != (right < 0):
        quotient = -quotient
    return quotient, left - right * quotient


def _div(left: Any, right: Any) -> Any:
    if type(left) is float and type(right) is float and right != 0.0:
        return left / right
    return _int_div(left, right)[0]


def _mod(left: Any, right: Any) -> Any:
    return _int_div(left, right)[1]


def _lt(left: Any, right: Any) -> bool:
    left, right = _ordered(left, right)
    return bool(left < right)


def _le(left: Any, right: Any) -> bool:
    left, right = _ordered(left, right)
    return bool(left <= right)


def _gt(left: Any, right: Any) -> bool:
    left, right = _ordered(left, right)
    return bool(left > right)


def _ge(left: Any, right: Any) -> bool:
    left, right = _ordered(left, right)
    return bool(left >= right)


def _in(item: Any, container: Any) -> bool:
    if type(container) is dict:
        key = _str(item)
        return key in container
    values = _list(container)
    item = _scalar(item)
    kind = type(item)
    if kind is float:
        raise Defer  # NaN: Python's `in` matches an identical NaN, CEL never does
    for value in values:
        if type(value) is not kind:
            raise Defer
        if _scalar(value) == item:
            return True
    return False


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<": _lt,
    "<=": _le,
    ">": _gt,
    ">=": _ge,
    "in": _in,
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "%": _mod,
}


def _size(value: Any) -> int:
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else len(_clean_str(value).encode("utf-8"))
    if kind is list or kind is dict:
        return len(value)
    raise Defer


def _join(items: Any, separator: Any) -> str:
    return _str(separator).join([_str(item) for item in _list(items)])


def _select(value: Any, name: str) -> Any:
    if type(value) is dict and name in value:
        return value[name]
    raise Defer


def _index(value: Any, key: Any) -> Any:
    kind = type(value)
    if kind is list and type(key) is int and 0 <= key < len(value):
        return value[key]
    if kind is dict and type(key) is str and key in value:
        return value[key]
    raise Defer


_STRING_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}


# --- parsing ----------------------------------------------------------------------------


def _tokenize(expression: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise _Unsupported(f"unrecognised input at {position}")
        position = match.end()
        kind = match.lastgroup
        text = match.group()
        if kind == "space":
            continue
        if kind == "int":
            tokens.append(("literal", int(text)))
        elif kind == "float":
            tokens.append(("literal", float(text)))
        elif kind == "string":
            tokens.append(("literal", _string_literal(text)))
        elif kind == "name" and text in ("true", "false", "null"):
            tokens.append(("literal", {"true": True, "false": False, "null": None}[text]))
        elif kind == "name" and text == "in":
            tokens.append(("op", "in"))
        else:
            tokens.append((str(kind), text))
    return tokens


def _string_literal(text: str) -> str:
    if text[0] in "rR":
        if "\\" in text:  # where a raw string ends around a backslash is the engine's call
            raise _Unsupported("raw string with a backslash")
        return text[2:-1]
    body = text[1:-1]

    def unescape(match: re.Match[str]) -> str:
        if match.group(1) not in _ESCAPES:
            raise _Unsupported("escape outside the subset")
        return _ESCAPES[match.group(1)]

    return _ESCAPE.sub(unescape, body)


class _Parser:
    """Recursive descent over CEL's precedence levels, building closures as it goes."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens, self.at = tokens, 0
        self.bound: list[str] = []  # macro variables in scope, innermost last

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (op is not None and token != ("op", op)):
            raise _Unsupported(f"expected {op}")
        self.at += 1
        return token

    def accept(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.at += 1
            return True
        return False

    def expression(self) -> Node:
        condition = self.disjunction()
        if not self.accept("?"):
            return condition
        then = self.disjunction()
        self.take(":")
        otherwise = self.expression()
        return lambda env, local: (
            then(env, local) if _bool(condition(env, local)) else otherwise(env, local)
        )

    def disjunction(self) -> Node:
        return self.chain("||", self.conjunction, _DISJUNCT_ENDS)

    def conjunction(self) -> Node:
        return self.chain("&&", self.relation, _CONJUNCT_ENDS)

    def chain(self, op: str, operand: Callable[[], Node], ends: frozenset[str]) -> Node:
        """`a && b && ...` (or `||`). An operand outside the subset is kept as unknown:
        CEL makes `false && x` false and `true || x` true whatever x is, even an error,
        so a chain whose known operands settle it still gets an answer."""
        operands = [self.maybe(operand, ends)]
        while self.accept(op):
            operands.append(self.maybe(operand, ends))
        known = [node for node in operands if node is not None]
        if not known:
            raise _Unsupported(f"no operand of {op} in the subset")
        if len(operands) == 1:
            return known[0]
        decisive = op == "||"  # false settles a conjunction, true a disjunction
        return _settled_by(decisive, known, partial=len(known) < len(operands))

    def maybe(self, operand: Callable[[], Node], ends: frozenset[str]) -> Node | None:
        """The operand's closure, or None (its tokens skipped) when it is outside the subset."""
        start = self.at  # (a macro left in error has already unbound its variable)
        try:
            return operand()
        except _Unsupported:
            self.at = start
            self.skip(ends)
            return None

    def skip(self, ends: frozenset[str]) -> None:
        """Past one operand: to the next of `ends` outside any bracket, or the end."""
        depth = 0
        while (token := self.peek()) is not None:
            kind, text = token
            if kind == "op":
                if depth == 0 and (text in ends or text in _CLOSERS):
                    return
                if text in _OPENERS:
                    depth += 1
                elif text in _CLOSERS:
                    depth -= 1
            self.at += 1

    def relation(self) -> Node:
        return self.left_to_right(_RELATIONS, self.additive)

    def additive(self) -> Node:
        return self.left_to_right(_ADDITIVE, self.multiplicative)

    def multiplicative(self) -> Node:
        return self.left_to_right(_MULTIPLICATIVE, self.unary)

    def left_to_right(self, ops: frozenset[str], operand: Callable[[], Node]) -> Node:
        """One precedence level of binary operators, associating to the left."""
        node = operand()
        while (token := self.peek()) is not None and token[0] == "op" and token[1] in ops:
            self.at += 1
            node = _binary(_BINARY[token[1]], node, operand())
        return node

    def unary(self) -> Node:
        if self.accept("!"):
            operand = self.unary()
            return lambda env, local: not _bool(operand(env, local))
        if self.accept("-"):
            token = self.peek()
            if token is not None and token[0] == "literal" and type(token[1]) in (int, float):
                self.at += 1  # a negative literal (so -9223372036854775808 stays in range)
                return self.member(_constant(_clean_literal(-token[1])))
            operand = self.unary()
            return lambda env, local: _negate(operand(env, local))
        return self.member(self.primary())

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "literal":
            return _constant(_clean_literal(value))
        if kind == "name":
            if self.peek() == ("op", "("):
                return self.function(value)
            return self.variable(value)
        if (kind, value) == ("op", "("):
            node = self.expression()
            self.take(")")
            return node
        if (kind, value) == ("op", "["):
            items = self.items("]")
            if all(getattr(item, "constant", False) for item in items):
                fixed = [item(_NO_ENV, {}) for item in items]
                return _constant(fixed)
            return lambda env, local: [item(env, local) for item in items]
        if (kind, value) == ("op", "{"):
            return self.map_literal()
        raise _Unsupported(f"unexpected {value!r}")

    def items(self, close: str) -> list[Node]:
        items: list[Node] = []
        while not self.accept(close):
            items.append(self.expression())
            if not self.accept(","):
                self.take(close)
                break
        return items

    def map_literal(self) -> Node:
        pairs: list[tuple[Node, Node]] = []
        while not self.accept("}"):
            key = self.expression()
            self.take(":")
            pairs.append((key, self.expression()))
            if not self.accept(","):
                self.take("}")
                break
        if all(getattr(node, "constant", False) for pair in pairs for node in pair):
            try:
                return _constant(_map_of(pairs, _NO_ENV, {}))
            except Defer:
                raise _Unsupported("map literal the engine refuses") from None
        return lambda env, local: _map_of(pairs, env, local)

    def variable(self, name: str) -> Node:
        if name in self.bound:
            return lambda env, local: local[name]

        def read(env: Env, local: Locals) -> Any:
            try:
                return env[name]
            except KeyError:
                raise Defer from None

        return read

    def function(self, name: str) -> Node:
        self.take("(")
        if name == "has":
            target = self.member(self.primary())
            self.take(")")
            field = getattr(target, "field", None)
            if field is None:
                raise _Unsupported("has() of something other than a field")
            owner, key = field
            return lambda env, local: _has(owner(env, local), key)
        args = self.items(")")
        if name == "size" and len(args) == 1:
            (arg,) = args
            return lambda env, local: _size(arg(env, local))
        raise _Unsupported(f"function {name}")

    def member(self, node: Node) -> Node:
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "name":
                    raise _Unsupported("expected a field name")
                calls = self.peek() == ("op", "(")
                node = self.method(node, name) if calls else _field(node, name)
            elif self.accept("["):
                key = self.expression()
                self.take("]")
                node = _binary(_index, node, key)
            else:
                return node

    def method(self, receiver: Node, name: str) -> Node:
        self.take("(")
        if name in _MACROS:
            return self.macro(receiver, name)
        args = self.items(")")
        if name == "size" and not args:
            return lambda env, local: _size(receiver(env, local))
        if name == "join" and len(args) <= 1:  # cel.stdlib's join, over strings only
            separator = args[0] if args else _constant("")
            return lambda env, local: _join(receiver(env, local), separator(env, local))
        if name in _STRING_METHODS and len(args) == 1:
            method, (arg,) = _STRING_METHODS[name], args
            return lambda env, local: method(_str(receiver(env, local)), _str(arg(env, local)))
        raise _Unsupported(f"method {name}")

    def macro(self, receiver: Node, name: str) -> Node:
        kind, variable = self.take()
        if kind != "name" or not self.accept(","):
            raise _Unsupported("macro without a variable")
        self.bound.append(variable)
        try:
            body = self.expression()
        finally:
            self.bound.pop()
        if not self.accept(")"):
            raise _Unsupported("macro with more arguments than the subset knows")
        return _MACRO_BUILDERS[name](receiver, variable, body)


_NO_ENV: Env = {}


def _map_of(pairs: list[tuple[Node, Node]], env: Env, local: Locals) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key_node, value_node in pairs:
        key = _str(key_node(env, local))
        if key in out:
            raise Defer  # a repeated key: the engine's call
        out[key] = value_node(env, local)
    return out


def _clean_literal(value: Any) -> Any:
    if type(value) is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise _Unsupported("integer literal out of range")
        return value
    if type(value) is str:
        try:
            return _clean_str(value)
        except Defer:
            raise _Unsupported("string literal the engine cannot take") from None
    return value


def _negate(value: Any) -> Any:
    if type(value) is int:
        return _clean_int(-value)
    if type(value) is float:
        return -value
    raise Defer


def _constant(value: Any) -> Node:
    def constant(env: Env, local: Locals) -> Any:
        return value

    constant.constant = True  # type: ignore[attr-defined]
    return constant


def _field(owner: Node, name: str) -> Node:
    def read(env: Env, local: Locals) -> Any:
        return _select(owner(env, local), name)

    read.field = (owner, name)  # type: ignore[attr-defined]
    return read


def _has(value: Any, name: str) -> bool:
    if type(value) is dict:
        return name in value
    raise Defer


def _binary(op: Callable[[Any, Any], Any], left: Node, right: Node) -> Node:
    if op is _in and getattr(right, "constant", False):
        values = right(_NO_ENV, {})
        if type(values) is list and values and all(type(v) is str for v in values):
            members = frozenset(values)  # `x in ["a", "b"]`: one set lookup
            return lambda env, local: _str(left(env, local)) in members
    return lambda env, local: op(left(env, local), right(env, local))


def _settled_by(decisive: bool, operands: list[Node], *, partial: bool) -> Node:
    """A chain of `&&` (decisive False) or `||` (decisive True): any operand with the
    decisive value settles it, whatever the others are; an operand that defers (or is
    not a bool: the engine's error) leaves it open; an open chain defers."""

    def run(env: Env, local: Locals) -> bool:
        open_ = partial
        for operand in operands:
            try:
                value: object = operand(env, local)
            except Defer:
                open_ = True
                continue
            if value is decisive:
                return decisive
            if type(value) is not bool:
                open_ = True
        if open_:
            raise Defer
        return not decisive

    return run


def _each(receiver: Node, variable: str, env: Env, local: Locals) -> Iterator[tuple[Locals, Any]]:
    """Each item of the receiver's list, with the macro's variable bound to it."""
    inner = dict(local)
    for item in _list(receiver(env, local)):
        inner[variable] = item
        yield inner, item


def _exists(receiver: Node, variable: str, body: Node) -> Node:
    return lambda env, local: any(
        _bool(body(env, inner)) for inner, _ in _each(receiver, variable, env, local)
    )


def _all(receiver: Node, variable: str, body: Node) -> Node:
    return lambda env, local: all(
        _bool(body(env, inner)) for inner, _ in _each(receiver, variable, env, local)
    )


def _exists_one(receiver: Node, variable: str, body: Node) -> Node:
    # Every item is evaluated (no short cut), as the engine does.
    return lambda env, local: (
        sum(_bool(body(env, inner)) for inner, _ in _each(receiver, variable, env, local)) == 1
    )


def _map(receiver: Node, variable: str, body: Node) -> Node:
    return lambda env, local: [
        body(env, inner) for inner, _ in _each(receiver, variable, env, local)
    ]


def _filter(receiver: Node, variable: str, body: Node) -> Node:
    return lambda env, local: [
        item for inner, item in _each(receiver, variable, env, local) if _bool(body(env, inner))
    ]


_MACRO_BUILDERS: dict[str, Callable[[Node, str, Node], Node]] = {
    "exists": _exists,
    "all": _all,
    "exists_one": _exists_one,
    "map": _map,
    "filter": _filter,
}
