"""AbuseIPDB API v2 over real HTTP, against answers recorded in the documented shapes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import VendorHTTPError
from soc_agent_connectors.abuseipdb import AbuseIpDb, AbuseIpDbConfig

from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConnectorError, ScopeDeniedError
from soc_agent.gateway import Gateway
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "abuseipdb"
API_KEY = "3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e"
IP = "203.0.113.45"
CHECK = "/api/v2/check"
Make = Callable[..., AbuseIpDb]


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("ABUSEIPDB_API_KEY", API_KEY)
    built: list[AbuseIpDb] = []

    def build(**config: Any) -> AbuseIpDb:
        config.setdefault("base_url", f"{vendor_server.url}/api/v2")
        config.setdefault("credentials", "env:ABUSEIPDB_API_KEY")
        config.setdefault("rate_limit_per_second", None)
        conn = AbuseIpDb(AbuseIpDbConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def test_registered_under_its_entry_point() -> None:
    assert entry_points(group="soc_agent.connectors")["abuseipdb"].load() is AbuseIpDb


async def test_check_ip_maps_a_heavily_reported_address(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_malicious.json")))
    out = await make().invoke("check_ip", {"ip": IP})

    (request,) = vendor_server.calls()
    assert request.query == {"ipAddress": [IP], "maxAgeInDays": ["90"]}
    assert request.header("key") == API_KEY
    assert request.header("accept") == "application/json"
    assert request.header("authorization") is None
    assert out == {
        "indicator": IP,
        "type": "ip",
        "found": True,
        "verdict": "malicious",
        "score": 100,
        "sources": ["abuseipdb"],
        "tags": ["Data Center/Web Hosting/Transit"],
        "link": f"https://www.abuseipdb.com/check/{IP}",
        "provider": "abuseipdb",
        "abuse_confidence_score": 100,
        "total_reports": 1873,
        "distinct_reporters": 412,
        "country_code": "NL",
        "isp": "Example Hosting B.V.",
        "usage_type": "Data Center/Web Hosting/Transit",
        "domain": "examplehosting.example",
        "is_whitelisted": False,
        "is_tor": False,
        "last_reported_at": "2026-11-20T08:41:07Z",
    }


async def test_mid_confidence_tor_exit_is_suspicious(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_suspicious_tor.json")))
    out = await make().invoke("check_ip", {"ip": "198.51.100.77", "max_age_in_days": 30})
    assert vendor_server.calls()[0].query["maxAgeInDays"] == ["30"]
    assert out["verdict"] == "suspicious"
    assert out["abuse_confidence_score"] == 42
    assert out["score"] == 43  # 42 sits a third of the way from 25 to 75: 30 + 13
    assert out["tags"] == ["tor-exit", "Reserved"]
    assert out["is_tor"] is True
    assert (out["total_reports"], out["distinct_reporters"]) == (96, 31)


async def test_whitelisted_address_is_benign(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_whitelisted.json")))
    out = await make().invoke("check_ip", {"ip": "192.0.2.53"})
    assert (out["found"], out["verdict"], out["score"]) == (True, "benign", 0)
    assert out["is_whitelisted"] is True
    assert out["total_reports"] == 14


async def test_unreported_address_is_unknown_not_benign(
    make: Make, vendor_server: VendorServer
) -> None:
    ipv6 = "2001:db8:85a3::8a2e:370:7334"
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_unreported.json")))
    out = await make().invoke("check_ip", {"ip": "2001:DB8:85A3:0::8A2E:370:7334"})
    assert vendor_server.calls()[0].query["ipAddress"] == [ipv6]  # canonical, URL-encoded
    assert (out["indicator"], out["found"], out["verdict"], out["score"]) == (
        ipv6,
        False,
        "unknown",
        0,
    )
    assert out["sources"] == []
    assert out["last_reported_at"] is None


async def test_invalid_address_never_reaches_the_vendor(
    make: Make, vendor_server: VendorServer
) -> None:
    with pytest.raises(ConnectorError, match="IPv4 or IPv6"):
        await make().invoke("check_ip", {"ip": "203.0.113.300"})
    assert vendor_server.calls() == []


@pytest.mark.parametrize(
    ("status", "fixture", "message"),
    [
        (401, "error_401.json", "Authentication failed"),
        (403, "error_403.json", "subscription does not permit"),
        (404, None, "HTTP 404"),
        (422, "error_422_max_age.json", "max age in days must be between 1 and 365"),
    ],
)
async def test_client_errors_fail_once_with_the_vendor_detail_and_no_key(
    make: Make,
    vendor_server: VendorServer,
    caplog: pytest.LogCaptureFixture,
    status: int,
    fixture: str | None,
    message: str,
) -> None:
    reply = (
        Reply(status, recorded(fixture))
        if fixture
        else Reply(status, body="<html><body>404 Not Found</body></html>")
    )
    vendor_server.route("GET", CHECK, reply)
    with caplog.at_level(logging.DEBUG), pytest.raises(VendorHTTPError, match=message) as caught:
        await make().invoke("check_ip", {"ip": IP})
    assert caught.value.status_code == status
    assert len(vendor_server.calls()) == 1
    assert caplog.records
    assert API_KEY not in str(caught.value) and API_KEY not in caplog.text


async def test_rate_limited_check_waits_for_retry_after(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        CHECK,
        Reply(
            429,
            recorded("error_429.json"),
            headers={
                "Retry-After": "29",
                "X-RateLimit-Limit": "1000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "1795737600",
            },
        ),
        Reply(
            200,
            recorded("check_malicious.json"),
            headers={"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "999"},
        ),
    )
    out = await make().invoke("check_ip", {"ip": IP})
    assert out["verdict"] == "malicious"
    assert fake_time.sleeps == [29.0]
    assert len(vendor_server.calls()) == 2


async def test_daily_quota_exhausted_fails_fast_instead_of_waiting_hours(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        CHECK,
        Reply(
            429,
            recorded("error_429.json"),
            headers={
                "Retry-After": "32400",
                "X-RateLimit-Limit": "1000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "1795737600",
            },
        ),
    )
    with pytest.raises(VendorHTTPError, match="Daily rate limit of 1000 requests exceeded") as c:
        await make().invoke("check_ip", {"ip": IP})
    assert "exceeds retry_after_max_seconds" in str(c.value)
    assert c.value.status_code == 429
    assert fake_time.sleeps == []
    assert len(vendor_server.calls()) == 1


async def test_unavailable_then_success_is_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        CHECK,
        Reply(503, recorded("error_503.json")),
        Reply(200, recorded("check_whitelisted.json")),
    )
    out = await make().invoke("check_ip", {"ip": "192.0.2.53"})
    assert out["verdict"] == "benign"
    assert len(vendor_server.calls()) == 2
    assert fake_time.sleeps == [0.5]


async def test_slow_answer_times_out(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_malicious.json"), delay=0.5))
    with pytest.raises(ConnectorError, match=r"GET /api/v2/check\?.* timed out after 0.1s"):
        await make(timeout_seconds=0.1, max_retries=0).invoke("check_ip", {"ip": IP})
    assert len(vendor_server.calls()) == 1


async def test_repeated_check_is_served_from_the_cache(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_malicious.json")))
    conn = make()
    first = await conn.invoke("check_ip", {"ip": IP})
    assert await conn.invoke("check_ip", {"ip": IP}) == first
    await conn.invoke("check_ip", {"ip": IP, "max_age_in_days": 7})  # another question
    assert [r.query["maxAgeInDays"] for r in vendor_server.calls()] == [["90"], ["7"]]


async def test_default_rate_limit_spreads_the_daily_quota(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ABUSEIPDB_API_KEY", API_KEY)
    vendor_server.route("GET", CHECK, Reply(200, recorded("check_malicious.json")))
    config = AbuseIpDbConfig(
        base_url=f"{vendor_server.url}/api/v2", credentials="env:ABUSEIPDB_API_KEY"
    )
    conn = AbuseIpDb(config, runtime=fake_time.runtime())
    try:
        for i in range(21):  # a burst of 20, then one every 86.4 s (1,000 a day)
            await conn.invoke("check_ip", {"ip": f"198.51.100.{i}"})
    finally:
        await conn.aclose()
    assert fake_time.sleeps == [86.4]


async def test_gateway_denies_an_ungranted_check_and_audits_it(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        gateway = Gateway({"abuseipdb": make()}, {}, audit)
        with pytest.raises(ScopeDeniedError, match="intel:read"):
            await gateway.call("abuseipdb", "check_ip", {"ip": IP}, reason="src_intel")
        (event,) = await audit.list(limit=10)
    finally:
        audit.close()
    assert (event.action, event.subject, event.outcome) == (
        "connector.denied",
        "abuseipdb.check_ip",
        "denied",
    )
    assert event.details == {"missing_scopes": ["intel:read"], "kind": "query"}
    assert vendor_server.calls() == []
