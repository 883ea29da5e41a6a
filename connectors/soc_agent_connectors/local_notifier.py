"""Local notifier: appends notifications to an outbox file (offline stand-in for Slack)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from soc_agent_connectors import Connector, capability
from soc_agent_connectors._local_data import DATA_PATH, open_private_for_append

__all__ = ["LocalNotifier"]


class LocalNotifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outbox: str = Field(default="soc-agent-notifications.jsonl", json_schema_extra=DATA_PATH)


class NotifyInput(BaseModel):
    channel: str = Field(default="soc", max_length=128)
    subject: str = Field(max_length=1024)
    body: str = Field(default="", max_length=32768)
    severity: Literal["informational", "low", "medium", "high", "critical"] = "medium"


class NotifyOutput(BaseModel):
    delivered: bool
    channel: str
    at: datetime


class LocalNotifier(Connector):
    name = "notifier"
    description = "Writes notifications to a local outbox file"
    config_model = LocalNotifierConfig

    def __init__(self, config: LocalNotifierConfig) -> None:
        super().__init__(config)
        self._path = Path(config.outbox)

    @capability(kind="action", scopes=["notify:send"], reversible=False, risk="low")
    async def notify(self, args: NotifyInput) -> NotifyOutput:
        """Send a notification to a channel."""
        now = datetime.now(UTC)
        line = json.dumps({"at": now.isoformat(), **args.model_dump()}) + "\n"
        await asyncio.to_thread(self._append, line)
        return NotifyOutput(delivered=True, channel=args.channel, at=now)

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open_private_for_append(self._path) as fh:
            fh.write(line)
