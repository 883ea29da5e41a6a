"""Rate limit, circuit breaker, backoff and Retry-After parsing, on injected time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from soc_agent_connectors._http_cache import TTLCache, cache_key
from soc_agent_connectors._http_resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    TokenBucket,
    backoff_delay,
    parse_retry_after,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Time:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.t += seconds
        await asyncio.sleep(0)


async def test_token_bucket_allows_a_burst_then_spaces_calls() -> None:
    time = Time()
    bucket = TokenBucket(4, 2, monotonic=time, sleep=time.sleep)
    for _ in range(4):
        await bucket.acquire()
    assert time.slept == [0.25, 0.25]
    time.t += 10  # idle: refills up to the burst, not beyond
    for _ in range(3):
        await bucket.acquire()
    assert time.slept == [0.25, 0.25, 0.25]


def test_breaker_lifecycle() -> None:
    time = Time()
    breaker = CircuitBreaker(2, 10, monotonic=time)
    breaker.acquire()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.acquire()
    breaker.success()  # a success resets the count
    for _ in range(2):
        breaker.acquire()
        breaker.failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError, match="next trial call in 10s"):
        breaker.acquire()
    time.t += 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.acquire()  # the trial
    with pytest.raises(CircuitOpenError, match="half-open"):
        breaker.acquire()
    breaker.release()  # the trial was cancelled: another may go
    breaker.acquire()
    breaker.success()
    assert breaker.snapshot() == {"state": "closed", "consecutive_failures": 0}


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Fri, 20 Nov 2026 09:01:30 GMT", 90.0),
        ("Fri, 20 Nov 2026 08:59:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    assert [backoff_delay(n, 0.5, 4.0, lambda: 1.0) for n in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert backoff_delay(3, 0.5, 4.0, lambda: 0.0) == 0.0
    assert backoff_delay(3, 0.5, 4.0, lambda: 0.5) == 1.0


async def test_ttl_cache_expiry_eviction_and_canonical_keys() -> None:
    time = Time()
    cache = TTLCache(2, monotonic=time)
    assert cache_key("lookup", {"b": 1, "a": "x"}) == cache_key("lookup", {"a": "x", "b": 1})
    calls: list[str] = []

    async def compute(value: str) -> dict[str, str]:
        calls.append(value)
        return {"v": value}

    out = await cache.get_or_compute("k1", 60, lambda: compute("1"))
    out["v"] = "mutated by a caller"
    assert await cache.get_or_compute("k1", 60, lambda: compute("1")) == {"v": "1"}
    time.t += 60
    await cache.get_or_compute("k1", 60, lambda: compute("1"))
    await cache.get_or_compute("k2", 60, lambda: compute("2"))
    await cache.get_or_compute("k3", 60, lambda: compute("3"))
    assert len(cache) == 2 and cache.get("k1") is None
    assert calls == ["1", "1", "2", "3"]
