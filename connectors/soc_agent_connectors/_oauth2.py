"""OAuth 2.0 client credentials for vendor connectors (CrowdStrike, Microsoft identity platform).

A connector subclasses `OAuth2Connector` and its config extends `OAuth2Config`
(`client_id`, `client_secret`, `token_url`, `scope`). Before a vendor call it
holds an access token from the token endpoint, cached until
`token_refresh_margin_seconds` before `expires_in` runs out; one fetch serves
every concurrent caller. A 401 from the vendor drops the token, fetches a
fresh one and retries once (the framework's `on_unauthorized` hook). The
token request goes through the same client as every other call (timeouts,
retries, breaker, egress check), to a host the config adds to
`allowed_hosts`. Tokens and the client secret are scrubbed from every
message; none is ever logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import httpx
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from soc_agent.errors import ConnectorError
from soc_agent_connectors._http_config import HttpConnectorConfig, HttpRuntime
from soc_agent_connectors._rate_limit_reset import ResetHeaderConnector
from soc_agent_connectors.secrets import SecretRef

__all__ = ["MicrosoftOAuth2Config", "OAuth2Config", "OAuth2Connector"]

log = logging.getLogger("soc_agent.connectors.oauth2")

# The connector whose token request is in flight in this task: that request carries the
# client credentials in its form body, never a bearer token, and a 401 on it is final.
_FETCHING: contextvars.ContextVar[OAuth2Connector | None] = contextvars.ContextVar(
    "soc_agent_oauth2_fetching", default=None
)
# The access token the current task last sent, so a 401 refreshes only a token still in use.
_SENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "soc_agent_oauth2_sent", default=None
)


class OAuth2Config(HttpConnectorConfig):
    """`connectors.<name>` keys of an OAuth 2.0 client-credentials connector.

    `client_secret` is the credential: it is also what the framework's
    `credentials` key holds (set for you), so it rotates and is scrubbed like
    any other connector secret. `client_id` is an identifier, so a literal is
    accepted; the secret must be `env:` or `file:` unless literal credentials
    are explicitly allowed.
    """

    client_id: SecretRef = Field(description="env:NAME, file:/path or the literal client id")
    client_secret: SecretRef = Field(description="env:NAME or file:/path holding the secret")
    token_url: str | None = Field(
        default=None, description="token endpoint: absolute, or a path below base_url"
    )
    scope: str | None = Field(default=None, description="sent as `scope` when set")
    token_refresh_margin_seconds: float = Field(
        default=60.0, ge=0, le=3600, description="renew this long before `expires_in` ends"
    )

    @field_validator("client_secret")
    @classmethod
    def _secret_not_literal(cls, value: SecretRef, info: ValidationInfo) -> SecretRef:
        if value.kind == "literal" and not info.data.get("allow_literal_credentials", False):
            raise ValueError(
                "must be env:NAME or file:/path; a literal secret in the "
                "configuration needs allow_literal_credentials: true"
            )
        return value

    @model_validator(mode="after")
    def _wire_oauth(self) -> Self:
        if self.credentials is not None and self.credentials != self.client_secret:
            raise ValueError("credentials: an OAuth2 connector takes client_id and client_secret")
        self.credentials = self.client_secret
        url = self.token_url or self.default_token_url()
        if not url:
            raise ValueError("token_url: required (absolute URL or a path below base_url)")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"token_url: not a valid URL: {exc}") from None
        if parsed.is_absolute_url:
            if parsed.scheme not in ("http", "https") or parsed.userinfo:
                raise ValueError("token_url: must be an http(s) URL without credentials")
            if parsed.host.lower() not in self.hosts:
                self.allowed_hosts = [*self.allowed_hosts, parsed.host.lower()]
        elif not url.startswith("/"):
            raise ValueError("token_url: a relative token_url must start with /")
        self.token_url = url
        return self

    def default_token_url(self) -> str | None:
        """The token endpoint when `token_url` is not set; vendor configs override it."""
        return None


class MicrosoftOAuth2Config(OAuth2Config):
    """Client credentials against the Microsoft identity platform (Entra ID) v2.0 endpoint."""

    authority: str = Field(
        default="https://login.microsoftonline.com",
        description="the login authority (national clouds: login.microsoftonline.us, ...)",
    )
    tenant_id: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$",
        description="directory (tenant) id or verified domain",
    )

    @field_validator("authority")
    @classmethod
    def _authority_url(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise ValueError(
                "must be an absolute http(s) URL, e.g. https://login.microsoftonline.com"
            )
        return value.rstrip("/")

    def default_token_url(self) -> str | None:
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"


class _TokenAnswer(BaseModel):
    access_token: str = Field(min_length=1)
    expires_in: float = Field(default=3600.0, gt=0)


@dataclass
class _Token:
    value: str
    expires_at: float  # runtime monotonic time after which it is renewed before use


class OAuth2Connector(ResetHeaderConnector):
    """An HTTP connector authorised by an OAuth 2.0 client-credentials access token."""

    config_model: ClassVar[type[OAuth2Config]] = OAuth2Config

    def __init__(self, config: OAuth2Config, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.oauth_config = config
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._issued: deque[str] = deque(maxlen=4)
        self._client_values: deque[str] = deque(maxlen=4)

    # --- what a vendor connector may override ----------------------------------------------

    def token_form(self, client_id: str, client_secret: str) -> dict[str, str]:
        """The token request's form body (RFC 6749 section 4.4, credentials in the body)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        if self.oauth_config.scope:
            form["scope"] = self.oauth_config.scope
        return form

    # --- the token -------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid access token: the cached one, or a fresh one (one fetch for all callers)."""
        token = self._token
        if token is not None and self.runtime.monotonic() < token.expires_at:
            return token.value
        async with self._token_lock:
            token = self._token
            if token is not None and self.runtime.monotonic() < token.expires_at:
                return token.value
            return (await self._fetch_token()).value

    async def _fetch_token(self) -> _Token:
        cfg = self.oauth_config
        client_id, client_secret = await asyncio.gather(
            _read(cfg.client_id), _read(cfg.client_secret)
        )
        for value in (client_id, client_secret):
            if value not in self._client_values:
                self._client_values.append(value)
        assert cfg.token_url is not None  # set by the config validator
        marker = _FETCHING.set(self)
        try:
            # Asking for a token changes nothing at the vendor, so it may be retried.
            response = await self.request(
                "POST",
                cfg.token_url,
                data=self.token_form(client_id, client_secret),
                idempotent=True,
            )
        finally:
            _FETCHING.reset(marker)
        try:
            answer = _TokenAnswer.model_validate(self.json_of(response))
        except ValidationError:
            raise ConnectorError(
                f"{self.name}: the token endpoint answered HTTP {response.status_code} "
                "without a usable access_token"
            ) from None
        if answer.access_token not in self._issued:
            self._issued.append(answer.access_token)
        margin = min(cfg.token_refresh_margin_seconds, answer.expires_in / 2)
        token = _Token(answer.access_token, self.runtime.monotonic() + answer.expires_in - margin)
        self._token = token
        log.info("%s: new access token, valid for %gs", self.name, answer.expires_in)
        return token

    # --- the HttpConnector hooks -----------------------------------------------------------

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
        if _FETCHING.get() is not self:
            await self.access_token()
        return await super().request(
            method,
            url,
            params=params,
            json=json,
            data=data,
            headers=headers,
            idempotent=idempotent,
            allow_status=allow_status,
        )

    def auth_headers(self, secret: str) -> dict[str, str]:
        # `secret` is the client secret (the framework's credential); the vendor gets the token.
        if _FETCHING.get() is self or self._token is None:
            return {}
        _SENT.set(self._token.value)
        return {"Authorization": f"Bearer {self._token.value}"}

    async def on_unauthorized(self) -> bool:
        if _FETCHING.get() is self:
            return False  # the token endpoint refused the client: retrying cannot help
        sent = _SENT.get()
        async with self._token_lock:
            token = self._token
            if token is not None and token.value != sent and self._fresh(token):
                return True  # another call has already renewed it
            log.info("%s: HTTP 401 with the current access token; fetching a new one", self.name)
            self._token = None
            await self._fetch_token()
        return True

    def secret_values(self) -> tuple[str, ...]:
        return (*super().secret_values(), *self._client_values, *self._issued)

    def _fresh(self, token: _Token) -> bool:
        return self.runtime.monotonic() < token.expires_at


async def _read(ref: SecretRef) -> str:
    return await asyncio.to_thread(ref.get) if ref.kind == "file" else ref.get()
