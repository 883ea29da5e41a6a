"""Expressions share converted contexts and remembered values within one decision; these
tests check that sharing never changes what an expression evaluates to."""

from __future__ import annotations

from datetime import timedelta

import pytest

from soc_agent.errors import ExpressionError
from soc_agent.models import Approver, IncidentVerdict, Role, Verdict
from soc_agent.playbooks import expressions
from soc_agent.playbooks.expressions import EvaluationError, evaluate
from soc_agent.playbooks.history import HistoryView, history_in_effect
from tests.unit.playbooks.pb_helpers import T0


def test_a_new_alert_is_never_answered_from_the_previous_ones_value() -> None:
    first = {"alert": {"severity": "high", "hosts": ["a"]}}
    second = {"alert": {"severity": "low", "hosts": ["b"]}}
    assert evaluate('alert.severity == "high"', first) is True
    assert evaluate('alert.severity == "high"', second) is False
    assert evaluate('alert.severity == "high"', first) is True


def test_per_expression_names_change_between_evaluations_on_one_alert() -> None:
    alert = {"severity": "high"}
    for item in (1, 2, 3):
        assert evaluate("item + 1", {"alert": alert, "item": item}) == item + 1
    steps = {"a": {"ok": True}}
    both = "steps.a.ok && alert.severity == 'high'"
    assert evaluate(both, {"alert": alert, "steps": steps})
    assert not evaluate(both, {"alert": alert, "steps": {"a": {"ok": False}}})


def test_a_name_absent_now_is_not_read_from_an_earlier_expression() -> None:
    alert = {"severity": "high"}
    assert evaluate("steps.a.ok", {"alert": alert, "steps": {"a": {"ok": True}}}) is True
    with pytest.raises(EvaluationError):
        evaluate("steps.a.ok", {"alert": alert})


def test_a_remembered_list_is_a_fresh_copy_for_each_caller() -> None:
    context = {"alert": {"hosts": ["a", "b"]}}
    hosts = evaluate("alert.hosts", context)
    hosts.append("mutated by a caller")
    assert evaluate("alert.hosts", context) == ["a", "b"]


def test_the_incident_is_read_only_by_expressions_that_name_it() -> None:
    alert = {"severity": "high"}
    incident = {"alert_count": 3}
    context = {"alert": alert, "incident": incident}
    assert evaluate('alert.severity == "high"', context) is True
    assert evaluate("incident.alert_count > 2", context) is True
    assert evaluate('incident.alert_count > 2 && alert.severity == "high"', context) is True
    with pytest.raises(EvaluationError):
        evaluate("incident.alert_count > 2", {"alert": alert})


def _closing(days_ago: float, verdict: Verdict) -> IncidentVerdict:
    return IncidentVerdict(
        id=f"v-{verdict.value}",
        incident_id="inc-1",
        verdict=verdict,
        reason="closed",
        closed_by=Approver.of("token", "alice", Role.ANALYST),
        closed_at=T0 - timedelta(days=days_ago),
        rules=["suricata:1"],
        entities=["host:ws-1"],
    )


def test_history_calls_are_evaluated_again_under_each_decisions_history() -> None:
    context = {"alert": {"severity": "high"}, "incident": {}}
    expression = 'history.last_verdict("host:ws-1")'
    with history_in_effect(HistoryView([_closing(1, Verdict.FALSE_POSITIVE)], T0)):
        assert evaluate(expression, context) == "false_positive"
    with history_in_effect(HistoryView([_closing(1, Verdict.TRUE_POSITIVE)], T0)):
        assert evaluate(expression, context) == "true_positive"
    with pytest.raises(ExpressionError):
        evaluate(expression, context)


@pytest.mark.parametrize(
    ("value", "expected"), [(1, True), (1.0, False), (True, False), ("1", False), (None, False)]
)
def test_values_kept_across_alerts_tell_types_apart(value: object, expected: bool) -> None:
    # The same field value as text would make every one of these the same key.
    expression = "type(alert.x) == type(1)"  # (`== int` would read a name `int`: not kept)
    assert expressions._shape(expression).fields is not None
    evaluate(expression, {"alert": {"x": 1}})
    assert evaluate(expression, {"alert": {"x": value}}) is expected


def test_values_kept_across_alerts_tell_a_missing_field_from_a_null_one() -> None:
    assert evaluate("has(alert.x)", {"alert": {"x": None}}) is True
    assert evaluate("has(alert.x)", {"alert": {}}) is False
    assert evaluate("has(alert.x)", {"alert": {"x": None}}) is True


def test_an_expression_reading_the_alert_whole_follows_every_field() -> None:
    expression = 'alert["x"] + size(alert)'
    assert evaluate(expression, {"alert": {"x": 1}}) == 2
    assert evaluate(expression, {"alert": {"x": 1, "y": 2}}) == 3
    assert evaluate("alert.x + 1", {"alert": {"x": 1, "y": 2}}) == 2
    assert evaluate("alert.x + 1", {"alert": {"x": 5, "y": 2}}) == 6


def test_values_kept_by_fields_follow_every_name_read() -> None:
    alert = {"severity": "high"}
    for criticality, expected in [("high", True), ("low", False), ("high", True)]:
        entity = {"type": "host", "criticality": criticality}
        context = {"alert": alert, "entity": entity}
        assert evaluate('entity.criticality == "high" && alert.severity == "high"', context) is (
            expected
        )
    steps = {"a": {"ok": True}, "b": {"ok": False}}
    assert evaluate("size(steps)", {"alert": alert, "steps": steps}) == 2
    assert evaluate("size(steps)", {"alert": alert, "steps": {"a": {"ok": True}}}) == 1
    assert evaluate("steps.a.ok", {"alert": alert, "steps": steps}) is True
    assert evaluate("steps.a.ok", {"alert": alert, "steps": {"a": {"ok": False}}}) is False


@pytest.mark.parametrize(
    ("expression", "first", "second"),
    [
        ("string(alert.x)", 0.0, -0.0),
        ("type(alert.x[0]) == type(1)", [1], [1.0]),
        ("type(alert.x[0]) == type(1)", [1], [True]),
        ("type(alert.x) == type([])", ["a"], "a"),
        ("type(alert.x) == type({})", {"a": 1}, [["a", 1]]),
        ("type(alert.x.y) == type([])", {"y": []}, {"y": {}}),
    ],
)
def test_values_kept_across_alerts_tell_nested_values_and_signed_zeros_apart(
    expression: str, first: object, second: object
) -> None:
    assert expressions._shape(expression).fields is not None  # its values are kept
    # `alert["x"]` reads the alert whole, so its value is never kept: the truth to match.
    unkept = expression.replace("alert.x", 'alert["x"]')
    truths = [evaluate(unkept, {"alert": {"x": v}}) for v in (first, second)]
    assert truths[0] != truths[1]
    kept = [evaluate(expression, {"alert": {"x": v}}) for v in (first, second, first)]
    assert kept == [truths[0], truths[1], truths[0]]


def _kept_for(expression: str) -> int:
    return sum(1 for key in expressions._BY_VALUES if key[0] == expression)


def test_an_expression_whose_fields_never_repeat_stops_being_kept_then_is_tried_again() -> None:
    # int() keeps them on the engine (the fast path would answer `alert.n + 1` itself).
    never = "int(alert.n) + 1"
    often = "int(alert.k) * 2"
    rounds = expressions._PROBE + expressions._REST
    for n in range(rounds):
        assert evaluate(never, {"alert": {"n": n}}) == n + 1
        assert evaluate(often, {"alert": {"k": n % 3}}) == (n % 3) * 2
        if n == expressions._PROBE - 1:
            probed = _kept_for(never)
    assert probed == expressions._PROBE
    assert _kept_for(never) == probed  # resting: nothing more kept for it
    assert _kept_for(often) == 3  # repeating: kept all along
    evaluate(never, {"alert": {"n": -1}})  # the rest is over: probed again
    assert _kept_for(never) == probed + 1
