"""The topic contract: what each output record's key, value and headers are.

Values are UTF-8 JSON of the canonical models (Decision, Proposal, the action
ledger row, AuditEvent); dead letters carry the original bytes unchanged.
Header names are lower-case and prefixed `soc-`; values are UTF-8 strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from soc_agent.models import Alert, AuditEvent, DeadLetter, Decision, Proposal
from soc_agent.store.base import ActionRecord

__all__ = [
    "DLQ_PREFIX",
    "OutRecord",
    "Source",
    "action_record",
    "audit_record",
    "dead_letter_record",
    "decision_record",
    "decode_headers",
    "proposal_record",
]

DLQ_PREFIX = "soc-dlq-"
JSON = ("content-type", b"application/json")

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Source:
    """Where an input record came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()

    def __str__(self) -> str:
        return f"kafka:{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)


def decode_headers(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """Kafka headers as text (undecodable bytes replaced), the last value of a name winning."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers}


def _h(name: str, value: object) -> tuple[str, bytes]:
    return name, str(value).encode("utf-8")


def decision_record(
    topic: str, decision: Decision, *, alert_id: str, correlation: str, fresh: bool, source: Source
) -> OutRecord:
    """Key: incident id. Value: the Decision. The alert this record answers is a header."""
    return OutRecord(
        topic,
        decision.incident_id.encode(),
        decision.model_dump_json().encode(),
        [
            JSON,
            _h("soc-alert-id", alert_id),
            _h("soc-correlation", correlation),
            _h("soc-fresh", "true" if fresh else "false"),
            _h("soc-source", source),
        ],
    )


def normalized_record(topic: str, alert: Alert, source: Source) -> OutRecord:
    """Key: alert id. Value: the canonical Alert, for the stream app's entity risk."""
    return OutRecord(
        topic,
        alert.id.encode(),
        alert.model_dump_json().encode(),
        [JSON, _h("soc-source", source)],
    )


def proposal_record(topic: str, proposal: Proposal) -> OutRecord:
    """Key: proposal id. Value: the Proposal; the highest `version` is its current state."""
    return OutRecord(
        topic,
        proposal.id.encode(),
        proposal.model_dump_json().encode(),
        [
            JSON,
            _h("soc-proposal-status", proposal.status.value),
            _h("soc-version", proposal.version),
        ],
    )


def action_record(topic: str, record: ActionRecord) -> OutRecord:
    """Key: the action's idempotency key (one effect per key). Value: the ledger row."""
    doc: dict[str, Any] = {
        "idempotency_key": record.idempotency_key,
        "action_id": record.action_id,
        "incident_id": record.incident_id,
        "action": record.action,
        "target": record.target,
        "connector": record.connector,
        "capability": record.capability,
        "status": record.status,
        "result": record.result,
        "error": record.error,
        "claimed_at": record.claimed_at.isoformat(),
        "executed_at": record.executed_at.isoformat() if record.executed_at else None,
        "revert_at": record.revert_at.isoformat() if record.revert_at else None,
        "attempts": record.attempts,
        "request": record.request.model_dump(mode="json"),
    }
    return OutRecord(
        topic,
        record.idempotency_key.encode(),
        json.dumps(doc).encode(),
        [JSON, _h("soc-action-status", record.status)],
    )


def audit_record(topic: str, event: AuditEvent) -> OutRecord:
    """Key: the event's subject. Value: the sealed AuditEvent (seq, prev_hash, hash)."""
    return OutRecord(
        topic,
        event.subject.encode(),
        event.model_dump_json().encode(),
        [JSON, _h("soc-audit-seq", event.seq), _h("soc-audit-hash", event.hash)],
    )


def dead_letter_record(
    topic: str, letter: DeadLetter, source: Source | None = None, *, key: bytes | None = None
) -> OutRecord:
    """Key and value: the original's. Headers: the original's, then why and where from.

    `source` is the Kafka record the letter came from; without one (the webhook)
    the letter's own headers are kept and only its `source` text says where.
    """
    if source is not None:
        headers: Headers = [(k, v) for k, v in source.headers if not k.startswith(DLQ_PREFIX)]
        key = source.key
    else:
        headers = [_h(k, v) for k, v in letter.headers.items() if not k.startswith(DLQ_PREFIX)]
    headers += [
        _h(DLQ_PREFIX + "reason", letter.reason[:2000]),
        _h(DLQ_PREFIX + "id", letter.id),
        _h(DLQ_PREFIX + "source", letter.source),
    ]
    if source is not None:
        headers += [
            _h(DLQ_PREFIX + "topic", source.topic),
            _h(DLQ_PREFIX + "partition", source.partition),
            _h(DLQ_PREFIX + "offset", source.offset),
        ]
    if letter.format_hint:
        headers.append(_h(DLQ_PREFIX + "format-hint", letter.format_hint))
    return OutRecord(topic, key, letter.original, headers)
