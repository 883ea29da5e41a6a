"""The official async Elasticsearch client against the real Maven-built node.

These are the operations the Elasticsearch SIEM connector and store are built
from: an ECS mapping, bulk indexing, searches by host/user/IP over time
ranges, terms and date-histogram aggregations, search_after paging, and
optimistic concurrency. Every expectation is computed from the indexed events.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError
from elasticsearch.helpers import async_bulk

from tests.infra.elasticsearch import ES_VERSION
from tests.infra.fixtures import needs
from tests.integration.infra.security_events import (
    ECS_MAPPING,
    START,
    WINDOW,
    generate_events,
    parse_ts,
)

pytestmark = needs("elasticsearch")

INDEX = "logs-security-test"
EVENTS = generate_events(500)


async def _seed(url: str) -> None:
    async with AsyncElasticsearch(url, request_timeout=60) as es:
        await es.options(ignore_status=404).indices.delete(index=INDEX)
        await es.indices.create(
            index=INDEX,
            settings={"number_of_shards": 1, "number_of_replicas": 0},
            mappings=ECS_MAPPING,
        )
        actions = (
            {"_index": INDEX, "_id": event["event"]["id"], "_source": event} for event in EVENTS
        )
        indexed, errors = await async_bulk(es, actions, chunk_size=200, refresh="wait_for")
        assert (indexed, errors) == (len(EVENTS), [])


@pytest.fixture(scope="module")
def seeded(elasticsearch_url: str) -> str:
    """The events indexed once per module (own event loop: the client closes within it)."""
    asyncio.run(_seed(elasticsearch_url))
    return elasticsearch_url


@pytest.fixture
async def es(seeded: str) -> AsyncIterator[AsyncElasticsearch]:
    async with AsyncElasticsearch(seeded, request_timeout=30) as client:
        yield client


def _ids(hits: list[dict[str, Any]]) -> list[str]:
    return [hit["_id"] for hit in hits]


def _in_window(event: dict[str, Any], hours_from: int, hours_to: int) -> bool:
    ts = parse_ts(event["@timestamp"])
    return START + timedelta(hours=hours_from) <= ts < START + timedelta(hours=hours_to)


def _range(hours_from: int, hours_to: int) -> dict[str, Any]:
    return {
        "range": {
            "@timestamp": {
                "gte": (START + timedelta(hours=hours_from)).isoformat(),
                "lt": (START + timedelta(hours=hours_to)).isoformat(),
            }
        }
    }


async def test_client_accepts_the_server_as_elasticsearch(es: AsyncElasticsearch) -> None:
    health = await es.cluster.health(wait_for_status="yellow", timeout="10s")
    assert health.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert health["status"] in {"green", "yellow"}
    assert health["number_of_nodes"] == 1
    nodes = await es.nodes.info(metric="plugins")
    (node,) = nodes["nodes"].values()
    assert node["version"] == ES_VERSION
    assert [module["name"] for module in node["modules"]] == ["transport-netty4"]


async def test_ecs_mapping_is_strict_and_typed(es: AsyncElasticsearch) -> None:
    mapping = (await es.indices.get_mapping(index=INDEX))[INDEX]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["@timestamp"]["type"] == "date"
    assert mapping["properties"]["source"]["properties"]["ip"]["type"] == "ip"
    with pytest.raises(Exception, match="strict_dynamic_mapping_exception"):
        await es.index(index=INDEX, document={"@timestamp": "2026-11-19T00:00:00Z", "x": 1})
    assert (await es.count(index=INDEX))["count"] == len(EVENTS)


async def test_search_by_host_over_a_time_range(es: AsyncElasticsearch) -> None:
    host, hours = "srv-dc-01", (6, 12)
    expected = [
        e["event"]["id"] for e in EVENTS if e["host"]["name"] == host and _in_window(e, *hours)
    ]
    assert expected, "the fixture data must contain matches"
    result = await es.search(
        index=INDEX,
        query={"bool": {"filter": [{"term": {"host.name": host}}, _range(*hours)]}},
        sort=[{"@timestamp": "asc"}],
        size=500,
        track_total_hits=True,
    )
    assert result["hits"]["total"] == {"value": len(expected), "relation": "eq"}
    assert _ids(result["hits"]["hits"]) == expected


async def test_search_failed_logons_for_a_user(es: AsyncElasticsearch) -> None:
    user = "administrator"
    expected = {
        e["event"]["id"]
        for e in EVENTS
        if e["user"]["name"] == user and e["event"]["action"] == "logon-failed"
    }
    assert expected
    result = await es.search(
        index=INDEX,
        query={
            "bool": {
                "filter": [
                    {"term": {"user.name": user}},
                    {"term": {"event.category": "authentication"}},
                    {"term": {"event.outcome": "failure"}},
                ]
            }
        },
        size=500,
    )
    assert set(_ids(result["hits"]["hits"])) == expected


async def test_search_by_source_ip_and_cidr(es: AsyncElasticsearch) -> None:
    external = "203.0.113.45"
    single = await es.search(index=INDEX, query={"term": {"source.ip": external}}, size=500)
    assert set(_ids(single["hits"]["hits"])) == {
        e["event"]["id"] for e in EVENTS if e["source"]["ip"] == external
    }
    network = ipaddress.ip_network("10.20.5.0/24")
    in_cidr = await es.count(index=INDEX, query={"term": {"source.ip": str(network)}})
    assert in_cidr["count"] == sum(
        ipaddress.ip_address(e["source"]["ip"]) in network for e in EVENTS
    )


async def test_terms_aggregation_ranks_hosts_by_failed_logons(es: AsyncElasticsearch) -> None:
    failures = Counter(e["host"]["name"] for e in EVENTS if e["event"]["action"] == "logon-failed")
    result = await es.search(
        index=INDEX,
        size=0,
        query={"term": {"event.action": "logon-failed"}},
        aggs={
            "hosts": {"terms": {"field": "host.name", "size": 10}},
            "sources": {"cardinality": {"field": "source.ip"}},
        },
    )
    buckets = {b["key"]: b["doc_count"] for b in result["aggregations"]["hosts"]["buckets"]}
    assert buckets == dict(failures)
    assert result["aggregations"]["sources"]["value"] == len(
        {e["source"]["ip"] for e in EVENTS if e["event"]["action"] == "logon-failed"}
    )


async def test_date_histogram_counts_events_per_hour(es: AsyncElasticsearch) -> None:
    hours = int(WINDOW.total_seconds() // 3600)
    per_hour = Counter(
        int((parse_ts(e["@timestamp"]) - START).total_seconds() // 3600) for e in EVENTS
    )
    result = await es.search(
        index=INDEX,
        size=0,
        aggs={
            "per_hour": {
                "date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": "1h",
                    "min_doc_count": 0,
                    "extended_bounds": {
                        "min": START.isoformat(),
                        "max": (START + WINDOW - timedelta(hours=1)).isoformat(),
                    },
                },
                "aggs": {"outcomes": {"terms": {"field": "event.outcome"}}},
            }
        },
    )
    buckets = result["aggregations"]["per_hour"]["buckets"]
    assert len(buckets) == hours
    assert [b["doc_count"] for b in buckets] == [per_hour.get(h, 0) for h in range(hours)]
    assert parse_ts(buckets[0]["key_as_string"]) == START
    failures = sum(
        sub["doc_count"]
        for b in buckets
        for sub in b["outcomes"]["buckets"]
        if sub["key"] == "failure"
    )
    assert failures == sum(e["event"]["outcome"] == "failure" for e in EVENTS)


async def test_search_after_pages_through_everything_once(es: AsyncElasticsearch) -> None:
    seen: list[str] = []
    after: list[Any] | None = None
    pages = 0
    while True:
        page = await es.search(
            index=INDEX,
            size=120,
            sort=[{"@timestamp": "asc"}, {"event.id": "asc"}],
            search_after=after,
            source=False,
        )
        hits = page["hits"]["hits"]
        if not hits:
            break
        pages += 1
        seen.extend(_ids(hits))
        after = hits[-1]["sort"]
    assert pages == 5
    assert seen == [e["event"]["id"] for e in EVENTS]


async def test_optimistic_concurrency_rejects_a_stale_write(es: AsyncElasticsearch) -> None:
    """A proposal approved twice from the same read: the second write must get a 409."""
    index = "soc-proposals-test"
    await es.options(ignore_status=404).indices.delete(index=index)
    proposal = {
        "id": "prop-1",
        "action": "isolate_host",
        "target": "ws-fin-014",
        "status": "pending",
    }
    created = await es.index(
        index=index, id="prop-1", document=proposal, op_type="create", refresh="wait_for"
    )
    with pytest.raises(ConflictError) as duplicate:
        await es.index(index=index, id="prop-1", document=proposal, op_type="create")
    assert duplicate.value.meta.status == 409

    read = await es.get(index=index, id="prop-1")
    assert (read["_seq_no"], read["_primary_term"]) == (
        created["_seq_no"],
        created["_primary_term"],
    )
    approved = await es.index(
        index=index,
        id="prop-1",
        document={**read["_source"], "status": "approved", "by": "analyst-a"},
        if_seq_no=read["_seq_no"],
        if_primary_term=read["_primary_term"],
    )
    assert approved["result"] == "updated"
    with pytest.raises(ConflictError) as stale:
        await es.index(
            index=index,
            id="prop-1",
            document={**read["_source"], "status": "rejected", "by": "analyst-b"},
            if_seq_no=read["_seq_no"],
            if_primary_term=read["_primary_term"],
        )
    assert stale.value.meta.status == 409
    assert stale.value.body["error"]["type"] == "version_conflict_engine_exception"
    final = await es.get(index=index, id="prop-1")
    assert final["_source"]["status"] == "approved"
    assert final["_seq_no"] == approved["_seq_no"]

    with pytest.raises(NotFoundError):
        await es.get(index=index, id="prop-missing")
