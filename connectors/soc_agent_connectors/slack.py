"""Slack notifications through the Web API's `chat.postMessage`.

`notify` takes the same input as the local `notifier` connector (channel,
subject, body, severity), so a deployment switches between them by
configuration. Slack answers HTTP 200 with `{"ok": false, "error": ...}`
for most failures; those become ConnectorErrors naming Slack's error code.
Posting is not idempotent, so nothing is retried after Slack may have
received the message (a 429 or 5xx fails the call; the agent's own retry
policy decides). Text from alerts is escaped, so it cannot mention
`@channel` or a user, and link previews are off, so Slack never fetches a URL
an attacker put in an alert.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field

from soc_agent.errors import ConnectorError
from soc_agent_connectors import HttpConnector, HttpConnectorConfig, HttpRuntime, capability
from soc_agent_connectors.local_notifier import NotifyInput, NotifyOutput

__all__ = ["Slack", "SlackConfig", "SlackNotifyOutput", "slack_escape"]

log = logging.getLogger("soc_agent.connectors.slack")

# Slack's documented limits: header text 150 characters, section text 3,000.
_HEADER_MAX = 150
_SECTION_MAX = 3000
# Errors after which a re-read bot token may succeed (and nothing was posted).
_AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired"})
# Without the charset Slack answers with a `missing_charset` warning.
_JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}
_SEVERITY_MARK = {
    "informational": ":information_source:",
    "low": ":large_blue_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":large_orange_circle:",
    "critical": ":red_circle:",
}


class SlackConfig(HttpConnectorConfig):
    base_url: str = "https://slack.com/api"
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="logical channel (e.g. soc) -> Slack channel ID; others are sent as given",
    )
    # chat.postMessage allows about one message per second per channel.
    rate_limit_per_second: float | None = Field(default=1.0, gt=0)


class SlackNotifyOutput(NotifyOutput):
    channel_id: str = Field(description="the Slack channel the message was posted to")
    ts: str = Field(description="Slack's message timestamp (its id within the channel)")


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack(HttpConnector):
    name = "slack"
    description = "Slack notifications (Web API chat.postMessage, bot token)"
    config_model: ClassVar[type[HttpConnectorConfig]] = SlackConfig

    def __init__(self, config: SlackConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.slack_config = config

    @capability(kind="action", scopes=["notify:send"], risk="low", idempotent=False)
    async def notify(self, args: NotifyInput) -> SlackNotifyOutput:
        """Post a notification to a Slack channel."""
        channel = self.slack_config.channels.get(args.channel, args.channel)
        message = _message(channel, args)
        reauthorised = False
        while True:
            response = await self.request(
                "POST", "/chat.postMessage", json=message, headers=_JSON_UTF8
            )
            body = self.json_of(response)
            if not isinstance(body, dict):
                raise ConnectorError("slack chat.postMessage: the answer is not a JSON object")
            if body.get("ok") is True:
                break
            error = str(body.get("error") or "unknown_error")
            if error in _AUTH_ERRORS and not reauthorised:
                reauthorised = True
                if await self.on_unauthorized():
                    log.info("slack chat.postMessage: %s; token re-read, retrying once", error)
                    continue
            raise ConnectorError(self.redact(_describe(error, body, args.channel)))
        for warning in (body.get("response_metadata") or {}).get("warnings") or []:
            log.warning("slack chat.postMessage warning: %s", warning)
        ts = str(body.get("ts") or "")
        return SlackNotifyOutput(
            delivered=True,
            channel=args.channel,
            at=self._posted_at(ts),
            channel_id=str(body.get("channel") or channel),
            ts=ts,
        )

    def _posted_at(self, ts: str) -> datetime:
        """When Slack posted it (its `ts` is epoch seconds), else now."""
        try:
            return datetime.fromtimestamp(float(ts), UTC)
        except ValueError:
            return self._rt.now()


def _message(channel: str, args: NotifyInput) -> dict[str, Any]:
    mark = _SEVERITY_MARK[args.severity]
    subject = args.subject.strip() or "(no subject)"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(subject, _HEADER_MAX), "emoji": True},
        }
    ]
    if args.body.strip():
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(slack_escape(args.body), _SECTION_MAX)},
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"{mark} *Severity:* {args.severity} | soc-agent"}
            ],
        }
    )
    return {
        "channel": channel,
        # The fallback shown in notifications and by clients that cannot render blocks.
        "text": f"{mark} [{args.severity.upper()}] {slack_escape(subject)}",
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _describe(error: str, body: dict[str, Any], channel: str) -> str:
    hints = {
        "channel_not_found": f"channel {channel!r} does not exist or the bot cannot see it",
        "not_in_channel": f"the bot is not a member of channel {channel!r}; invite it",
        "is_archived": f"channel {channel!r} is archived",
        "invalid_auth": "the bot token is invalid (check `credentials`)",
        "not_authed": "no bot token was sent (check `credentials`)",
        "token_revoked": "the bot token was revoked",
        "missing_scope": f"the token lacks scope {body.get('needed') or 'chat:write'}",
    }
    hint = hints.get(error)
    return f"slack chat.postMessage: {error}" + (f" ({hint})" if hint else "")
