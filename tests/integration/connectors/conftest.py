"""Fixtures for HTTP connector tests: a real vendor API on loopback, and time you control.

`vendor_server` is a real HTTP/1.1 server (stdlib `ThreadingHTTPServer` in a
thread) on a free 127.0.0.1 port. Script it with responses shaped exactly as
the vendor documents them, point the connector's `base_url` at
`vendor_server.url`, call the connector, then assert on what the server
received::

    from tests.integration.connectors.vendor_server import Reply

    async def test_ip_report(vendor_server, fake_time):
        vendor_server.route(
            "GET", "/api/v3/ip_addresses/203.0.113.7",
            Reply(429, {"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}},
                  headers={"Retry-After": "7"}),
            Reply(200, {"data": {"id": "203.0.113.7", "type": "ip_address", ...}}),
        )
        conn = VirusTotal(VirusTotalConfig(base_url=f"{vendor_server.url}/api/v3",
                                           credentials="env:VT_API_KEY"),
                          runtime=fake_time.runtime())
        out = await conn.invoke("ip_report", {"ip": "203.0.113.7"})
        (first, second) = vendor_server.calls("GET", "/api/v3/ip_addresses/203.0.113.7")
        assert second.header("x-apikey") == os.environ["VT_API_KEY"]
        assert fake_time.sleeps == [7.0]            # Retry-After honoured, nobody waited
        await conn.aclose()

- `route(method, path, *replies)`: replies are served in order and the last
  one repeats (`Reply(503)`, `Reply(503)`, `Reply(200, {...})`). A reply may
  be a callable `(RecordedRequest) -> Reply` for answers that depend on the
  request (check an auth header, follow a pagination cursor). Paths exclude
  the query string. Unscripted requests get a 404 and are recorded.
- `Reply(status=200, json=None, body=None, headers={}, delay=0.0)`: `delay`
  holds the answer back (slow vendor, client timeouts, concurrency caps).
- `requests` / `calls(method=None, path=None)`: every `RecordedRequest`
  (`method`, `path`, `query` as lists, `headers` with lower-case names,
  `body`, `json()`, `header(name)`, `at` = arrival monotonic time).
- `max_in_flight`: the most requests the server was handling at once.

`fake_time` gives a connector injected time (`fake_time.runtime()` is an
`HttpRuntime`): `sleep` returns at once and advances the clock, `advance(s)`
moves it, `sleeps` lists every backoff/Retry-After/rate-limit wait, and the
jitter source is fixed at 1.0 (full jitter = the exponential cap).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from soc_agent_connectors import HttpRuntime

from tests.integration.connectors.vendor_server import VendorServer

__all__ = ["FakeTime"]


@dataclass
class FakeTime:
    """Monotonic and wall time that only move when a test (or an awaited sleep) moves them."""

    t: float = 1000.0
    epoch: datetime = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.t - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def runtime(self) -> HttpRuntime:
        return HttpRuntime(
            monotonic=self.monotonic, sleep=self.sleep, now=self.now, random=lambda: 1.0
        )


@pytest.fixture
def vendor_server() -> Iterator[VendorServer]:
    """A real HTTP server on 127.0.0.1 replaying scripted vendor responses (see module doc)."""
    server = VendorServer()
    yield server
    server.close()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
