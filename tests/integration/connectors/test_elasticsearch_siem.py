"""The Elasticsearch SIEM connector against a real Elasticsearch node (tests/infra).

The index holds the 500 seeded ECS security events of `security_events.py`,
with domains on the network events and hashes on the file events, under the
strict ECS mapping extended for those fields. Every expectation is computed
from the same events, with the connector's semantics re-stated in plain
Python: inclusive time range, any entity field, case-insensitive keywords,
exact or CIDR IP match. Authentication failures are scripted on the real
HTTP `vendor_server` (the Maven-built node has no security module).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk
from soc_agent_connectors.elasticsearch_siem import ElasticsearchConfig, ElasticsearchSiem

from soc_agent.errors import ConnectorError
from soc_agent.models import EvidenceStatus
from soc_agent.runtime.components import open_components
from soc_agent.runtime.embedded import run_embedded
from soc_agent.settings import DEFAULT_GRANTS, load_settings
from tests.conftest import Clock
from tests.infra.fixtures import elasticsearch_url, needs
from tests.integration.conftest import BASE_POLICY, FIXTURES
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer
from tests.integration.infra.security_events import ECS_MAPPING, START, generate_events, parse_ts

__all__ = ["elasticsearch_url"]

pytestmark = needs("elasticsearch")

INDEX = "logs-siem-connector-test"
IP_HOST_INDEX = "logs-siem-connector-iphost"  # a non-ECS index: host.name mapped as `ip`
ES_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "elasticsearch"
DOMAINS = ["login.microsoftonline.com", "updates.contoso-cdn.net", "cdn.badupdate.example"]
PAYLOADS = ["a.dll", "invoice_44817.docm", "svc_update.exe"]


def _sha256(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _md5(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()  # ECS file.hash.md5


def _enriched_events() -> list[dict[str, Any]]:
    events = generate_events(500)
    for index, event in enumerate(events):
        category = event["event"]["category"][0]
        if category == "network":
            domain = DOMAINS[index % len(DOMAINS)]
            event["destination"]["domain"] = domain
            if index % 2:
                event["dns"] = {"question": {"name": domain}}
        elif category == "file":
            name = PAYLOADS[index % len(PAYLOADS)]
            event["file"] = {"name": name, "hash": {"sha256": _sha256(name), "md5": _md5(name)}}
    return events


def _mapping() -> dict[str, Any]:
    mapping = copy.deepcopy(ECS_MAPPING)
    keyword = {"type": "keyword"}
    props = mapping["properties"]
    props["destination"]["properties"]["domain"] = keyword
    props["dns"] = {"properties": {"question": {"properties": {"name": keyword}}}}
    props["url"] = {"properties": {"domain": keyword, "full": keyword, "original": keyword}}
    props["file"] = {
        "properties": {
            "name": keyword,
            "hash": {"properties": {"sha256": keyword, "sha1": keyword, "md5": keyword}},
        }
    }
    return mapping


EVENTS = _enriched_events()
BY_ID = {e["event"]["id"]: e for e in EVENTS}
IP_FIELDS = ("source.ip", "destination.ip", "host.ip", "client.ip")
KEYWORD_FIELDS = {
    "host": ("host.name", "host.hostname"),
    "user": ("user.name", "user.email"),
    "domain": ("destination.domain", "dns.question.name", "url.domain"),
    "file_hash": ("file.hash.sha256", "file.hash.sha1", "file.hash.md5"),
}


async def _seed(url: str) -> None:
    async with AsyncElasticsearch(url, request_timeout=60) as es:
        for index in (INDEX, IP_HOST_INDEX):
            await es.options(ignore_status=404).indices.delete(index=index)
        settings = {"number_of_shards": 1, "number_of_replicas": 0}
        await es.indices.create(index=INDEX, settings=settings, mappings=_mapping())
        actions = ({"_index": INDEX, "_id": e["event"]["id"], "_source": e} for e in EVENTS)
        indexed, errors = await async_bulk(es, actions, chunk_size=250, refresh="wait_for")
        assert (indexed, errors) == (len(EVENTS), [])
        await es.indices.create(
            index=IP_HOST_INDEX,
            settings=settings,
            mappings={
                "properties": {
                    "@timestamp": {"type": "date"},
                    "host": {"properties": {"name": {"type": "ip"}}},
                }
            },
        )
        await es.index(
            index=IP_HOST_INDEX,
            document={"@timestamp": "2026-11-19T06:00:00Z", "host": {"name": "10.20.0.10"}},
            refresh="wait_for",
        )


@pytest.fixture(scope="module")
def seeded(elasticsearch_url: str) -> str:
    asyncio.run(_seed(elasticsearch_url))
    return elasticsearch_url


@pytest.fixture
def make_conn(seeded: str) -> Callable[..., ElasticsearchSiem]:
    def make(**config: Any) -> ElasticsearchSiem:
        return ElasticsearchSiem(ElasticsearchConfig.model_validate({"hosts": [seeded], **config}))

    return make


@pytest.fixture
async def conn(make_conn: Callable[..., ElasticsearchSiem]) -> AsyncIterator[ElasticsearchSiem]:
    connector = make_conn(index=INDEX)
    yield connector
    await connector.aclose()


# --- the connector's semantics, re-stated over the seed ----------------------------------------


def _values(event: dict[str, Any], dotted: str) -> list[Any]:
    cur: Any = event
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return []
        cur = cur[part]
    return cur if isinstance(cur, list) else [cur]


def _matches(event: dict[str, Any], entity_type: str, value: str) -> bool:
    if entity_type == "ip":
        network = ipaddress.ip_network(value, strict=False)
        return any(ipaddress.ip_address(v) in network for f in IP_FIELDS for v in _values(event, f))
    want = value.strip().lower()
    return any(
        str(v).lower() == want for f in KEYWORD_FIELDS[entity_type] for v in _values(event, f)
    )


def _expected(
    entity_type: str,
    value: str,
    around: datetime,
    window_minutes: int,
    *,
    category: str | None = None,
    outcome: str | None = None,
) -> list[dict[str, Any]]:
    """Matching events, newest first (the connector's sort)."""
    start, end = (
        around - timedelta(minutes=window_minutes),
        around + timedelta(minutes=window_minutes),
    )
    found = [
        e
        for e in EVENTS
        if start <= parse_ts(e["@timestamp"]) <= end
        and (category is None or category in e["event"]["category"])
        and (outcome is None or e["event"]["outcome"] == outcome)
        and _matches(e, entity_type, value)
    ]
    return sorted(found, key=lambda e: e["@timestamp"], reverse=True)


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"]["id"] for e in events]


def test_seed_timestamps_are_unique() -> None:
    """So that 'newest first' is one order, and list comparisons below are exact."""
    assert len({e["@timestamp"] for e in EVENTS}) == len(EVENTS)


# --- search ----------------------------------------------------------------------------------

SEARCH_CASES = [
    ("host", "SRV-DC-01", START + timedelta(hours=9), 180),  # keywords match in any case
    ("host", "ws-fin-014", START + timedelta(hours=20), 240),
    ("user", "administrator", START + timedelta(hours=12), 720),
    ("ip", "203.0.113.45", START + timedelta(hours=12), 720),
    ("ip", "10.20.5.0/24", START + timedelta(hours=3), 90),  # CIDR over source/destination/host ip
    ("ip", "10.20.8.30", START + timedelta(hours=16), 120),  # host.ip / destination.ip
    ("domain", "cdn.badupdate.example", START + timedelta(hours=12), 720),
    ("domain", "UPDATES.contoso-cdn.net", START + timedelta(hours=6), 360),
    ("file_hash", _sha256("invoice_44817.docm").upper(), START + timedelta(hours=12), 720),
    ("file_hash", _md5("a.dll"), START + timedelta(hours=12), 720),
]


@pytest.mark.parametrize(("entity_type", "value", "around", "window"), SEARCH_CASES)
async def test_search_by_entity_over_a_time_range_returns_exactly_the_seeded_events(
    conn: ElasticsearchSiem, entity_type: str, value: str, around: datetime, window: int
) -> None:
    expected = _expected(entity_type, value, around, window)
    assert expected, "the seed must contain matches"
    assert len(expected) < len(EVENTS)
    out = await conn.invoke(
        "search",
        {
            "entity_type": entity_type,
            "value": value,
            "around": around.isoformat(),
            "window_minutes": window,
            "limit": 500,
        },
    )
    assert out["total"] == len(expected)
    assert out["total_relation"] == "eq"
    assert out["index_missing"] is False
    assert _ids(out["events"]) == _ids(expected)
    assert out["events"][0] == BY_ID[expected[0]["event"]["id"]]  # _source, unchanged


async def test_the_time_range_is_inclusive_at_both_ends(conn: ElasticsearchSiem) -> None:
    event = EVENTS[123]
    at = parse_ts(event["@timestamp"])
    for around in (at - timedelta(minutes=1), at + timedelta(minutes=1)):
        out = await conn.invoke(
            "search",
            {
                "entity_type": "host",
                "value": event["host"]["name"],
                "around": around.isoformat(),
                "window_minutes": 1,
            },
        )
        assert event["event"]["id"] in _ids(out["events"])


async def test_category_and_outcome_filters(conn: ElasticsearchSiem) -> None:
    around, window = START + timedelta(hours=12), 720
    for category, outcome in [
        ("authentication", "failure"),
        ("authentication", None),
        (None, "failure"),
        ("process", "success"),
    ]:
        expected = _expected(
            "host", "srv-dc-01", around, window, category=category, outcome=outcome
        )
        assert expected
        out = await conn.invoke(
            "search",
            {
                "entity_type": "host",
                "value": "srv-dc-01",
                "around": around.isoformat(),
                "window_minutes": window,
                "category": category,
                "outcome": outcome,
                "limit": 500,
            },
        )
        assert (out["total"], _ids(out["events"])) == (len(expected), _ids(expected))


async def test_aggregation_and_distinct_count_match_the_seed(conn: ElasticsearchSiem) -> None:
    """The brute-force playbook's question: failed logons from one IP, by account."""
    around, window = START + timedelta(hours=12), 720
    expected = _expected(
        "ip", "198.51.100.0/24", around, window, category="authentication", outcome="failure"
    )
    assert len(expected) > 5
    by_user = Counter(e["user"]["name"] for e in expected)
    out = await conn.invoke(
        "search",
        {
            "entity_type": "ip",
            "value": "198.51.100.0/24",
            "around": around.isoformat(),
            "window_minutes": window,
            "category": "authentication",
            "outcome": "failure",
            "aggregate_by": "user.name",
            "limit": 5,
        },
    )
    assert out["total"] == len(expected)
    assert out["buckets"] == dict(by_user)
    assert list(out["buckets"].values()) == sorted(by_user.values(), reverse=True)
    assert out["distinct"] == len(by_user)
    assert _ids(out["events"]) == _ids(expected)[:5]


async def test_limit_bounds_the_events_not_the_total(
    conn: ElasticsearchSiem, make_conn: Callable[..., ElasticsearchSiem]
) -> None:
    args = {
        "entity_type": "ip",
        "value": "10.20.0.0/16",
        "around": (START + timedelta(hours=12)).isoformat(),
        "window_minutes": 720,
        "limit": 7,
    }
    expected = _expected("ip", "10.20.0.0/16", START + timedelta(hours=12), 720)
    assert len(expected) == len(EVENTS)  # every event has an internal address
    out = await conn.invoke("search", args)
    assert (out["total"], _ids(out["events"])) == (len(EVENTS), _ids(expected)[:7])
    assert (await conn.invoke("search", {**args, "limit": 0}))["events"] == []

    capped = make_conn(index=INDEX, max_hits=3, track_total_hits_up_to=100)
    try:
        out = await capped.invoke("search", {**args, "limit": 500})
    finally:
        await capped.aclose()
    assert _ids(out["events"]) == _ids(expected)[:3]
    assert (out["total"], out["total_relation"]) == (100, "gte")


async def test_count_by_failed_logons_per_user_for_a_source_ip(conn: ElasticsearchSiem) -> None:
    source = "203.0.113.45"
    start, end = START, START + timedelta(hours=18)
    failures = [
        e
        for e in EVENTS
        if e["source"]["ip"] == source
        and e["event"]["action"] == "logon-failed"
        and start <= parse_ts(e["@timestamp"]) <= end
    ]
    per_user = Counter(e["user"]["name"] for e in failures)
    assert len(per_user) > 2
    out = await conn.invoke(
        "count_by",
        {
            "by": "user.name",
            "entity_type": "ip",
            "value": source,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "category": "authentication",
            "action": "logon-failed",
            "size": 2,
        },
    )
    top_two = dict(sorted(per_user.items(), key=lambda kv: (-kv[1], kv[0]))[:2])
    assert out == {
        "by": "user.name",
        "total": len(failures),
        "total_relation": "eq",
        "buckets": top_two,
        "other": len(failures) - sum(top_two.values()),
        "distinct": len(per_user),
        "index_missing": False,
    }
    at_least = max(per_user.values())
    busiest = await conn.invoke(
        "count_by",
        {
            "by": "user.name",
            "entity_type": "ip",
            "value": source,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "action": "logon-failed",
            "min_count": at_least,
        },
    )
    assert busiest["buckets"] == {u: n for u, n in per_user.items() if n >= at_least}


async def test_count_by_hosts_by_ip_field_without_an_entity(conn: ElasticsearchSiem) -> None:
    out = await conn.invoke(
        "count_by",
        {
            "by": "source.ip",
            "around": (START + timedelta(hours=12)).isoformat(),
            "window_minutes": 720,
            "outcome": "failure",
            "size": 500,
        },
    )
    expected = Counter(e["source"]["ip"] for e in EVENTS if e["event"]["outcome"] == "failure")
    assert out["buckets"] == dict(expected)
    assert (out["total"], out["distinct"], out["other"]) == (
        sum(expected.values()),
        len(expected),
        0,
    )


# --- missing indices, partial answers, failures -----------------------------------------------


async def test_a_missing_index_is_an_empty_flagged_result(
    make_conn: Callable[..., ElasticsearchSiem], caplog: pytest.LogCaptureFixture
) -> None:
    args = {
        "entity_type": "host",
        "value": "srv-dc-01",
        "around": (START + timedelta(hours=12)).isoformat(),
        "window_minutes": 720,
        "aggregate_by": "user.name",
    }
    expected = _expected("host", "srv-dc-01", START + timedelta(hours=12), 720)
    alone = make_conn(index="logs-siem-does-not-exist")
    mixed = make_conn(index=f"{INDEX},logs-siem-does-not-exist")
    pattern = make_conn(index="nothing-matches-*")
    try:
        with caplog.at_level(logging.WARNING, logger="soc_agent.connectors.elasticsearch"):
            empty = await alone.invoke("search", args)
        assert empty == {
            "total": 0,
            "events": [],
            "buckets": {},
            "distinct": 0,
            "total_relation": "eq",
            "index_missing": True,
        }
        assert "no such index [logs-siem-does-not-exist]" in caplog.text
        # the indices that exist still answer
        partial = await mixed.invoke("search", {**args, "limit": 500})
        assert (partial["total"], partial["index_missing"]) == (len(expected), True)
        assert _ids(partial["events"]) == _ids(expected)
        counted = await alone.invoke("count_by", {"by": "user.name", "around": args["around"]})
        assert (counted["total"], counted["buckets"], counted["index_missing"]) == (0, {}, True)
        # a pattern that matches nothing is simply empty, as Elasticsearch answers it
        nothing = await pattern.invoke("search", args)
        assert (nothing["total"], nothing["index_missing"]) == (0, False)
    finally:
        for c in (alone, mixed, pattern):
            await c.aclose()


async def test_shard_failures_are_an_error_unless_partial_results_are_allowed(
    make_conn: Callable[..., ElasticsearchSiem],
) -> None:
    """host.name is an `ip` field in one index: a case-insensitive term fails there."""
    args = {
        "entity_type": "host",
        "value": "srv-dc-01",
        "around": (START + timedelta(hours=12)).isoformat(),
        "window_minutes": 720,
    }
    strict = make_conn(index=f"{INDEX},{IP_HOST_INDEX}")
    lenient = make_conn(index=f"{INDEX},{IP_HOST_INDEX}", allow_partial_results=True)
    try:
        with pytest.raises(ConnectorError) as info:
            await strict.invoke("search", args)
        assert "400" in str(info.value)
        assert "does not support case insensitive term queries" in str(info.value)
        out = await lenient.invoke("search", args)
        assert out["total"] == len(_expected("host", "srv-dc-01", START + timedelta(hours=12), 720))
    finally:
        await strict.aclose()
        await lenient.aclose()


async def test_invalid_arguments_fail_before_reaching_the_cluster(conn: ElasticsearchSiem) -> None:
    base = {"around": START.isoformat()}
    with pytest.raises(ConnectorError, match="neither an IP address nor a CIDR"):
        await conn.invoke("search", {**base, "entity_type": "ip", "value": "ws-fin-014"})
    with pytest.raises(ConnectorError, match="not a field name"):
        await conn.invoke(
            "search", {**base, "entity_type": "user", "value": "bob", "aggregate_by": "a b"}
        )
    with pytest.raises(ConnectorError, match="invalid arguments: by"):
        await conn.invoke("count_by", {**base, "by": "*"})


async def test_an_aggregation_on_a_text_field_is_a_clear_error(conn: ElasticsearchSiem) -> None:
    with pytest.raises(ConnectorError) as info:
        await conn.invoke(
            "search",
            {
                "entity_type": "user",
                "value": "bob.okafor",
                "around": START.isoformat(),
                "aggregate_by": "message",
            },
        )
    assert str(info.value).startswith(f"elasticsearch: search of {INDEX} failed (400 ")
    assert "Fielddata is disabled on [message]" in str(info.value)


async def test_unreachable_cluster_and_timeouts_are_connector_errors(
    make_conn: Callable[..., ElasticsearchSiem],
) -> None:
    args = {"entity_type": "host", "value": "srv-dc-01", "around": START.isoformat()}
    unreachable = ElasticsearchSiem(
        ElasticsearchConfig(hosts=["http://127.0.0.1:9"], max_retries=0)
    )
    slow = make_conn(index=INDEX, request_timeout=0.001, max_retries=0)
    try:
        with pytest.raises(
            ConnectorError, match=r"^elasticsearch: cannot connect to http://127\.0\.0\.1:9"
        ):
            await unreachable.invoke("search", args)
        with pytest.raises(ConnectorError, match=r"within 0\.001s \(request_timeout\)$"):
            await slow.invoke("search", args)
    finally:
        await unreachable.aclose()
        await slow.aclose()


# --- credentials: 401 with rotation, 403; never the secret ---------------------------------------

ES_HEADERS = {"X-Elastic-Product": "Elasticsearch"}
EMPTY_ANSWER = {
    "took": 1,
    "timed_out": False,
    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
    "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []},
}


def _security_error(status: int, kind: str, reason: str) -> Reply:
    body = {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }
    return Reply(
        status, body, headers={**ES_HEADERS, "WWW-Authenticate": 'ApiKey realm="security"'}
    )


async def test_a_rotated_api_key_is_picked_up_after_a_401_and_never_shown(
    vendor_server: VendorServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "es_api_key"
    old_key, new_key = "b2xkLWlkOm9sZC1zZWNyZXQtdmFsdWU=", "bmV3LWlkOm5ldy1zZWNyZXQtdmFsdWU="
    key_file.write_text(old_key)

    rotate = False

    def answer(request: RecordedRequest) -> Reply:
        if request.header("authorization") == f"ApiKey {new_key}":
            return Reply(200, EMPTY_ANSWER, headers=ES_HEADERS)
        if rotate:  # the key is rotated while this request, made with the old one, is refused
            key_file.write_text(new_key)
        return _security_error(
            401, "security_exception", "unable to authenticate with provided credentials"
        )

    vendor_server.route("POST", f"/{INDEX}/_search", answer)
    conn = ElasticsearchSiem(
        ElasticsearchConfig(
            hosts=[vendor_server.url], index=INDEX, api_key=f"file:{key_file}", max_retries=0
        )
    )
    args = {"entity_type": "user", "value": "alice.nguyen", "around": START.isoformat()}
    try:
        with pytest.raises(ConnectorError) as info:
            await conn.invoke("search", args)
        message = str(info.value)
        assert message == (
            f"elasticsearch: authentication failed (401): check connectors.elasticsearch."
            f"api_key (file:{key_file})"
        )
        assert old_key not in message
        assert conn.secret_values() == (old_key,)
        # the re-read found the same key, so it was not sent again
        assert len(vendor_server.calls("POST", f"/{INDEX}/_search")) == 1

        rotate = True
        out = await conn.invoke("search", args)
        assert out["total"] == 0
        calls = vendor_server.calls("POST", f"/{INDEX}/_search")
        assert [c.header("authorization") for c in calls] == [
            f"ApiKey {old_key}",
            f"ApiKey {old_key}",
            f"ApiKey {new_key}",  # re-read after the 401, retried once
        ]
        assert set(conn.secret_values()) == {old_key, new_key}
        assert calls[-1].json()["query"]["bool"]["filter"][1]["bool"]["should"][0] == {
            "term": {"user.name": {"value": "alice.nguyen", "case_insensitive": True}}
        }
    finally:
        await conn.aclose()


async def test_a_403_names_the_missing_privilege_without_the_password(
    vendor_server: VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pa55-w0rd-for-soc-reader"
    monkeypatch.setenv("ES_SOC_PASSWORD", password)
    vendor_server.route(
        "POST",
        f"/{INDEX}/_search",
        _security_error(
            403,
            "security_exception",
            "action [indices:data/read/search] is unauthorized for user [soc-reader] "
            f"on indices [{INDEX}]",
        ),
    )
    conn = ElasticsearchSiem(
        ElasticsearchConfig(
            hosts=[vendor_server.url],
            index=INDEX,
            username="soc-reader",
            password="env:ES_SOC_PASSWORD",
            max_retries=0,
        )
    )
    try:
        with pytest.raises(ConnectorError) as info:
            await conn.invoke(
                "search", {"entity_type": "host", "value": "dc01", "around": START.isoformat()}
            )
    finally:
        await conn.aclose()
    message = str(info.value)
    assert message.startswith(
        f"elasticsearch: not authorised (403) to search {INDEX}: the credential needs"
    )
    assert "is unauthorized for user [soc-reader]" in message
    assert password not in message
    (call,) = vendor_server.calls("POST", f"/{INDEX}/_search")
    assert (call.header("authorization") or "").startswith("Basic ")


# --- end to end: the real pipeline records the search as evidence ------------------------------


async def test_pipeline_records_elasticsearch_search_as_ok_evidence(
    seeded: str, tmp_path: Path, clock: Clock
) -> None:
    settings = load_settings(
        store=tmp_path / "soc-agent.db",
        shipped_playbooks=False,
        playbooks=[ES_FIXTURES / "siem-host-activity.yaml"],
        connectors={
            "threat_intel": {"path": str(FIXTURES / "intel.yaml")},
            "asset_inventory": {"path": str(FIXTURES / "inventory.yaml")},
            "event_store": {"path": str(FIXTURES / "events.jsonl")},
            "containment": {"journal": str(tmp_path / "containment.jsonl")},
            "notifier": {"outbox": str(tmp_path / "notifications.jsonl")},
            "elasticsearch": {"hosts": [seeded], "index": INDEX},
        },
        grants={**DEFAULT_GRANTS, "elasticsearch": ["siem:read"]},
        data_dirs=[FIXTURES],
        policy=BASE_POLICY,
    )
    alert_time = datetime(2026, 11, 19, 12, 0, tzinfo=START.tzinfo)
    expected = _expected("host", "srv-dc-01", alert_time, 60)
    assert len(expected) > 5
    failures = Counter(
        e["source"]["ip"]
        for e in _expected(
            "host", "srv-dc-01", alert_time, 60, category="authentication", outcome="failure"
        )
    )
    async with open_components(settings, clock=clock) as components:
        report = await run_embedded(components, [ES_FIXTURES / "crowdstrike_srv-dc-01.json"])
        assert report.dead_letters == []
        (decision,) = await components.store.list_decisions()
        assert decision.investigation_id is not None
        investigation = await components.store.get_investigation(decision.investigation_id)
        assert investigation is not None
        evidence = {e.step: e for e in investigation.evidence}
        activity = evidence["host_activity"]
        assert (activity.connector, activity.capability, activity.status) == (
            "elasticsearch",
            "search",
            EvidenceStatus.OK,
        )
        assert activity.result["total"] == len(expected)
        assert _ids(activity.result["events"]) == _ids(expected)[:5]
        assert activity.result["buckets"] == dict(Counter(e["user"]["name"] for e in expected))
        failed = evidence["failed_logons"]
        assert failed.status is EvidenceStatus.OK
        assert (failed.result["total"], failed.result["buckets"]) == (
            sum(failures.values()),
            dict(failures),
        )
        (audited,) = await components.audit.list(action_prefix="connector.")
        # The investigation's read-only queries are one entry (audit_queries: summary);
        # the two steps run concurrently, so either may be listed first.
        assert (audited.action, audited.outcome) == ("connector.queries", "ok")
        assert audited.subject == audited.evidence_ref and audited.subject.startswith("inv-")
        calls = audited.details["calls"]
        assert sorted((c["connector"], c["capability"]) for c in calls) == [
            ("elasticsearch", "count_by"),
            ("elasticsearch", "search"),
        ]
