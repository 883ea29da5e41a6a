"""The recording executor's journal and the local notifier's outbox are never written (or
read) through a symbolic link: whoever can write their directory cannot redirect the
agent's appends into another file (an audit log, a shell profile) or feed it a state."""

from __future__ import annotations

from pathlib import Path

import pytest
from soc_agent_connectors.local_notifier import LocalNotifier, LocalNotifierConfig
from soc_agent_connectors.recording_executor import RecordingExecutor, RecordingExecutorConfig

from soc_agent.errors import ConnectorError


def _victim(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A file someone else owns, and a link to it where the agent's file belongs."""
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("untouched\n")
    link = tmp_path / name
    link.symlink_to(victim)
    return victim, link


async def test_a_linked_journal_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim, link = _victim(tmp_path, "containment.jsonl")
    executor = RecordingExecutor(RecordingExecutorConfig(journal=str(link)))
    with pytest.raises(ConnectorError, match="symbolic link") as raised:
        await executor.invoke("isolate_host", {"target": "ws-1"})
    assert str(link) in str(raised.value)
    with pytest.raises(ConnectorError, match="symbolic link"):
        await executor.invoke("check_state", {"action": "isolate_host", "target": "ws-1"})
    assert victim.read_text() == "untouched\n"


async def test_a_linked_outbox_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim, link = _victim(tmp_path, "notifications.jsonl")
    notifier = LocalNotifier(LocalNotifierConfig(outbox=str(link)))
    with pytest.raises(ConnectorError, match="symbolic link"):
        await notifier.invoke("notify", {"channel": "soc", "subject": "hello"})
    assert victim.read_text() == "untouched\n"


async def test_a_plain_journal_still_works(tmp_path: Path) -> None:
    journal = tmp_path / "containment.jsonl"
    executor = RecordingExecutor(RecordingExecutorConfig(journal=str(journal)))
    await executor.invoke("isolate_host", {"target": "ws-1"})
    out = await executor.invoke("check_state", {"action": "isolate_host", "target": "ws-1"})
    assert out["in_effect"] is True
    assert journal.stat().st_mode & 0o777 == 0o600
