"""Honouring a vendor's own rate-limit header on HTTP 429, for vendors that send no `Retry-After`.

CrowdStrike answers a 429 with `X-RateLimit-RetryAfter` and Okta with
`X-Rate-Limit-Reset`, both the epoch second at which the caller may try
again. `HttpConnector` waits on `Retry-After` only; this subclass turns the
vendor's header into the same wait (through the injected runtime, so tests
do not sleep) with the same rules: only idempotent calls are retried, at most
`max_retries` times, and a wait beyond `retry_after_max_seconds` fails the call.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import httpx

from soc_agent_connectors._http import (
    IDEMPOTENT_METHODS,
    HttpConnector,
    HttpConnectorConfig,
    VendorHTTPError,
)
from soc_agent_connectors._http_config import HttpRuntime
from soc_agent_connectors._http_resilience import backoff_delay, parse_retry_after

__all__ = ["ResetHeaderConnector", "seconds_until_epoch"]

log = logging.getLogger("soc_agent.connectors.http")


def seconds_until_epoch(value: str | None, now: float) -> float | None:
    """Seconds from `now` (epoch seconds) until the epoch second in `value`; None if absent."""
    if value is None:
        return None
    try:
        at = float(value.strip())
    except ValueError:
        return None
    return max(0.0, at - now)


class ResetHeaderConnector(HttpConnector):
    """An HttpConnector whose vendor says when to retry a 429 in `rate_limit_reset_header`.

    Callers pass `idempotent=` explicitly to `request` (the retry decision for
    a 429 is made here, per call). With `rate_limit_reset_header = None` it
    behaves exactly like HttpConnector.
    """

    rate_limit_reset_header: ClassVar[str | None] = None

    def __init__(self, config: HttpConnectorConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.runtime = runtime or HttpRuntime()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        allow_status: Collection[int] = (),
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {"params": params, "json": json, "data": data, "headers": headers}
        if self.rate_limit_reset_header is None or 429 in allow_status:
            return await super().request(
                method, url, idempotent=idempotent, allow_status=allow_status, **kwargs
            )
        cfg = self.http_config
        retryable = idempotent if idempotent is not None else method.upper() in IDEMPOTENT_METHODS
        attempt = 0
        while True:
            attempt += 1
            response = await super().request(
                method, url, idempotent=idempotent, allow_status={*allow_status, 429}, **kwargs
            )
            if response.status_code != 429:
                return response
            wait = self.retry_wait(response)
            path = response.request.url.raw_path.decode("ascii", "replace")
            error = self.redact(f"{method.upper()} {path}: HTTP 429{_vendor_text(response)}")
            if not retryable:
                raise VendorHTTPError(
                    f"{error} (not retried: {method.upper()} is not idempotent)", status_code=429
                )
            if wait is not None and wait > cfg.retry_after_max_seconds:
                raise VendorHTTPError(
                    f"{error} ({self.rate_limit_reset_header} is {wait:g}s away, beyond "
                    f"retry_after_max_seconds {cfg.retry_after_max_seconds:g}s; not retried)",
                    status_code=429,
                )
            if attempt > cfg.max_retries:
                raise VendorHTTPError(f"{error} (after {attempt} attempts)", status_code=429)
            delay = (
                wait
                if wait is not None
                else backoff_delay(
                    attempt, cfg.backoff_base_seconds, cfg.backoff_max_seconds, self.runtime.random
                )
            )
            log.info("%s; retry %d in %.2fs", error, attempt, delay)
            await self.runtime.sleep(delay)

    def retry_wait(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying a 429: the vendor's reset header, else `Retry-After`."""
        now = self.runtime.now()
        header = self.rate_limit_reset_header
        wait = (
            seconds_until_epoch(response.headers.get(header), now.timestamp()) if header else None
        )
        if wait is None:
            wait = parse_retry_after(response.headers.get("Retry-After"), now)
        return wait


def _vendor_text(response: httpx.Response) -> str:
    """The vendor's error text from the documented bodies of CrowdStrike, Okta and Graph."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    text: Any = None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        text = errors[0].get("message")
    elif isinstance(body.get("error"), dict):
        text = body["error"].get("message")
    else:
        text = body.get("errorSummary")
    return f": {str(text)[:300]}" if text else ""
