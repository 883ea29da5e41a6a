"""MISP attribute search over real HTTP, against answers recorded in the documented shapes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import VendorHTTPError
from soc_agent_connectors.misp import Misp, MispConfig

from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConnectorError, ScopeDeniedError
from soc_agent.gateway import Gateway
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "misp"
API_KEY = "Zq8mK2vR5tX9wB3nF6hJ1cL4pD7sG0yA2eU5iO8k"  # MISP keys: 40 characters
IP = "203.0.113.45"
SEARCH = "/attributes/restSearch"
Make = Callable[..., Misp]


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def by_page(request: RecordedRequest) -> Reply:
    """MISP paging: `page` N of `limit` rows; the recording has three matches."""
    page = request.json()["page"]
    names = {1: "restsearch_page1.json", 2: "restsearch_page2.json"}
    return Reply(200, recorded(names.get(page, "restsearch_empty.json")))


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("MISP_KEY", API_KEY)
    built: list[Misp] = []

    def build(**config: Any) -> Misp:
        config.setdefault("base_url", vendor_server.url)
        config.setdefault("credentials", "env:MISP_KEY")
        conn = Misp(MispConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def test_registered_under_its_entry_point() -> None:
    assert entry_points(group="soc_agent.connectors")["misp"].load() is Misp


async def test_search_sends_the_documented_query_and_maps_matches(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", SEARCH, Reply(200, recorded("restsearch_page1.json")))
    out = await make().invoke("search_attributes", {"value": IP, "type": "ip-dst", "limit": 2})

    (request,) = vendor_server.calls()
    assert request.json() == {
        "returnFormat": "json",
        "value": IP,
        "limit": 2,
        "page": 1,
        "type": "ip-dst",
    }
    assert request.header("authorization") == API_KEY  # the bare key, no scheme
    assert request.header("accept") == "application/json"
    assert request.header("content-type") == "application/json"
    assert out["value"] == IP
    assert out["found"] is True
    assert out["event_ids"] == ["1207", "1219"]
    assert out["categories"] == ["Network activity"]
    assert out["to_ids"] is True
    assert out["truncated"] is True  # a full page at the limit: more may exist
    first, second = out["matches"]
    assert first == {
        "id": "48213",
        "event_id": "1207",
        "event_uuid": "5f3c9a1e-8b2d-4e6f-9a0b-1c2d3e4f5a6b",
        "event_info": "Qakbot C2 infrastructure - November 2026",
        "category": "Network activity",
        "type": "ip-dst",
        "value": IP,
        "to_ids": True,
        "comment": "C2 contacted by loader stage",
        "timestamp": "2026-11-16T08:00:00Z",
        "tags": ["tlp:amber", 'misp-galaxy:malpedia="QakBot"', "kill-chain:Command and Control"],
    }
    assert (second["type"], second["value"], second["tags"]) == (
        "ip-dst|port",
        f"{IP}|443",
        ["tlp:green"],
    )


async def test_search_pages_until_a_short_page(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("POST", SEARCH, by_page)
    out = await make(page_size=2).invoke("search_attributes", {"value": IP, "limit": 10})
    assert [(r.json()["page"], r.json()["limit"]) for r in vendor_server.calls()] == [
        (1, 2),
        (2, 2),
    ]
    assert "type" not in vendor_server.calls()[0].json()
    assert [m["id"] for m in out["matches"]] == ["48213", "48977", "51022"]
    assert out["event_ids"] == ["1207", "1219", "1244"]
    assert out["categories"] == ["Network activity", "External analysis"]
    assert out["matches"][2]["to_ids"] is False
    assert out["matches"][2]["tags"] == []
    assert out["truncated"] is False


async def test_search_stops_at_the_callers_limit(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("POST", SEARCH, by_page)
    out = await make(page_size=2).invoke("search_attributes", {"value": IP, "limit": 3})
    assert [r.json()["page"] for r in vendor_server.calls()] == [1, 2]
    assert len(out["matches"]) == 3
    assert out["truncated"] is False  # page 2 was short: there is nothing more


async def test_search_pages_are_bounded(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("POST", SEARCH, Reply(200, recorded("restsearch_page1.json")))
    out = await make(page_size=2, max_pages=3).invoke(
        "search_attributes", {"value": IP, "limit": 100}
    )
    assert len(vendor_server.calls()) == 3
    assert len(out["matches"]) == 6 and out["truncated"] is True


async def test_no_match_is_not_found(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("POST", SEARCH, Reply(200, recorded("restsearch_empty.json")))
    out = await make().invoke("search_attributes", {"value": "198.51.100.250", "to_ids": True})
    assert vendor_server.calls()[0].json()["to_ids"] is True
    assert out == {
        "value": "198.51.100.250",
        "found": False,
        "matches": [],
        "event_ids": [],
        "categories": [],
        "to_ids": False,
        "truncated": False,
    }


async def test_an_answer_without_the_attribute_list_is_an_error(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", SEARCH, Reply(200, {"Event": []}))
    with pytest.raises(ConnectorError, match=r"no response\.Attribute list"):
        await make().invoke("search_attributes", {"value": IP})


@pytest.mark.parametrize(
    ("status", "fixture", "message"),
    [
        (401, "error_403_auth.json", "Authentication failed"),
        (403, "error_403_auth.json", "Authentication failed"),  # what MISP sends for a bad key
        (404, "error_404.json", "HTTP 404: Not Found"),
    ],
)
async def test_client_errors_fail_once_without_the_key(
    make: Make,
    vendor_server: VendorServer,
    caplog: pytest.LogCaptureFixture,
    status: int,
    fixture: str,
    message: str,
) -> None:
    vendor_server.route("POST", SEARCH, Reply(status, recorded(fixture)))
    with caplog.at_level(logging.DEBUG), pytest.raises(VendorHTTPError, match=message) as caught:
        await make().invoke("search_attributes", {"value": IP})
    assert caught.value.status_code == status
    assert len(vendor_server.calls()) == 1
    assert caplog.records
    assert API_KEY not in str(caught.value) and API_KEY not in caplog.text


async def test_rate_limited_search_is_retried_after_retry_after(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "POST",
        SEARCH,
        Reply(429, recorded("error_429.json"), headers={"Retry-After": "5"}),
        Reply(200, recorded("restsearch_page2.json")),
    )
    out = await make().invoke("search_attributes", {"value": IP})
    assert out["event_ids"] == ["1244"]
    assert fake_time.sleeps == [5.0]  # retried although POST: the capability is idempotent


async def test_server_error_then_success_is_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "POST",
        SEARCH,
        Reply(500, recorded("error_500.json")),
        Reply(200, recorded("restsearch_page2.json")),
    )
    out = await make().invoke("search_attributes", {"value": IP})
    assert out["found"] is True
    assert len(vendor_server.calls()) == 2
    assert fake_time.sleeps == [0.5]


async def test_slow_answer_times_out_after_a_retry(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("POST", SEARCH, Reply(200, recorded("restsearch_page2.json"), delay=0.5))
    with pytest.raises(ConnectorError, match=r"POST /attributes/restSearch: timed out after 0.1s"):
        await make(timeout_seconds=0.1, max_retries=1).invoke("search_attributes", {"value": IP})
    assert len(vendor_server.calls()) == 2


async def test_repeated_search_is_served_from_the_cache(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", SEARCH, Reply(200, recorded("restsearch_page2.json")))
    conn = make()
    first = await conn.invoke("search_attributes", {"value": IP})
    assert await conn.invoke("search_attributes", {"value": f"{IP} "}) == first
    assert len(vendor_server.calls()) == 1


async def test_gateway_denies_an_ungranted_search_and_audits_it(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        gateway = Gateway({"misp": make()}, {"misp": ["intel:submit"]}, audit)
        with pytest.raises(ScopeDeniedError, match="intel:read"):
            await gateway.call("misp", "search_attributes", {"value": IP}, ref="inv-3")
        (event,) = await audit.list(limit=10)
    finally:
        audit.close()
    assert (event.action, event.subject, event.outcome) == (
        "connector.denied",
        "misp.search_attributes",
        "denied",
    )
    assert event.details["missing_scopes"] == ["intel:read"]
    assert vendor_server.calls() == []
