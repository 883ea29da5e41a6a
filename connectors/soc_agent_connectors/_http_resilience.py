"""Staying a good API citizen: rate limit, circuit breaker, backoff and `Retry-After`.

Everything here takes its time from injected callables (`monotonic`, `sleep`,
`now`), so tests move time instead of waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from soc_agent.errors import ConnectorError

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "TokenBucket",
    "backoff_delay",
    "parse_retry_after",
]

Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """At most `rate` calls per second on average, with bursts of up to `burst` calls.

    Waiters are served in arrival order: the lock is held while a caller
    sleeps for its token, so a burst of callers is spaced `1/rate` apart.
    """

    def __init__(
        self, rate: float, burst: int, *, monotonic: Callable[[], float], sleep: Sleep
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate, self._burst = rate, float(burst)
        self._monotonic, self._sleep = monotonic, sleep
        self._tokens = float(burst)
        self._updated = monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self._rate)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(ConnectorError):
    """The connector's circuit breaker is open: the call failed fast, the vendor was not asked."""


class CircuitBreaker:
    """closed -> open after `threshold` consecutive failures -> half-open after `cooldown`.

    Half-open lets exactly one trial call through: success closes the breaker,
    failure opens it for another cool-down. Calls meanwhile fail fast with
    CircuitOpenError.
    """

    def __init__(self, threshold: int, cooldown: float, *, monotonic: Callable[[], float]) -> None:
        self._threshold, self._cooldown, self._monotonic = threshold, cooldown, monotonic
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._monotonic() - self._opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def acquire(self) -> None:
        """Allow one call or raise CircuitOpenError; pair with success/failure/release."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        if state is BreakerState.HALF_OPEN:
            raise CircuitOpenError(
                "circuit breaker half-open: a trial call is in progress; failing fast"
            )
        assert self._opened_at is not None
        left = self._cooldown - (self._monotonic() - self._opened_at)
        raise CircuitOpenError(
            f"circuit breaker open after {self._failures} consecutive failures; "
            f"failing fast, next trial call in {left:.0f}s"
        )

    def success(self) -> None:
        self._failures, self._opened_at, self._trial_in_flight = 0, None, False

    def failure(self) -> None:
        self._failures += 1
        if self._trial_in_flight or self._failures >= self._threshold:
            self._opened_at = self._monotonic()
        self._trial_in_flight = False

    def release(self) -> None:
        """The call ended without a verdict (cancelled): let another trial through."""
        self._trial_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        """State for operators (`connectors list`, health)."""
        state = self.state
        out: dict[str, Any] = {"state": state.value, "consecutive_failures": self._failures}
        if state is BreakerState.OPEN and self._opened_at is not None:
            left = self._cooldown - (self._monotonic() - self._opened_at)
            out["retry_in_seconds"] = round(max(0.0, left), 3)
        return out


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return rand() * min(cap, base * 2.0 ** max(0, attempt - 1))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
