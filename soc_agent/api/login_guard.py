"""Failed web logins: limited per client and per username, audited once per burst.

Without it `/login` answered every guess, and every failure became a
permanent audit entry whose actor the attacker chose. Now a client or a
username with `max_failures` failures within `window` gets 429 (with
Retry-After) until the window has passed, without its token being looked at;
the first failure of a burst is audited, the rest are counted and audited
together when the burst is throttled. State is per API process (replicas each
keep their own) and bounded: old entries are dropped as time moves on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["LoginGuard"]

_MAX_KEYS = 10_000


@dataclass
class _Burst:
    failures: deque[datetime] = field(default_factory=deque)
    throttled_audited: bool = False


class LoginGuard:
    """Sliding-window failure counts keyed by `client:<ip>` and `user:<name>`."""

    def __init__(
        self, *, max_failures: int, window: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._bursts: dict[str, _Burst] = {}

    def retry_after(self, client: str, username: str) -> float | None:
        """Seconds until this client and username may try again; None if they may now."""
        now = self._clock()
        waits = []
        for key in _keys(client, username):
            burst = self._current(key, now)
            if burst is not None and len(burst.failures) >= self._max:
                waits.append((burst.failures[0] + self._window - now).total_seconds())
        return max(waits) if waits else None

    def failed(self, client: str, username: str) -> bool:
        """Record a failure; True if it is the first of its burst (audit it)."""
        now = self._clock()
        first = True
        for key in _keys(client, username):
            burst = self._current(key, now) or self._bursts.setdefault(key, _Burst())
            first = first and not burst.failures
            burst.failures.append(now)
        self._prune(now)
        return first

    def throttled_first_time(self, client: str, username: str) -> bool:
        """True once per burst: when it is throttled, audit one entry for all of it."""
        now = self._clock()
        fresh = False
        for key in _keys(client, username):
            burst = self._current(key, now)
            if burst is not None and not burst.throttled_audited:
                burst.throttled_audited = fresh = True
        return fresh

    def failures(self, client: str, username: str) -> int:
        now = self._clock()
        counts = [len(b.failures) for k in _keys(client, username) if (b := self._current(k, now))]
        return max(counts, default=0)

    def _current(self, key: str, now: datetime) -> _Burst | None:
        burst = self._bursts.get(key)
        if burst is None:
            return None
        while burst.failures and burst.failures[0] <= now - self._window:
            burst.failures.popleft()
        if not burst.failures:
            del self._bursts[key]
            return None
        return burst

    def _prune(self, now: datetime) -> None:
        if len(self._bursts) <= _MAX_KEYS:
            return
        for key in list(self._bursts):
            self._current(key, now)
        while len(self._bursts) > _MAX_KEYS:  # still too many: forget the oldest bursts
            oldest = min(self._bursts, key=lambda k: self._bursts[k].failures[-1])
            del self._bursts[oldest]


def _keys(client: str, username: str) -> list[str]:
    return [f"client:{client}"] + ([f"user:{username.lower()}"] if username else [])
