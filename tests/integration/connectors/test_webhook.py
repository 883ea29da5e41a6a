"""The generic outgoing webhook over real HTTP: payload, HMAC signature, headers, failures."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import VendorHTTPError
from soc_agent_connectors.local_notifier import LocalNotifier
from soc_agent_connectors.webhook import Webhook, WebhookConfig

from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConfigError, ConnectorError
from soc_agent.gateway import Gateway
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "webhook"
SIGNING_SECRET = "whsec_5b1f0c8e2d7a4f9b3c6e1a8d0f2b4c7e"
TOKEN = "hook-token-8f3a2c1e9d7b5a4f6e0c"
HOOK = "/hooks/soc-agent/T0CONTOSO1/B0SOCHOOK1/4bV9xQ2mZ7kR1tY8"  # a token in the path
NOTE = {
    "channel": "soc",
    "subject": "Host ws-fin-042 isolated",
    "body": "Qakbot loader on ws-fin-042; C2 203.0.113.45 blocked (\u00e9t\u00e9 \u2713).",
    "severity": "high",
}
Make = Callable[..., Webhook]


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
    built: list[Webhook] = []

    def build(**config: Any) -> Webhook:
        config.setdefault("base_url", f"{vendor_server.url}{HOOK}")
        config.setdefault("signing_secret", "env:WEBHOOK_SIGNING_SECRET")
        conn = Webhook(WebhookConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def test_registered_under_its_entry_point_with_the_local_notifiers_input() -> None:
    assert entry_points(group="soc_agent.connectors")["webhook"].load() is Webhook
    webhook, local = Webhook.capabilities()["notify"], LocalNotifier.capabilities()["notify"]
    assert webhook.input_model is local.input_model
    assert (webhook.kind.value, webhook.scopes, webhook.idempotent) == (
        "action",
        ("notify:send",),
        False,
    )


async def test_notify_posts_a_signed_json_payload(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("POST", HOOK, Reply(202, recorded("accepted.json")))
    conn = make(
        credentials="env:WEBHOOK_TOKEN",
        auth_header="X-Hook-Token",
        auth_scheme=None,
        headers={"X-Tenant": "contoso", "User-Agent": "soc-agent/contoso"},
    )
    out = await conn.invoke("notify", NOTE)

    (request,) = vendor_server.calls()
    payload = request.json()
    assert payload == {
        "type": "soc_agent.notification",
        "id": payload["id"],
        "sent_at": "2026-11-20T09:00:00+00:00",
        **NOTE,
    }
    assert request.header("content-type") == "application/json"
    assert request.header("x-soc-agent-delivery") == payload["id"] == out["delivery_id"]
    assert request.header("x-tenant") == "contoso"
    assert request.header("user-agent") == "soc-agent/contoso"
    assert request.header("x-hook-token") == TOKEN
    assert request.header("authorization") is None
    timestamp = request.header("x-soc-agent-timestamp")
    assert timestamp == str(int(fake_time.now().timestamp()))
    expected = hmac.new(
        SIGNING_SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert request.header("x-soc-agent-signature") == f"sha256={expected}"
    assert out == {
        "delivered": True,
        "channel": "soc",
        "at": "2026-11-20T09:00:00Z",
        "status_code": 202,
        "delivery_id": payload["id"],
    }


async def test_the_signature_binds_the_timestamp(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("POST", HOOK, Reply(200, recorded("accepted.json")))
    conn = make()
    await conn.invoke("notify", NOTE)
    fake_time.advance(600)
    await conn.invoke("notify", NOTE)
    first, second = vendor_server.calls()
    assert (
        int(second.header("x-soc-agent-timestamp") or 0)
        - int(first.header("x-soc-agent-timestamp") or 0)
        == 600
    )
    assert first.header("x-soc-agent-delivery") != second.header("x-soc-agent-delivery")
    # A replayer who refreshes the timestamp cannot produce a matching signature.
    replayed = hmac.new(
        SIGNING_SECRET.encode(),
        f"{second.header('x-soc-agent-timestamp')}.".encode() + first.body,
        hashlib.sha256,
    ).hexdigest()
    assert first.header("x-soc-agent-signature") != f"sha256={replayed}"


async def test_without_a_signing_secret_nothing_is_signed(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", HOOK, Reply(204))
    out = await make(signing_secret=None).invoke("notify", NOTE)
    (request,) = vendor_server.calls()
    assert request.header("x-soc-agent-signature") is None
    assert request.header("x-soc-agent-timestamp") is None
    assert request.header("authorization") is None
    assert out["status_code"] == 204


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(302, headers={"Location": "/elsewhere"}), id="302-redirect"),
        pytest.param(Reply(401, recorded("error_401.json")), id="401"),
        pytest.param(Reply(403, body="Forbidden"), id="403"),
        pytest.param(Reply(404, body="Not Found"), id="404"),
        pytest.param(Reply(500, body="Internal Server Error"), id="500"),
        pytest.param(Reply(429, headers={"Retry-After": "3"}), id="429"),
    ],
)
async def test_anything_but_2xx_fails_once_and_is_not_followed(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime, reply: Reply
) -> None:
    vendor_server.route("POST", HOOK, reply)
    vendor_server.route("POST", "/elsewhere", Reply(200, recorded("accepted.json")))
    with pytest.raises(ConnectorError, match=rf"HTTP {reply.status}") as caught:
        await make().invoke("notify", NOTE)
    if reply.status >= 400:
        assert isinstance(caught.value, VendorHTTPError)
    assert [r.path for r in vendor_server.calls()] == [HOOK]  # once, never redirected
    assert fake_time.sleeps == []


async def test_slow_receiver_times_out_without_a_second_post(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", HOOK, Reply(200, recorded("accepted.json"), delay=0.5))
    with pytest.raises(ConnectorError, match=r"timed out after 0.1s"):
        await make(timeout_seconds=0.1).invoke("notify", NOTE)
    assert len(vendor_server.calls()) == 1


async def test_no_secret_reaches_errors_logs_or_audit(
    make: Make,
    vendor_server: VendorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    vendor_server.route(
        "POST",
        HOOK,
        Reply(400, {"error": f"bad signature for secret {SIGNING_SECRET}"}),
        Reply(500, {"message": f"token {TOKEN} rejected"}),
    )
    conn = make(credentials="env:WEBHOOK_TOKEN", cache_ttl_seconds=0)
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    errors: list[str] = []
    try:
        gateway = Gateway({"webhook": conn}, {"webhook": ["notify:send"]}, audit)
        with caplog.at_level(logging.DEBUG):
            for _ in range(2):
                with pytest.raises(ConnectorError) as caught:
                    await gateway.call("webhook", "notify", NOTE, reason="notify")
                errors.append(str(caught.value))
        entries = [e.model_dump_json() for e in await audit.list(limit=10)]
    finally:
        audit.close()
    assert "HTTP 400: bad signature for secret [REDACTED]" in errors[0]
    assert len(entries) == 2 and caplog.records
    secret_path = HOOK.rsplit("/", 1)[1]
    # Only the token is secret: "/hooks" in another connector's errors stays readable.
    assert secret_path in conn.secret_values()
    assert not any("hooks" in value for value in conn.secret_values())
    for where, text in {
        "errors": "\n".join(errors),
        "audit": "\n".join(entries),
        "logs": caplog.text,
    }.items():
        for value in (SIGNING_SECRET, TOKEN, secret_path):
            assert value not in text, f"{value} found in {where}"


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        (
            {"signing_secret": "whsec_literal_in_the_yaml_0123456789"},
            "connectors.webhook.signing_secret",
            "allow_literal_credentials",
        ),
        (
            {"headers": {"Authorization": "Bearer abc123def456"}},
            "connectors.webhook.headers",
            "use `credentials`",
        ),
    ],
)
def test_secrets_in_the_configuration_are_refused(
    settings: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Webhook.from_settings({"base_url": "https://hooks.example.com/x", **settings})
    assert key in str(caught.value) and message in str(caught.value)
    assert "abc123def456" not in str(caught.value)
    assert "whsec_literal_in_the_yaml" not in str(caught.value)
