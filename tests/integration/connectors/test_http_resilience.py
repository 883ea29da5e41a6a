"""HttpConnector against a real HTTP server: retries, Retry-After, rate limit, concurrency,
cache, circuit breaker and timeouts, with VirusTotal-shaped responses."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from soc_agent_connectors import CircuitOpenError, VendorHTTPError

from soc_agent.errors import ConnectorError
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.intel_api import IntelApi, IntelApiConfig, ip_report, vt_error
from tests.integration.connectors.vendor_server import Reply, VendorServer

IP = "203.0.113.7"
IP_PATH = f"/api/v3/ip_addresses/{IP}"
Make = Callable[..., IntelApi]


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    """Build IntelApi connectors on the vendor server (fake time unless real_time=True)."""
    monkeypatch.setenv(
        "VT_API_KEY", "4f9c0de1b2a3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d"
    )
    built: list[IntelApi] = []

    def build(*, real_time: bool = False, **config: Any) -> IntelApi:
        config.setdefault("credentials", "env:VT_API_KEY")
        cfg = IntelApiConfig(base_url=f"{vendor_server.url}/api/v3", **config)
        conn = IntelApi(cfg, runtime=None if real_time else fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


# --- retries --------------------------------------------------------------------------------


async def test_get_is_retried_with_exponential_full_jitter_backoff(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        IP_PATH,
        Reply(503, vt_error("TransientError", "Transient server error. Retry might work.")),
        Reply(502, body="<html>Bad Gateway</html>"),
        Reply(200, ip_report(IP)),
    )
    conn = make(max_retries=3, backoff_base_seconds=0.5, backoff_max_seconds=10)
    out = await conn.invoke("ip_report", {"ip": IP})
    assert out["malicious"] == 3
    assert len(vendor_server.calls("GET", IP_PATH)) == 3
    # jitter source fixed at 1.0: the full-jitter upper bounds 0.5 * 2**(n-1)
    assert fake_time.sleeps == [0.5, 1.0]


async def test_retries_stop_after_max_retries_and_say_so(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(500, vt_error("TransientError", "try later")))
    conn = make(max_retries=2)
    with pytest.raises(VendorHTTPError) as caught:
        await conn.invoke("ip_report", {"ip": IP})
    assert caught.value.status_code == 500
    assert str(caught.value) == (
        f"GET {IP_PATH}: HTTP 500: TransientError try later (after 3 attempts)"
    )
    assert len(vendor_server.calls()) == 3


async def test_post_action_is_never_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "POST",
        "/api/v3/urls",
        Reply(503, vt_error("TransientError", "Transient server error.")),
        Reply(200, {"data": {"type": "analysis", "id": "u-1db0ad7f-1700000000"}}),
    )
    conn = make(max_retries=3)
    with pytest.raises(VendorHTTPError, match="not retried: POST is not idempotent"):
        await conn.invoke("submit_url", {"url": "http://phish.example.net/login"})
    (only,) = vendor_server.calls("POST", "/api/v3/urls")
    assert only.body == b"url=http%3A%2F%2Fphish.example.net%2Flogin"
    assert fake_time.sleeps == []


async def test_post_declared_idempotent_is_retried(make: Make, vendor_server: VendorServer) -> None:
    vendor_server.route(
        "POST",
        "/api/v3/intelligence/search",
        Reply(
            429,
            vt_error("TooManyRequestsError", "Too many requests."),
            headers={"Retry-After": "2"},
        ),
        Reply(200, {"data": [], "meta": {"total_hits": 42}}),
    )
    conn = make()
    assert await conn.invoke("search", {"query": "entity:ip tag:c2"}) == {"total": 42}
    calls = vendor_server.calls("POST", "/api/v3/intelligence/search")
    assert [c.json() for c in calls] == [{"query": "entity:ip tag:c2"}] * 2


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "waited"),
    [
        pytest.param(429, lambda now: "7", 7.0, id="429-seconds"),
        pytest.param(
            503,
            lambda now: format_datetime(now + timedelta(seconds=30), usegmt=True),
            30.0,
            id="503-http-date",
        ),
    ],
)
async def test_retry_after_is_honoured(
    make: Make,
    vendor_server: VendorServer,
    fake_time: FakeTime,
    status: int,
    retry_after: Callable[[Any], str],
    waited: float,
) -> None:
    vendor_server.route(
        "GET",
        IP_PATH,
        Reply(
            status,
            vt_error("QuotaExceededError", "Quota exceeded"),
            headers={"Retry-After": retry_after(fake_time.now())},
        ),
        Reply(200, ip_report(IP)),
    )
    conn = make(backoff_base_seconds=0.5)
    assert (await conn.invoke("ip_report", {"ip": IP}))["indicator"] == IP
    assert fake_time.sleeps == [waited]  # the vendor's wait, not our backoff
    assert len(vendor_server.calls()) == 2


async def test_retry_after_beyond_the_cap_fails_without_waiting(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "GET",
        IP_PATH,
        Reply(
            429,
            vt_error("QuotaExceededError", "Daily quota exceeded"),
            headers={"Retry-After": "3600"},
        ),
    )
    conn = make(retry_after_max_seconds=60)
    with pytest.raises(VendorHTTPError, match=r"Retry-After 3600s exceeds retry_after_max_seconds"):
        await conn.invoke("ip_report", {"ip": IP})
    assert fake_time.sleeps == []
    assert len(vendor_server.calls()) == 1


# --- rate limit and concurrency ------------------------------------------------------------


async def test_rate_limit_spaces_calls_by_the_quota(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    ips = [f"198.51.100.{i}" for i in range(5)]
    for ip in ips:
        vendor_server.route("GET", f"/api/v3/ip_addresses/{ip}", Reply(200, ip_report(ip)))
    conn = make(rate_limit_per_second=2, rate_limit_burst=1)
    await asyncio.gather(*(conn.invoke("ip_report", {"ip": ip}) for ip in ips))
    assert len(vendor_server.calls()) == 5
    assert fake_time.sleeps == [0.5] * 4  # the first call uses the burst token


async def test_rate_limit_holds_in_real_time(make: Make, vendor_server: VendorServer) -> None:
    ips = [f"198.51.100.{i}" for i in range(4)]
    for ip in ips:
        vendor_server.route("GET", f"/api/v3/ip_addresses/{ip}", Reply(200, ip_report(ip)))
    conn = make(real_time=True, rate_limit_per_second=20, rate_limit_burst=1)
    await asyncio.gather(*(conn.invoke("ip_report", {"ip": ip}) for ip in ips))
    arrivals = sorted(r.at for r in vendor_server.calls())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.04, gaps  # 1/20 s apart, less scheduling noise


async def test_concurrency_is_capped(make: Make, vendor_server: VendorServer) -> None:
    ips = [f"198.51.100.{i}" for i in range(6)]
    for ip in ips:
        vendor_server.route(
            "GET", f"/api/v3/ip_addresses/{ip}", Reply(200, ip_report(ip), delay=0.15)
        )
    conn = make(real_time=True, max_concurrency=2)
    await asyncio.gather(*(conn.invoke("ip_report", {"ip": ip}) for ip in ips))
    assert len(vendor_server.calls()) == 6
    assert vendor_server.max_in_flight == 2


# --- cache ----------------------------------------------------------------------------------


async def test_query_results_are_cached_per_ttl(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(200, ip_report(IP, malicious=3)))
    conn = make(cache_ttl_seconds=300)
    first = await conn.invoke("ip_report", {"ip": IP})
    for _ in range(5):  # five more alerts with the same IP inside the TTL
        assert await conn.invoke("ip_report", {"ip": IP}) == first
    assert len(vendor_server.calls()) == 1

    fake_time.advance(299)
    await conn.invoke("ip_report", {"ip": IP})
    assert len(vendor_server.calls()) == 1
    fake_time.advance(2)  # past the TTL: asked again
    await conn.invoke("ip_report", {"ip": IP})
    assert len(vendor_server.calls()) == 2
    assert conn.status()["cache"] == {"entries": 1, "hits": 6, "misses": 2}


async def test_concurrent_identical_lookups_share_one_call(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(200, ip_report(IP), delay=0.1))
    conn = make()
    results = await asyncio.gather(*(conn.invoke("ip_report", {"ip": IP}) for _ in range(8)))
    assert len({r["indicator"] for r in results}) == 1
    assert len(vendor_server.calls()) == 1


async def test_cache_is_bounded_and_skips_failures_and_uncached_capabilities(
    make: Make, vendor_server: VendorServer
) -> None:
    ips = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    for ip in ips:
        vendor_server.route("GET", f"/api/v3/ip_addresses/{ip}", Reply(200, ip_report(ip)))
    conn = make(cache_max_entries=2)
    for ip in ips:
        await conn.invoke("ip_report", {"ip": ip})
    await conn.invoke("ip_report", {"ip": ips[0]})  # evicted as least recently used
    assert len(vendor_server.calls()) == 4

    await conn.invoke("ip_report_uncached", {"ip": ips[2]})
    await conn.invoke("ip_report_uncached", {"ip": ips[2]})
    assert len(vendor_server.calls()) == 6

    vendor_server.route(
        "GET",
        IP_PATH,
        Reply(404, vt_error("NotFoundError", f"IP {IP} not found")),
        Reply(200, ip_report(IP)),
    )
    with pytest.raises(VendorHTTPError, match="NotFoundError"):
        await conn.invoke("ip_report", {"ip": IP})
    assert (await conn.invoke("ip_report", {"ip": IP}))["indicator"] == IP


# --- circuit breaker ------------------------------------------------------------------------


async def test_breaker_opens_fails_fast_half_opens_and_recovers(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(500, vt_error("TransientError", "down")))
    conn = make(
        max_retries=0, breaker_failure_threshold=3, breaker_cooldown_seconds=30, cache_ttl_seconds=0
    )
    for _ in range(3):
        with pytest.raises(VendorHTTPError):
            await conn.invoke("ip_report", {"ip": IP})
    assert conn.status()["breaker"] == {
        "state": "open",
        "consecutive_failures": 3,
        "retry_in_seconds": 30.0,
    }

    with pytest.raises(CircuitOpenError, match="circuit breaker open after 3 consecutive"):
        await conn.invoke("ip_report", {"ip": IP})
    assert len(vendor_server.calls()) == 3  # failed fast: the vendor was not asked

    fake_time.advance(30)
    assert conn.status()["breaker"]["state"] == "half_open"
    with pytest.raises(VendorHTTPError):  # the trial call fails: open again
        await conn.invoke("ip_report", {"ip": IP})
    assert conn.status()["breaker"]["state"] == "open"
    assert len(vendor_server.calls()) == 4

    fake_time.advance(30)
    vendor_server.route("GET", IP_PATH, Reply(200, ip_report(IP)))
    assert (await conn.invoke("ip_report", {"ip": IP}))["indicator"] == IP
    assert conn.status()["breaker"] == {"state": "closed", "consecutive_failures": 0}


async def test_half_open_lets_exactly_one_trial_through(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(500))
    conn = make(max_retries=0, breaker_failure_threshold=1, cache_ttl_seconds=0)
    with pytest.raises(VendorHTTPError):
        await conn.invoke("ip_report", {"ip": IP})
    fake_time.advance(60)
    vendor_server.route("GET", IP_PATH, Reply(200, ip_report(IP), delay=0.1))
    results = await asyncio.gather(
        *(conn.invoke("ip_report", {"ip": IP}) for _ in range(3)), return_exceptions=True
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(
        isinstance(r, CircuitOpenError) and "half-open" in str(r)
        for r in results
        if not isinstance(r, dict)
    )
    assert conn.status()["breaker"]["state"] == "closed"


async def test_client_errors_do_not_trip_the_breaker(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(404, vt_error("NotFoundError", "not found")))
    conn = make(breaker_failure_threshold=2, cache_ttl_seconds=0)
    for _ in range(4):
        with pytest.raises(VendorHTTPError):
            await conn.invoke("ip_report", {"ip": IP})
    assert conn.status()["breaker"]["state"] == "closed"


# --- timeouts -------------------------------------------------------------------------------


async def test_slow_vendor_times_out_as_connector_error_naming_the_timeout(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("GET", IP_PATH, Reply(200, ip_report(IP), delay=0.6))
    conn = make(real_time=True, timeout_seconds=0.2, max_retries=0)
    with pytest.raises(ConnectorError) as caught:
        await conn.invoke("ip_report", {"ip": IP})
    assert str(caught.value) == f"GET {IP_PATH}: timed out after 0.2s (ReadTimeout)"


async def test_timeouts_are_retried_for_idempotent_calls(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route(
        "GET", IP_PATH, Reply(200, ip_report(IP), delay=0.5), Reply(200, ip_report(IP))
    )
    conn = make(timeout_seconds=0.15, max_retries=1)
    assert (await conn.invoke("ip_report", {"ip": IP}))["indicator"] == IP
    assert len(vendor_server.calls()) == 2


async def test_connection_refused_is_a_connector_error(make: Make) -> None:
    conn = IntelApi(IntelApiConfig(base_url="http://127.0.0.1:9/api/v3", max_retries=0))
    try:
        with pytest.raises(ConnectorError, match=r"GET /api/v3/ip_addresses/.*ConnectError"):
            await conn.invoke("ip_report", {"ip": IP})
    finally:
        await conn.aclose()
