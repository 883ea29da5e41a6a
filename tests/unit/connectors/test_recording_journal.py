"""The recording executor reads its journal incrementally: what another process appended
is seen, a torn line is skipped, and a journal replaced or cut short is read afresh."""

from __future__ import annotations

from pathlib import Path

from soc_agent_connectors.recording_executor import RecordingExecutor, RecordingExecutorConfig


def _executor(journal: Path) -> RecordingExecutor:
    return RecordingExecutor(RecordingExecutorConfig(journal=str(journal)))


async def _holds(conn: RecordingExecutor, action: str, target: str) -> bool:
    out = await conn.invoke("check_state", {"action": action, "target": target})
    return bool(out["in_effect"])


async def test_another_writer_torn_lines_and_a_replaced_journal(tmp_path: Path) -> None:
    journal = tmp_path / "containment.jsonl"
    one, other = _executor(journal), _executor(journal)
    assert not await _holds(one, "isolate_host", "ws-1")  # no journal yet
    await one.invoke("isolate_host", {"target": "ws-1"})
    assert await _holds(one, "isolate_host", "ws-1")
    await other.invoke("release_host", {"target": "ws-1"})  # another process's append
    assert not await _holds(one, "isolate_host", "ws-1")

    with journal.open("ab") as fh:  # a crash mid-write leaves a torn line
        fh.write(b'{"kind": "host_isolation", "target": "ws-2", "contai')
    assert not await _holds(one, "isolate_host", "ws-2")
    await other.invoke("block_ip", {"target": "203.0.113.9"})  # lands after the torn bytes
    assert await _holds(one, "block_ip", "203.0.113.9") is False  # the joined line is torn
    await other.invoke("block_ip", {"target": "203.0.113.9"})
    assert await _holds(one, "block_ip", "203.0.113.9")

    journal.unlink()  # replaced: what the old journal said no longer holds
    await other.invoke("isolate_host", {"target": "ws-3"})
    assert await _holds(one, "isolate_host", "ws-3")
    assert not await _holds(one, "block_ip", "203.0.113.9")
