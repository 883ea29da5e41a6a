"""Templates rendered per `for_each` item: what no item reads is rendered once.

A step or respond rule with `for_each` renders its args once per item. Rendering
them over the whole context each time converted the alert, the incident and every
step's result into CEL again for each item; `ItemTemplates` renders the part that
does not read `item` once and evaluates the rest against only what it reads, with
exactly the results (values, types, errors and which error comes first) of
rendering everything per item.
"""

from __future__ import annotations

from typing import Any

import pytest

from soc_agent.errors import ExpressionError
from soc_agent.playbooks.context import build_context
from soc_agent.playbooks.templates import ItemTemplates, render
from tests.unit.playbooks.pb_helpers import BAD_HASH, make_alert, make_incident


def _context() -> dict[str, Any]:
    alert = make_alert()
    ctx = build_context(alert, make_incident(alert))
    ctx["steps"] = {"intel": {"ok": True, "result": [{"item": BAD_HASH, "verdict": "malicious"}]}}
    return ctx


ITEMS: list[Any] = [
    BAD_HASH,
    "10.20.10.42",
    {"value": "ws-fin-042", "type": "host"},
    7,
    None,
    ["a", "b"],
]

VALUES: dict[str, Any] = {
    "only the item": {"indicator": "${item}", "type": "file_hash"},
    "item and shared": {
        "indicator": "${item}",
        "host": "${alert.hosts[0]}",
        "window": 60,
        "around": "${alert.created_at}",
    },
    "interpolated": "lookup ${item} for ${alert.users[0]} (${incident.alert_count} alerts)",
    "typed": {"count": "${size(alert.file_hashes)}", "items": ["${item}", "${[item, item]}"]},
    "nested": {"query": {"bool": [{"term": "${item}"}, {"term": "${alert.severity}"}]}},
    "escaped": {"literal": "$${item}", "mixed": "$${x} ${item}"},
    "member of the item": {"value": "${item.value}", "also": "${alert.hosts[0]}"},
    "steps and item": {"seen": "${steps.intel.result.exists(r, r.item == item)}"},
    "a macro variable named item": {"hashes": "${alert.file_hashes.map(item, item + '!')}"},
    "shared fails after the item": {"a": "${item}", "b": "${alert.nope}"},
    "shared fails before the item": {"b": "${alert.nope}", "a": "${item.value}"},
    "does not compile": {"a": "${item +}", "b": "${alert.severity}"},
    "unterminated": {"a": "${item", "b": "x"},
    "not a template": ["plain", 3, None, True],
}


def _outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except ExpressionError as exc:
        return ("error", type(exc).__name__, str(exc))


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_each_item_renders_as_if_the_whole_context_were_rendered_for_it(value: Any) -> None:
    ctx = _context()
    templates = ItemTemplates(value, ctx)
    for item in ITEMS:
        expected = _outcome(lambda item=item: render(value, {**ctx, "item": item}))
        assert _outcome(lambda item=item: templates.render(item)) == expected, item


def test_what_no_item_reads_is_rendered_once() -> None:
    value = {
        "indicator": "${item}",
        "type": "ip",
        "why": "${alert.severity} alert on ${alert.hosts[0]}",
        "around": "${alert.created_at}",
    }
    templates = ItemTemplates(value, _context())
    for item in ITEMS:
        templates.render(item)
    # 3 shared expressions once, 1 per item: not (3 + 1) per item
    assert templates.evaluations == 3 + len(ITEMS)


def test_rendered_items_do_not_share_mutable_values() -> None:
    templates = ItemTemplates({"hosts": "${alert.hosts}", "ip": "${item}"}, _context())
    first, second = templates.render("10.0.0.1"), templates.render("10.0.0.2")
    first["hosts"].append("changed by a connector")
    assert second["hosts"] == ["ws-fin-042"]


def test_nothing_is_evaluated_without_items() -> None:
    templates = ItemTemplates({"b": "${alert.nope}", "a": "${item}"}, _context())
    assert templates.evaluations == 0
