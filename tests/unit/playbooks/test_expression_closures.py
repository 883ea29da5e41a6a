"""The fast path gives exactly the CEL engine's value, or defers to the engine.

Differential tests: every expression is run both as its closure and on the
engine (`cel`), on generated expressions and data and on the shipped
playbooks' and risk rules' expressions; wherever the closure gives a value,
the engine must give the identical one (same type, same value).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml
from cel.stdlib import STDLIB_FUNCTIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soc_agent.playbooks.expression_closures import Defer, closure_for
from soc_agent.playbooks.expressions import evaluate

ROOT = Path(__file__).resolve().parents[3]
_ENGINE_FAILED = object()


def _engine(expression: str, variables: dict[str, Any]) -> Any:
    try:
        context = cel.Context(variables=variables, functions=STDLIB_FUNCTIONS)
        return cel.compile(expression).execute(context)
    except Exception:  # any engine error is "no value"
        return _ENGINE_FAILED


def _identical(left: Any, right: Any) -> bool:
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_identical, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_identical(left[k], right[k]) for k in left)
    return bool(left == right)


def _fast(expression: str, variables: dict[str, Any]) -> tuple[bool, Any]:
    """(True, value) when the closure gives one; (False, None) when it defers."""
    closure = closure_for(expression)
    assert closure is not None, expression
    try:
        return True, closure(variables)
    except Defer:
        return False, None


def _agrees(expression: str, variables: dict[str, Any]) -> bool:
    """Whether the closure gave a value (which the engine must give identically)."""
    gave, value = _fast(expression, variables)
    if gave:
        expected = _engine(expression, variables)
        assert expected is not _ENGINE_FAILED, f"{expression!r} on {variables!r}: engine failed"
        assert _identical(value, expected), f"{expression!r}: {value!r} != {expected!r}"
    return gave


# --- measured semantics, case by case ---------------------------------------------------

CASES = [
    # (expression, variables, value the engine gives or None where it errs[, "defers"])
    ("1 + 2 * 3 == 7 && !(1 > 2)", {}, True),
    ("-5 / 2", {}, -2),  # truncated, not floored
    ("-5 % 3", {}, -2),
    ("5 % -3", {}, 2),
    ("8 / 4 / 2", {}, 1),
    ("1 - 2 - 3", {}, -4),
    ("-9223372036854775808", {}, -(2**63)),
    ("size('héllo')", {}, 6),  # the engine counts UTF-8 bytes
    ("a.size()", {"a": [1, 2]}, 2),
    ("'é' > 'z'", {}, True),
    # An operand that errs, or is outside the subset, is settled by the other side.
    ("a.x && false", {"a": {}}, False),
    ("a.x || b.x || true", {"a": {}, "b": 1}, True),
    ("a.matches('(') && false", {"a": "x"}, False),
    ("size(a) > 5 && a.matches('(')", {"a": "x"}, False),
    ("string(a) == 'x' || a.exists(v, v == 1)", {"a": [1]}, True),
    ("a.matches('x') && true", {"a": "x"}, True, "defers"),
    ("a.x && true", {"a": {}}, None),
    ("1 && true", {}, None),
    ("false && a.x", {"a": {}}, False),
    ("true || a.x", {"a": {}}, True),
    ("a.exists(x, x > 1)", {"a": [2, "x"]}, True),  # left to right, stops at the answer
    ("a.all(x, x > 1)", {"a": [1, "x"]}, False),
    ("[1, 2, 3].filter(x, x > 1).map(x, x * 10)", {}, [20, 30]),
    ("[1, 2, 3].exists_one(x, x > 2)", {}, True),
    ("a.exists(x, x.exists(y, y == 2))", {"a": [[1], [2]]}, True),
    ("true ? 1 : false ? 2 : 3", {}, 1),
    ("false ? 1 : false ? 2 : 3", {}, 3),
    ("{'a': 1, 'b': 2}['b']", {}, 2),
    ("'a\\tb'", {}, "a\tb"),
    ("has(a.b)", {"a": {"b": None}}, True),
    ("a in {'k': 1}", {"a": "k"}, True),
    ("x in ['a', 'b']", {"x": "b"}, True),
    ("'abc'.contains('b') && 'abc'.startsWith('') && 'abc'.endsWith('bc')", {}, True),
    ("a", {"a": {"x": [1, {"y": None}]}}, {"x": [1, {"y": None}]}),
    ("1.5 * 2.0", {}, 3.0),
    ("a.join(', ') + a.join()", {"a": ["x", "y"]}, "x, yxy"),
    # Where the engine errs the closure must defer (the engine then raises its error).
    ("9223372036854775807 + 1", {}, None),
    ("a[-1]", {"a": [1]}, None),
    ("a.x", {"a": None}, None),
    ("a.exists(x, x > 1)", {"a": [1, "x", 2]}, None),
    ("a ? 1 : 2", {"a": 1}, None),
    ("!a", {"a": 1}, None),
    ("a.b.c", {"a": {"b": [1]}}, None),
    ("{'a': 1}['b']", {}, None),
    ("[x, 1]", {"x": "\ud800"}, None),  # a lone surrogate the engine cannot take
    ("a.join('-')", {"a": ["x", 1]}, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_closure_gives_the_engines_value_or_defers(case: tuple[Any, ...]) -> None:
    expression, variables, expected = case[:3]
    engine = _engine(expression, variables)
    if expected is None:
        assert engine is _ENGINE_FAILED
    else:
        assert _identical(engine, expected)
    gave, value = _fast(expression, variables)
    if expected is None or case[3:] == ("defers",):
        assert not gave
    else:
        assert gave and _identical(value, expected)


@pytest.mark.parametrize(
    "expression",
    [
        "a.matches('^a$')",
        "a.matches('x') && string(a) == 'x'",
        "a.matches('x') ? 1 : 2",  # regular expressions: the engine's dialect, not Python's
        "string(a)",
        "int(a) > 1",
        "1u + 2u",
        "b'abc'",
        "0x10 == 16",
        "r'a\\d'",
        "'''triple'''",
        "math.greatest(1, 2)",
        "history.verdicts('r', 'host:h', 30).false_positive > 0",
        "{'a': 1, 'a': 2}",
        "'\\u00e9'",
        ".5 + a",
    ],
)
def test_expressions_outside_the_subset_get_no_closure(expression: str) -> None:
    assert closure_for(expression) is None


def test_evaluate_returns_the_engines_error_where_the_closure_defers() -> None:
    with pytest.raises(Exception, match=r"no such key|overload|Undefined"):
        evaluate("alert.missing == 1", {"alert": {"id": "a"}})


def test_a_value_nested_deeper_than_python_recurses_defers_to_the_engine() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert _fast("a", {"a": deep}) == (False, None)


def test_a_returned_list_is_a_copy_not_the_contexts_own() -> None:
    hosts = ["h1", "h2"]
    value = evaluate("alert.hosts", {"alert": {"hosts": hosts}})
    assert value == hosts and value is not hosts


# --- generated expressions and data ------------------------------------------------------

_FIELDS = ["a", "b", "c"]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([0, 1, 2, -1, 2**63 - 1, -(2**63)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=4)
    | st.sampled_from(["a", "b", "é", "A"])
)
_data = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_FIELDS), inner),
    max_leaves=12,
)
_ATOMS = ["x", "y", "z", "z.a", "z.b", "x[0]", "z['c']", "0", "1", "2", "-1", "1.5",
          "9223372036854775807", "'a'", "'é'", "''", "true", "false", "null", "[]", "[1, 2]",
          "['a', 'b']", "{'a': 1}",
          # outside the subset: the closure settles a chain around them, or defers
          "x.matches('a')", "string(y) == 'a'", "int(z) > 1"]  # fmt: skip
_BINARY = ["==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%", "&&", "||"]


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", pair, st.sampled_from(_BINARY)),
        inner.map(lambda e: f"!{e}"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        inner.map(lambda e: f"size({e})"),
        inner.map(lambda e: f"({e}).a"),
        inner.map(lambda e: f"({e})[0]"),
        st.builds(
            lambda p, m: f"({p[0]}).{m}(v, {p[1].replace('x', 'v')})",
            pair,
            st.sampled_from(["exists", "all", "exists_one", "map", "filter"]),
        ),
        st.builds(
            lambda p, m: f"({p[0]}).{m}({p[1]})",
            pair,
            st.sampled_from(["startsWith", "endsWith", "contains"]),
        ),
    )


_expressions = st.recursive(st.sampled_from(_ATOMS), _combine, max_leaves=6)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=_expressions, x=_data, y=_data, z=_data)
def test_generated_expressions_agree_with_the_engine(
    expression: str, x: Any, y: Any, z: Any
) -> None:
    try:
        cel.compile(expression)
    except Exception:  # generated text the engine refuses is not a case
        return
    if closure_for(expression) is None:
        return
    _agrees(expression, {"x": x, "y": y, "z": z})


# --- the shipped expressions -------------------------------------------------------------

_SHIPPED_YAML = [
    *sorted((ROOT / "playbooks").rglob("*.yaml")),
    *sorted((ROOT / "packs").rglob("playbooks/*.yaml")),
    *sorted((ROOT / "samples" / "packs").rglob("playbooks/*.yaml")),
]
_TEMPLATE = re.compile(r"\$\{(.*?)\}")
# Shipped expressions the engine keeps: regular expressions, conversions and the memory
# of past cases are outside the subset.
_ENGINE_ONLY = re.compile(r"\.matches\(|\bstring\(|\bint\(|history\.verdicts\(")


def _shipped_expressions() -> list[str]:
    found: dict[str, None] = {}

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if key in ("match", "when", "points"):
                found.setdefault(" ".join(value.split()))
            for template in _TEMPLATE.findall(value):
                found.setdefault(template)

    for path in _SHIPPED_YAML:
        walk(yaml.safe_load(path.read_text()))
    return list(found)


SHIPPED = _shipped_expressions()


def test_the_shipped_expressions_are_found() -> None:
    assert len(SHIPPED) > 60
    assert 'alert.severity in ["high", "critical"]' in SHIPPED


@pytest.mark.parametrize("expression", [e for e in SHIPPED if not _ENGINE_ONLY.search(e)])
def test_every_shipped_expression_outside_the_engine_only_forms_has_a_closure(
    expression: str,
) -> None:
    assert closure_for(expression) is not None


def test_most_shipped_expressions_with_engine_only_forms_have_a_partial_closure() -> None:
    engine_only = [e for e in SHIPPED if _ENGINE_ONLY.search(e)]
    partial = [e for e in engine_only if closure_for(e) is not None]
    assert len(engine_only) >= 5 and len(partial) * 2 > len(engine_only), partial


def _names(expressions: list[str]) -> list[str]:
    return sorted({m for e in expressions for m in re.findall(r"\.\s*([A-Za-z_]\w*)", e)})


# Data shaped like the contexts playbooks see: dicts keyed by the fields the shipped
# expressions read, so reads mostly land, with values of every JSON type.
_SHIPPED_FIELDS = _names(SHIPPED)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=200)
    | st.sampled_from(["high", "critical", "malicious", "suspicious", "benign", "host",
                       "user", "soc_risk", "T1566", "T1059.001", "Lateral Movement", "é"])
)  # fmt: skip
_shaped = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_SHIPPED_FIELDS), inner, max_size=6)
    ),
    max_leaves=25,
)
_CONTEXT_NAMES = ["alert", "incident", "steps", "entity", "history", "item"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.fixed_dictionaries({n: _shaped for n in _CONTEXT_NAMES}),
    expression=st.sampled_from([e for e in SHIPPED if closure_for(e) is not None]),
)
def test_shipped_expressions_agree_with_the_engine_on_generated_contexts(
    data: dict[str, Any], expression: str
) -> None:
    _agrees(expression, data)


def test_the_closures_answer_on_realistic_contexts() -> None:
    """Not a fast path that always defers: the shipped rules answer on an ordinary alert."""
    alert = {
        "format": "suricata_eve", "severity": "high", "title": "ET MALWARE beacon",
        "tactics": ["Command and Control"], "techniques": ["T1071"], "hosts": ["web-1"],
        "users": [], "ips": ["10.0.0.5", "203.0.113.9"], "domains": [], "urls": [],
        "emails": [], "file_hashes": [], "entities": [{"type": "host", "value": "web-1"}],
        "rule": {"name": "ET MALWARE beacon"}, "rule_key": "suricata:1",
    }  # fmt: skip
    context = {
        "alert": alert,
        "incident": {"alert_count": 2, "duplicate_count": 0},
        "entity": {"type": "host", "value": "web-1", "criticality": "high"},
        "history": {"tactics": ["Discovery", "Execution"], "techniques": ["T1059"]},
        "steps": {},
    }
    answered = [e for e in SHIPPED if closure_for(e) is not None and _agrees(e, context)]
    assert len(answered) >= 25, answered
