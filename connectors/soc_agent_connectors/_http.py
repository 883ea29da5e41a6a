"""The base class for connectors that call a vendor's HTTP API.

A vendor connector subclasses `HttpConnector`, gives it a config model that
extends `HttpConnectorConfig`, says how its credential is sent
(`auth_header`, `auth_scheme`, or override `auth_headers`) and implements
capabilities with `self.get_json(...)` / `self.request(...)`. It gets, without
writing any of it: one pooled `httpx.AsyncClient` with explicit timeouts;
retries with exponential backoff and full jitter for idempotent calls only,
honouring `Retry-After`; a token-bucket rate limit and a concurrency cap; a
circuit breaker; a TTL cache of query results; credential rotation (file
changes, one re-read and retry on 401); egress limited to its own hosts; and
error messages with secrets scrubbed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import httpx
from pydantic import ValidationError

from soc_agent.errors import ConnectorError
from soc_agent_connectors._http_cache import TTLCache, cache_key
from soc_agent_connectors._http_config import HttpConnectorConfig, HttpRuntime
from soc_agent_connectors._http_guard import (
    EgressDeniedError,
    UntrustedTransport,
    check_host_allowed,
)
from soc_agent_connectors._http_resilience import (
    CircuitBreaker,
    CircuitOpenError,
    TokenBucket,
    backoff_delay,
    parse_retry_after,
)
from soc_agent_connectors.base import Capability, Connector
from soc_agent_connectors.redact import RedactingFilter, redact_text

__all__ = [
    "CircuitOpenError",
    "EgressDeniedError",
    "HttpConnector",
    "HttpConnectorConfig",
    "HttpRuntime",
    "VendorHTTPError",
]

log = logging.getLogger("soc_agent.connectors.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_THIRD_PARTY_LOGGERS = ("httpx", "httpcore")
_CURRENT: contextvars.ContextVar[Capability | None] = contextvars.ContextVar(
    "soc_agent_http_capability", default=None
)


class VendorHTTPError(ConnectorError):
    """The vendor answered with an error status; `status_code` says which."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class HttpConnector(Connector):
    """Base class for vendor API connectors. See the module docstring and the README."""

    config_model: ClassVar[type[HttpConnectorConfig]] = HttpConnectorConfig
    auth_header: ClassVar[str] = "Authorization"
    auth_scheme: ClassVar[str | None] = "Bearer"  # None: the header carries the bare key
    default_headers: ClassVar[Mapping[str, str]] = {
        "Accept": "application/json",
        "User-Agent": "soc-agent",
    }

    def __init__(self, config: HttpConnectorConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config)
        self.http_config = config
        self._rt = runtime or HttpRuntime()
        self._hosts = config.hosts
        self._client: httpx.AsyncClient | None = None
        self._untrusted_client: httpx.AsyncClient | None = None
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._bucket = (
            TokenBucket(
                config.rate_limit_per_second,
                config.rate_limit_burst,
                monotonic=self._rt.monotonic,
                sleep=self._rt.sleep,
            )
            if config.rate_limit_per_second
            else None
        )
        self._breaker = CircuitBreaker(
            config.breaker_failure_threshold,
            config.breaker_cooldown_seconds,
            monotonic=self._rt.monotonic,
        )
        self._cache = TTLCache(config.cache_max_entries, monotonic=self._rt.monotonic)
        self._seen_secrets: deque[str] = deque(maxlen=4)
        self._log_filter = RedactingFilter(self.secret_values)
        if config.credentials is not None and config.credentials.kind == "literal":
            log.warning(
                "connector %s reads a literal credential from its configuration; "
                "prefer env:NAME or file:/path",
                self.name,
            )

    # --- what vendor connectors call -------------------------------------------------------

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
        """Call the vendor API; `url` is relative to `base_url` (or absolute on an allowed host).

        Returns the response when its status is below 400 or listed in
        `allow_status` (e.g. `{404}` for "not known to the vendor"); otherwise
        raises VendorHTTPError. Transport failures and timeouts raise
        ConnectorError; an open breaker raises CircuitOpenError.
        """
        kwargs = {"params": params, "json": json, "data": data, "headers": headers}
        return await self._send(method.upper(), url, kwargs, idempotent, allow_status, False)

    async def get_json(
        self, url: str, *, params: Mapping[str, Any] | None = None, idempotent: bool | None = None
    ) -> Any:
        """GET and decode JSON."""
        return self.json_of(await self.request("GET", url, params=params, idempotent=idempotent))

    async def post_json(
        self,
        url: str,
        body: Any,
        *,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """POST a JSON body and decode the JSON answer (no retries unless idempotent)."""
        response = await self.request("POST", url, json=body, params=params, idempotent=idempotent)
        return self.json_of(response)

    async def fetch_untrusted(
        self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Fetch a URL that came from alert content, without our credentials.

        Only a capability declared `fetches_untrusted_urls=True` may call it;
        private, loopback, link-local, multicast and reserved addresses are
        refused unless listed in `untrusted_url_allow_networks`.
        """
        cap = _CURRENT.get()
        if cap is None or not cap.fetches_untrusted_urls:
            raise EgressDeniedError(
                f"refused to fetch an untrusted URL: capability "
                f"{cap.name if cap else '(none)'} is not declared fetches_untrusted_urls"
            )
        kwargs = {"headers": headers}
        return await self._send(method.upper(), url, kwargs, None, range(100, 600), True)

    def json_of(self, response: httpx.Response) -> Any:
        """The decoded JSON body, or a ConnectorError naming the request (not the body)."""
        try:
            return response.json()
        except ValueError:
            raise ConnectorError(
                f"{response.request.method} {self._show(response.request.url)}: "
                f"HTTP {response.status_code} answer is not JSON"
            ) from None

    def auth_headers(self, secret: str) -> dict[str, str]:
        """Headers that carry the credential; override for other schemes."""
        value = f"{self.auth_scheme} {secret}" if self.auth_scheme else secret
        return {self.auth_header: value}

    async def on_unauthorized(self) -> bool:
        """A 401 arrived: refresh credentials; True if a retry may now succeed.

        The default re-reads the secret reference and retries once if the value
        changed. OAuth connectors override this to drop their cached token.
        """
        ref = self.http_config.credentials
        if ref is None:
            return False
        value, changed = await asyncio.to_thread(ref.refresh)
        self._remember(value)
        return changed

    def redact(self, text: str) -> str:
        """`text` with this connector's secrets and any secret-shaped token scrubbed."""
        return redact_text(text, self.secret_values())

    # --- the Connector hooks ---------------------------------------------------------------

    async def invoke(self, capability_name: str, args: dict[str, Any]) -> dict[str, Any]:
        cap = self.capabilities().get(capability_name)
        if cap is None:
            return await super().invoke(capability_name, args)
        parent = super().invoke
        token = _CURRENT.set(cap)
        try:
            ttl = self._cache_ttl(cap)
            if ttl <= 0:
                return await parent(capability_name, args)
            try:
                canonical = cap.input_model.model_validate(args).model_dump(mode="json")
            except ValidationError:
                return await parent(capability_name, args)  # reports the invalid argument
            key = cache_key(cap.name, canonical)
            return await self._cache.get_or_compute(key, ttl, lambda: parent(capability_name, args))
        finally:
            _CURRENT.reset(token)

    def status(self) -> dict[str, Any]:
        return {
            "base_url": self.http_config.base_url,
            "breaker": self._breaker.snapshot(),
            "cache": self._cache.snapshot(),
        }

    def secret_values(self) -> tuple[str, ...]:
        return tuple(self._seen_secrets)

    async def aclose(self) -> None:
        for client in (self._client, self._untrusted_client):
            if client is not None:
                await client.aclose()
        self._client = self._untrusted_client = None
        for name in _THIRD_PARTY_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)

    # --- internals -------------------------------------------------------------------------

    def _cache_ttl(self, cap: Capability) -> float:
        if cap.kind.value != "query":
            return 0.0
        return self.http_config.cache_ttl_seconds if cap.cache_ttl is None else cap.cache_ttl

    def _http(self, untrusted: bool) -> httpx.AsyncClient:
        cfg = self.http_config
        timeout = httpx.Timeout(cfg.timeout_seconds, connect=cfg.connect_timeout_seconds)
        limits = httpx.Limits(
            max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency
        )
        if untrusted:
            if self._untrusted_client is None:
                transport = UntrustedTransport(
                    verify=cfg.verify_tls,
                    limits=limits,
                    allow=cfg.untrusted_url_allow_networks,
                    resolve=self._rt.resolve,
                )
                self._untrusted_client = httpx.AsyncClient(
                    timeout=timeout, transport=transport, trust_env=False
                )
            return self._untrusted_client
        if self._client is None:
            for name in _THIRD_PARTY_LOGGERS:
                logging.getLogger(name).addFilter(self._log_filter)
            self._client = httpx.AsyncClient(
                base_url=cfg.base_url,
                timeout=timeout,
                limits=limits,
                verify=cfg.verify_tls,
                headers=dict(self.default_headers),
                event_hooks={"request": [self._check_egress]},
            )
        return self._client

    async def _check_egress(self, request: httpx.Request) -> None:
        # Every request on the trusted client, whoever built it, stays on our hosts.
        check_host_allowed(request.url, self._hosts)

    async def _auth(self) -> dict[str, str]:
        ref = self.http_config.credentials
        if ref is None:
            return {}
        secret = await asyncio.to_thread(ref.get) if ref.kind == "file" else ref.get()
        self._remember(secret)
        return self.auth_headers(secret)

    def _remember(self, secret: str) -> None:
        if secret not in self._seen_secrets:
            self._seen_secrets.append(secret)

    def _retryable(self, method: str, idempotent: bool | None) -> bool:
        if idempotent is not None:
            return idempotent
        cap = _CURRENT.get()
        if cap is not None and cap.idempotent is not None:
            return cap.idempotent
        return method in IDEMPOTENT_METHODS

    def _show(self, url: httpx.URL, *, full: bool = False) -> str:
        shown = str(url) if full else url.raw_path.decode("ascii", "replace")
        return self.redact(shown)

    async def _send(
        self,
        method: str,
        url: str,
        kwargs: dict[str, Any],
        idempotent: bool | None,
        allow_status: Collection[int],
        untrusted: bool,
    ) -> httpx.Response:
        cfg = self.http_config
        retryable = self._retryable(method, idempotent)
        client = self._http(untrusted)
        attempt, reauthorised = 0, False
        while True:
            attempt += 1
            headers = {**(kwargs.get("headers") or {}), **({} if untrusted else await self._auth())}
            try:
                target = httpx.URL(url)
                request = client.build_request(method, url, **{**kwargs, "headers": headers})
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise ConnectorError(self.redact(f"invalid URL: {exc}")) from None
            if target.scheme and (target.scheme not in ("http", "https") or not target.host):
                # httpx would treat "file:///x" as a path below base_url; refuse it outright
                raise EgressDeniedError(f"refused: {target.scheme}: URLs are not fetched")
            label = f"{method} {self._show(request.url, full=untrusted)}"
            if not untrusted:
                check_host_allowed(request.url, self._hosts)
            elif request.url.scheme not in ("http", "https") or not request.url.host:
                raise EgressDeniedError(f"refused to fetch {label}: not an http(s) URL")
            try:
                response = await self._attempt(client, request, breaker=not untrusted)
            except httpx.TimeoutException as exc:
                limit = self._timeout_of(exc)
                error = f"{label}: timed out after {limit:g}s ({type(exc).__name__})"
                if retryable and attempt <= cfg.max_retries:
                    await self._backoff(attempt, error)
                    continue
                raise ConnectorError(self._final(error, attempt)) from None
            except httpx.TransportError as exc:
                error = self.redact(f"{label}: {type(exc).__name__}: {exc}")
                if retryable and attempt <= cfg.max_retries:
                    await self._backoff(attempt, error)
                    continue
                raise ConnectorError(self._final(error, attempt)) from None

            status = response.status_code
            if status == 401 and not untrusted and not reauthorised:
                reauthorised = True
                if await self.on_unauthorized():
                    log.info("%s: HTTP 401, credentials re-read; retrying once", label)
                    attempt -= 1  # the re-authorised call is not a retry of a failure
                    continue
            if status in RETRY_STATUSES and status not in allow_status:
                wait = (
                    parse_retry_after(response.headers.get("Retry-After"), self._rt.now())
                    if status in _RETRY_AFTER_STATUSES
                    else None
                )
                error = f"{label}: HTTP {status}{self._vendor_message(response)}"
                if not retryable:
                    raise VendorHTTPError(
                        f"{error} (not retried: {method} is not idempotent)", status_code=status
                    )
                if wait is not None and wait > cfg.retry_after_max_seconds:
                    raise VendorHTTPError(
                        f"{error} (Retry-After {wait:g}s exceeds retry_after_max_seconds "
                        f"{cfg.retry_after_max_seconds:g}s; not retried)",
                        status_code=status,
                    )
                if attempt <= cfg.max_retries:
                    await self._backoff(attempt, error, wait)
                    continue
                raise VendorHTTPError(self._final(error, attempt), status_code=status)
            if status < 400 or status in allow_status:
                return response
            error = f"{label}: HTTP {status}{self._vendor_message(response)}"
            if status == 401 and reauthorised:
                error += " (credentials re-read once)"
            raise VendorHTTPError(self._final(error, attempt), status_code=status)

    async def _attempt(
        self, client: httpx.AsyncClient, request: httpx.Request, *, breaker: bool
    ) -> httpx.Response:
        """One HTTP exchange under the breaker, the concurrency cap and the rate limit."""
        if breaker:
            self._breaker.acquire()
        healthy: bool | None = None
        try:
            async with self._semaphore:
                if self._bucket is not None:
                    await self._bucket.acquire()
                started = self._rt.monotonic()
                try:
                    response = await client.send(request)
                except httpx.TransportError:
                    healthy = False
                    raise
            healthy = response.status_code < 500 and response.status_code != 429
            log.debug(
                "%s %s -> HTTP %d in %.0f ms",
                request.method,
                self._show(request.url, full=not breaker),
                response.status_code,
                (self._rt.monotonic() - started) * 1000,
            )
            return response
        finally:
            if breaker:
                if healthy is None:
                    self._breaker.release()
                elif healthy:
                    self._breaker.success()
                else:
                    self._breaker.failure()

    async def _backoff(self, attempt: int, error: str, wait: float | None = None) -> None:
        cfg = self.http_config
        delay = (
            wait
            if wait is not None
            else backoff_delay(
                attempt, cfg.backoff_base_seconds, cfg.backoff_max_seconds, self._rt.random
            )
        )
        log.info("%s; retry %d in %.2fs", self.redact(error), attempt, delay)
        await self._rt.sleep(delay)

    def _final(self, error: str, attempt: int) -> str:
        return self.redact(error + (f" (after {attempt} attempts)" if attempt > 1 else ""))

    def _timeout_of(self, exc: httpx.TimeoutException) -> float:
        cfg = self.http_config
        if isinstance(exc, httpx.ConnectTimeout):
            return cfg.connect_timeout_seconds
        return cfg.timeout_seconds

    def _vendor_message(self, response: httpx.Response) -> str:
        """The vendor's own error text, if its body carries one (VirusTotal, Okta, Graph...)."""
        try:
            body = response.json()
        except ValueError:
            return ""
        text = _error_text(body)
        return f": {self.redact(text)[:300]}" if text else ""


def _error_text(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        parts = [str(err[k]) for k in ("code", "message") if err.get(k)]
        return " ".join(parts) or None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("detail") or first.get("message") or first.get("code") or "") or None
    for key in ("errorSummary", "message", "error_description", "detail", "error"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return None
