"""Slack `chat.postMessage` over real HTTP, against answers recorded in the documented shapes."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from soc_agent_connectors import VendorHTTPError
from soc_agent_connectors.local_notifier import LocalNotifier
from soc_agent_connectors.slack import Slack, SlackConfig

from soc_agent.audit import SQLiteAuditLog
from soc_agent.errors import ConnectorError
from soc_agent.gateway import Gateway
from tests.integration.connectors.conftest import FakeTime
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors" / "slack"
TOKEN = "xoxb-1093847562-4820193847561-Qm7TzR2vK9pL4wX8nB3cF6hJ"
ROTATED = "xoxb-1093847562-4820193847561-Vn5YsD1gH8kM2qW6eT9rU3aZ"  # same length
POST = "/api/chat.postMessage"
CHANNEL_ID = "C0123SOC456"
NOTE = {
    "channel": "soc",
    "subject": "Host ws-fin-042 isolated",
    "body": "Qakbot loader *Invoice_2026-11-18.dll* on ws-fin-042; C2 203.0.113.45 blocked.",
    "severity": "critical",
}
Make = Callable[..., Slack]


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
async def make(
    vendor_server: VendorServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    built: list[Slack] = []

    def build(**config: Any) -> Slack:
        config.setdefault("base_url", f"{vendor_server.url}/api")
        config.setdefault("credentials", "env:SLACK_BOT_TOKEN")
        config.setdefault("channels", {"soc": CHANNEL_ID})
        conn = Slack(SlackConfig(**config), runtime=fake_time.runtime())
        built.append(conn)
        return conn

    yield build
    for conn in built:
        await conn.aclose()


def test_registered_under_its_entry_point_with_the_local_notifiers_input() -> None:
    assert entry_points(group="soc_agent.connectors")["slack"].load() is Slack
    slack, local = Slack.capabilities()["notify"], LocalNotifier.capabilities()["notify"]
    assert slack.input_model is local.input_model  # the agent can use either
    assert (slack.kind.value, slack.scopes, slack.idempotent) == ("action", ("notify:send",), False)


async def test_notify_posts_blocks_with_the_bot_token(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("post_message_ok.json")))
    out = await make().invoke("notify", NOTE)

    (request,) = vendor_server.calls()
    assert request.header("authorization") == f"Bearer {TOKEN}"
    assert request.header("content-type") == "application/json; charset=utf-8"
    assert request.json() == {
        "channel": CHANNEL_ID,  # the logical channel, resolved by configuration
        "text": ":red_circle: [CRITICAL] Host ws-fin-042 isolated",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "Host ws-fin-042 isolated", "emoji": True},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": NOTE["body"]}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": ":red_circle: *Severity:* critical | soc-agent"}
                ],
            },
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    assert out == {
        "delivered": True,
        "channel": "soc",
        "at": datetime.fromtimestamp(1795078812.0002, UTC).isoformat().replace("+00:00", "Z"),
        "channel_id": CHANNEL_ID,
        "ts": "1795078812.000200",
    }


async def test_alert_text_cannot_mention_everyone_or_hide_links(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("post_message_ok.json")))
    note = {
        **NOTE,
        "channel": "#soc-alerts",
        "subject": "<!channel> phish from <@U024BE7LH>",
        "body": "Click <https://login.account-verify.example|your mailbox> & reset <!here>",
        "severity": "low",
    }
    await make().invoke("notify", note)
    sent = vendor_server.calls()[0].json()
    assert sent["channel"] == "#soc-alerts"  # not mapped: sent as given
    assert sent["text"] == (
        ":large_blue_circle: [LOW] &lt;!channel&gt; phish from &lt;@U024BE7LH&gt;"
    )
    assert sent["blocks"][1]["text"]["text"] == (
        "Click &lt;https://login.account-verify.example|your mailbox&gt; &amp; reset &lt;!here&gt;"
    )
    assert sent["blocks"][0]["text"]["type"] == "plain_text"  # headers never parse mentions


async def test_long_text_is_clipped_to_slacks_block_limits(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("post_message_ok.json")))
    await make().invoke("notify", {**NOTE, "subject": "S" * 400, "body": "b" * 5000})
    header, section, _ = vendor_server.calls()[0].json()["blocks"]
    assert len(header["text"]["text"]) == 150 and header["text"]["text"].endswith("\u2026")
    assert len(section["text"]["text"]) == 3000


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("error_channel_not_found.json", "channel_not_found .channel 'soc' does not exist"),
        ("error_not_in_channel.json", "not_in_channel .the bot is not a member"),
        ("error_missing_scope.json", "missing_scope .the token lacks scope chat:write"),
        ("error_fatal.json", "fatal_error$"),
    ],
)
async def test_ok_false_answers_are_errors_and_never_retried(
    make: Make, vendor_server: VendorServer, fixture: str, message: str
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded(fixture)))
    with pytest.raises(ConnectorError, match=rf"^slack chat.postMessage: {message}"):
        await make().invoke("notify", NOTE)
    assert len(vendor_server.calls()) == 1


async def test_invalid_auth_fails_without_revealing_the_token(
    make: Make, vendor_server: VendorServer, caplog: pytest.LogCaptureFixture
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("error_invalid_auth.json")))
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectorError, match="invalid_auth"):
        await make().invoke("notify", NOTE)
    assert len(vendor_server.calls()) == 1  # the token did not change: no second try
    assert caplog.records
    assert TOKEN not in caplog.text


async def test_a_rotated_token_is_reread_once_after_invalid_auth(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    secret = tmp_path / "slack_bot_token"
    secret.write_text(TOKEN, encoding="utf-8")
    valid = [TOKEN]

    def slack(request: RecordedRequest) -> Reply:
        if request.header("authorization") != f"Bearer {valid[0]}":
            return Reply(200, recorded("error_invalid_auth.json"))
        return Reply(200, recorded("post_message_ok.json"))

    vendor_server.route("POST", POST, slack)
    conn = make(credentials=f"file:{secret}")
    await conn.invoke("notify", NOTE)
    # Rotated in place (same size, same mtime): only Slack's invalid_auth reveals it.
    before = os.stat(secret)
    secret.write_text(ROTATED, encoding="utf-8")
    os.utime(secret, ns=(before.st_atime_ns, before.st_mtime_ns))
    valid[0] = ROTATED
    out = await conn.invoke("notify", NOTE)
    assert out["delivered"] is True
    assert [r.header("authorization") for r in vendor_server.calls()] == [
        f"Bearer {TOKEN}",
        f"Bearer {TOKEN}",  # answered invalid_auth: nothing was posted
        f"Bearer {ROTATED}",  # re-read once, posted once
    ]


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
async def test_http_errors_fail_once(make: Make, vendor_server: VendorServer, status: int) -> None:
    vendor_server.route("POST", POST, Reply(status, body="<html><h1>Error</h1></html>"))
    with pytest.raises(VendorHTTPError, match=rf"HTTP {status}") as caught:
        await make().invoke("notify", NOTE)
    assert caught.value.status_code == status
    assert len(vendor_server.calls()) == 1  # a post may have landed: never retried


async def test_rate_limited_post_is_not_retried(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route(
        "POST",
        POST,
        Reply(429, recorded("error_ratelimited.json"), headers={"Retry-After": "30"}),
        Reply(200, recorded("post_message_ok.json")),
    )
    with pytest.raises(VendorHTTPError, match=r"HTTP 429: ratelimited \(not retried") as caught:
        await make().invoke("notify", NOTE)
    assert caught.value.status_code == 429
    assert len(vendor_server.calls()) == 1
    assert fake_time.sleeps == []


async def test_slow_answer_times_out_without_a_second_post(
    make: Make, vendor_server: VendorServer
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("post_message_ok.json"), delay=0.5))
    with pytest.raises(ConnectorError, match=r"POST /api/chat.postMessage: timed out after 0.1s"):
        await make(timeout_seconds=0.1, max_retries=3).invoke("notify", NOTE)
    assert len(vendor_server.calls()) == 1


async def test_slack_warnings_are_logged(
    make: Make, vendor_server: VendorServer, caplog: pytest.LogCaptureFixture
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("post_message_ok_warning.json")))
    with caplog.at_level(logging.WARNING, logger="soc_agent.connectors.slack"):
        out = await make().invoke("notify", NOTE)
    assert out["ts"] == "1795078900.000300"
    assert "missing_charset" in caplog.text


async def test_notifications_are_rate_limited_per_the_slack_guidance(
    make: Make, vendor_server: VendorServer, fake_time: FakeTime
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("post_message_ok.json")))
    conn = make()
    for _ in range(3):
        await conn.invoke("notify", NOTE)
    assert fake_time.sleeps == [1.0, 1.0]  # about one message a second
    assert len(vendor_server.calls()) == 3  # an action: never cached


async def test_gateway_audits_the_notification_without_the_token(
    make: Make, vendor_server: VendorServer, tmp_path: Path
) -> None:
    vendor_server.route("POST", POST, Reply(200, recorded("error_invalid_auth.json")))
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    try:
        gateway = Gateway({"slack": make()}, {"slack": ["notify:send"]}, audit)
        with pytest.raises(ConnectorError, match=r"^slack\.notify: slack chat\.postMessage"):
            await gateway.call("slack", "notify", NOTE, reason="notify analyst")
        (event,) = await audit.list(limit=10)
    finally:
        audit.close()
    assert (event.action, event.subject, event.outcome) == ("connector.notify", "slack", "error")
    assert event.details["args"] == NOTE
    assert TOKEN not in event.model_dump_json()
