"""The coalescing client against the real node: calls of one loop turn share a request,
and every caller gets exactly what it would have got alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch, BadRequestError

from soc_agent.store.elasticsearch_coalescing import CoalescingElasticsearch
from tests.infra.fixtures import needs
from tests.integration.store.counting import CountingClient

pytestmark = needs("elasticsearch")


class _Counting(CoalescingElasticsearch, CountingClient):
    """The coalescing client, counting the HTTP requests it really sends."""


@pytest.fixture
async def client(elasticsearch_url: str) -> AsyncIterator[_Counting]:
    made = _Counting(elasticsearch_url, request_timeout=30)
    yield made
    await made.close()


@pytest.fixture
async def indices(es: AsyncElasticsearch, prefix: str) -> tuple[str, str]:
    first, second = f"{prefix}-one", f"{prefix}-two"
    for name in (first, second):
        await es.indices.create(index=name, settings={"number_of_replicas": 0})
    await es.index(index=first, id="a", document={"value": "1", "other": "x"})
    await es.index(index=second, id="b", document={"value": "2"})
    return first, second


def _items(resp: Any) -> list[tuple[str, int]]:
    return [(next(iter(i)), next(iter(i.values()))["status"]) for i in resp["items"]]


async def test_bulks_issued_together_go_as_one_request_and_answer_each_its_own(
    client: _Counting, es: AsyncElasticsearch, indices: tuple[str, str]
) -> None:
    first, second = indices
    creates = [{"create": {"_index": first, "_id": "a"}}, {"value": "again"}]  # exists: 409
    writes = [
        {"index": {"_index": second, "_id": "c"}},
        {"value": "3"},
        {"delete": {"_index": second, "_id": "b"}},
        {"update": {"_index": first, "_id": "a"}},
        {"doc": {"other": "y"}},
    ]
    refused, done = await asyncio.gather(
        client.bulk(operations=creates), client.bulk(operations=writes)
    )
    assert client.sent("PUT", "/_bulk") == 1
    assert (refused["errors"], _items(refused)) == (True, [("create", 409)])
    assert (done["errors"], _items(done)) == (
        False,
        [("index", 201), ("delete", 200), ("update", 200)],
    )
    assert (await es.get(index=first, id="a"))["_source"] == {"value": "1", "other": "y"}
    assert not (await es.exists(index=second, id="b"))


async def test_mgets_issued_together_go_as_one_request_in_either_form(
    client: _Counting, indices: tuple[str, str]
) -> None:
    first, second = indices
    by_docs, by_ids = await asyncio.gather(
        client.mget(docs=[{"_index": second, "_id": "b"}, {"_index": first, "_id": "zz"}]),
        client.mget(index=first, ids=["a"], source=["value"]),
    )
    assert client.sent("POST", "/_mget") == 1
    assert [(d["_id"], d["found"]) for d in by_docs["docs"]] == [("b", True), ("zz", False)]
    assert by_ids["docs"][0]["_source"] == {"value": "1"}  # its own source filter


async def test_a_call_alone_is_sent_as_it_was_asked(
    client: _Counting, indices: tuple[str, str]
) -> None:
    first, _ = indices
    resp = await client.mget(index=first, ids=["a"])
    assert client.requests == [("POST", f"/{first}/_mget")]
    assert resp["docs"][0]["_source"] == {"value": "1", "other": "x"}


async def test_a_callers_failure_is_its_own(
    client: _Counting, indices: tuple[str, str], prefix: str
) -> None:
    """A read of an absent index is answered for its caller as it would be alone, and a
    bulk the node refuses as a whole fails its caller only."""
    first, _ = indices
    alone = await client.mget(index=f"{prefix}-absent", ids=["a"])
    missing, found = await asyncio.gather(
        client.mget(index=f"{prefix}-absent", ids=["a"]),
        client.mget(index=first, ids=["a"]),
    )
    assert missing["docs"] == alone["docs"] and "error" in missing["docs"][0]
    assert found["docs"][0]["found"]
    client.requests.clear()
    bad, good = await asyncio.gather(
        client.bulk(operations=[{"index": {"_index": first, "bogus": 1}}, {"value": "1"}]),
        client.bulk(operations=[{"index": {"_index": first, "_id": "d"}}, {"value": "4"}]),
        return_exceptions=True,
    )
    assert isinstance(bad, BadRequestError)  # the node refused the whole merged request
    assert not isinstance(good, BaseException) and _items(good) == [("index", 201)]
    assert client.sent("PUT", "/_bulk") == 3  # merged, then each alone


async def test_a_cancelled_caller_does_not_cancel_the_others(
    client: _Counting, es: AsyncElasticsearch, indices: tuple[str, str]
) -> None:
    first, _ = indices
    gone = asyncio.ensure_future(
        client.bulk(operations=[{"index": {"_index": first, "_id": "e"}}, {"value": "5"}])
    )
    kept = asyncio.ensure_future(
        client.bulk(operations=[{"index": {"_index": first, "_id": "f"}}, {"value": "6"}])
    )
    await asyncio.sleep(0)  # both queued; the request goes out at the end of this turn
    gone.cancel()
    assert _items(await kept) == [("index", 201)]
    assert client.sent("PUT", "/_bulk") == 1
    assert (await es.get(index=first, id="e"))["found"]  # the cancelled write still landed
