"""Property tests: parse_payload never raises and accounts for every input record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soc_agent.errors import NormalizationError
from soc_agent.ingest import normalize, parse_payload
from soc_agent.ingest.payload import _EXPANDERS
from soc_agent.models import Alert

ALERTS = Path(__file__).resolve().parents[2] / "fixtures" / "alerts"
FIXTURE_FILES = sorted(p for p in ALERTS.glob("*/*.json"))
FIXTURE_DOCS = [json.loads(p.read_bytes()) for p in FIXTURE_FILES]

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)


json_values = st.recursive(scalars, _containers, max_leaves=25)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=8)


def expected_records(value: Any) -> int:
    """How many records a parsed payload holds (an API response holds its alerts, as each
    format's `expand` says; those are tested with their formats)."""
    items = value if isinstance(value, list) else [value]
    count = 0
    for item in items:
        found = None
        if isinstance(item, dict):
            found = next((f for expand, _ in _EXPANDERS if (f := expand(item))), None)
        count += len(found) if found else 1
    return count


@PROPERTY
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = parse_payload(data, source="fuzz")
    for dead in result.dead_letters:
        assert dead.reason
        assert dead.received_at.tzinfo is not None
    if not result.alerts and not result.dead_letters:
        assert json.loads(data.decode("utf-8-sig")) == []  # only an empty array holds nothing


@PROPERTY
@given(json_values)
def test_arbitrary_json_document_accounts_for_every_record(value: Any) -> None:
    data = json.dumps(value).encode()
    result = parse_payload(data, source="fuzz")
    assert len(result.alerts) + len(result.dead_letters) == expected_records(value)


@PROPERTY
@given(st.lists(json_objects, min_size=2, max_size=6), st.lists(st.integers(0, 5), max_size=3))
def test_json_lines_account_for_every_line(
    objects: list[dict[str, Any]], broken: list[int]
) -> None:
    lines = [json.dumps(o) for o in objects]
    for index in broken:  # truncate some lines, never the first: a payload of nothing but
        at = 1 + index % (len(lines) - 1)  # broken lines is one broken document, by design
        lines[at] = lines[at][:-1] or "{"
    data = "\n".join(lines).encode()
    result = parse_payload(data, source="fuzz.jsonl")
    parsed = [json.loads(line) for line in lines if _is_json(line)]
    expected = sum(expected_records(v) for v in parsed) + sum(
        1 for line in lines if not _is_json(line)
    )
    assert len(result.alerts) + len(result.dead_letters) == expected


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:3]):
            out += _paths(value, (*prefix, index))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy: Any = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_vendor_records_normalise_or_fail_cleanly(data: st.DataObject) -> None:
    """Any field of a real-shaped record replaced by any JSON value: an Alert or a clean error."""
    original = data.draw(st.sampled_from(FIXTURE_DOCS))
    path = data.draw(st.sampled_from(_paths(original)))
    mutated = _replace(original, path, data.draw(json_values))
    try:
        alert: Alert | None = normalize(mutated)
    except NormalizationError as exc:
        alert, reason = None, str(exc)
    if alert is None:
        assert reason
    else:
        alert.model_dump_json()  # serialisable downstream
    result = parse_payload(json.dumps(mutated).encode(), source="mut")
    assert len(result.alerts) + len(result.dead_letters) == expected_records(mutated)
