"""A generic outgoing webhook: notifications POSTed as JSON to one configured URL.

`notify` takes the local `notifier` connector's input. With a
`signing_secret`, each request carries `X-Soc-Agent-Timestamp: <unix
seconds>` and `X-Soc-Agent-Signature: sha256=<hex>`, the HMAC-SHA256 of
`"<timestamp>." + body` (the exact bytes sent). Signing the timestamp with
the body lets a receiver reject replays: verify the signature, then refuse
timestamps older than a few minutes and delivery ids already seen
(`X-Soc-Agent-Delivery`). Any answer other than 2xx is a ConnectorError;
redirects are not followed and nothing is retried (a POST may have been
received). Token-like parts of the URL (incoming-webhook tokens) are scrubbed
from errors and logs like any credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections import deque
from typing import ClassVar

import httpx
from pydantic import Field, ValidationInfo, field_validator

from soc_agent.errors import ConnectorError
from soc_agent_connectors import (
    HttpConnector,
    HttpConnectorConfig,
    HttpRuntime,
    SecretRef,
    capability,
    is_sensitive_key,
)
from soc_agent_connectors.local_notifier import NotifyInput, NotifyOutput

__all__ = ["Webhook", "WebhookConfig", "WebhookNotifyOutput", "sign"]

EVENT_TYPE = "soc_agent.notification"


class WebhookConfig(HttpConnectorConfig):
    """`base_url` is the webhook's full URL; `credentials` (optional) go in `auth_header`."""

    auth_header: str = Field(default="Authorization", min_length=1, max_length=128)
    auth_scheme: str | None = Field(default="Bearer", description="none: the bare secret")
    signing_secret: SecretRef | None = Field(
        default=None, description="env:NAME or file:/path: HMAC-SHA256 key for the signature"
    )
    signature_header: str = Field(default="X-Soc-Agent-Signature", min_length=1)
    timestamp_header: str = Field(default="X-Soc-Agent-Timestamp", min_length=1)
    delivery_header: str = Field(default="X-Soc-Agent-Delivery", min_length=1)
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra headers sent with every request"
    )

    @field_validator("signing_secret")
    @classmethod
    def _no_literal_signing_secret(
        cls, value: SecretRef | None, info: ValidationInfo
    ) -> SecretRef | None:
        if (
            value is not None
            and value.kind == "literal"
            and not info.data.get("allow_literal_credentials", False)
        ):
            raise ValueError(
                "must be env:NAME or file:/path; a literal secret in the "
                "configuration needs allow_literal_credentials: true"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(
        cls, value: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        for name in value:
            if is_sensitive_key(name) and not info.data.get("allow_literal_credentials", False):
                raise ValueError(
                    f"header {name!r} carries a credential: use `credentials` (with "
                    "`auth_header`) so it is read from env:/file: and scrubbed from logs"
                )
        return value


class WebhookNotifyOutput(NotifyOutput):
    status_code: int
    delivery_id: str


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: `sha256=` + HMAC-SHA256(secret, timestamp + "." + body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Webhook(HttpConnector):
    name = "webhook"
    description = "Generic outgoing webhook: JSON notifications, optionally HMAC-signed"
    config_model: ClassVar[type[HttpConnectorConfig]] = WebhookConfig

    def __init__(self, config: WebhookConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.webhook_config = config
        self._signing_secrets: deque[str] = deque(maxlen=4)
        self._url_secret = _url_tokens(httpx.URL(config.base_url))

    def auth_headers(self, secret: str) -> dict[str, str]:
        cfg = self.webhook_config
        return {cfg.auth_header: f"{cfg.auth_scheme} {secret}" if cfg.auth_scheme else secret}

    def secret_values(self) -> tuple[str, ...]:
        # Tokens in the URL count as secret: incoming-webhook URLs (Slack, Teams, Discord)
        # embed one in the path or query, and errors and logs must not show it.
        return (*super().secret_values(), *self._signing_secrets, *self._url_secret)

    @capability(kind="action", scopes=["notify:send"], risk="low", idempotent=False)
    async def notify(self, args: NotifyInput) -> WebhookNotifyOutput:
        """POST a notification to the configured webhook."""
        cfg = self.webhook_config
        now = self._rt.now()
        delivery = str(uuid.uuid4())
        payload = {
            "type": EVENT_TYPE,
            "id": delivery,
            "sent_at": now.isoformat(),
            **args.model_dump(mode="json"),
        }
        headers = {**cfg.headers, cfg.delivery_header: delivery}
        if cfg.signing_secret is not None:
            secret = await self._signing_secret(cfg.signing_secret)
            timestamp = str(int(now.timestamp()))
            # Sign exactly the bytes httpx will send for this JSON payload.
            body = httpx.Request("POST", cfg.base_url, json=payload).content
            headers[cfg.timestamp_header] = timestamp
            headers[cfg.signature_header] = sign(secret, timestamp, body)
        response = await self.request("POST", cfg.base_url, json=payload, headers=headers)
        if not 200 <= response.status_code < 300:
            raise ConnectorError(
                f"POST to webhook {httpx.URL(cfg.base_url).host}: HTTP {response.status_code} "
                "(a webhook must answer 2xx; redirects are not followed)"
            )
        return WebhookNotifyOutput(
            delivered=True,
            channel=args.channel,
            at=now,
            status_code=response.status_code,
            delivery_id=delivery,
        )

    async def _signing_secret(self, ref: SecretRef) -> str:
        value = await asyncio.to_thread(ref.get) if ref.kind == "file" else ref.get()
        if value not in self._signing_secrets:
            self._signing_secrets.append(value)
        return value


def _url_tokens(url: httpx.URL) -> tuple[str, ...]:
    """Token-like parts of a webhook URL: long mixed letter-and-digit path segments and
    query values. Only those, not the whole path: the gateway scrubs every secret from
    every connector's errors, and a path such as `/api` must not blank other messages."""
    segments = [s for s in url.path.split("/") if len(s) >= 16]
    values = [v for _, v in url.params.multi_items() if len(v) >= 8]
    return tuple(
        part
        for part in (*segments, *values)
        if any(c.isdigit() for c in part) and any(c.isalpha() for c in part)
    )
