"""Vendor-shaped alert streams for the Kafka tests: Suricata EVE alerts and Falcon detections.

Alerts come from `soc_agent_samples.storm` with its default (small) pools, so
they group into incidents,
some Suricata alerts repeat a fingerprint (suppressed duplicates), a share of
records is published twice (redeliveries, as an at-least-once pipeline does)
and a share is malformed in the ways real pipelines break records.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from soc_agent_samples.storm import Pools, crowdstrike, document, suricata

from soc_agent.ingest import parse_payload

__all__ = ["Stream", "crowdstrike", "make_stream", "malformed", "suricata"]


def malformed(i: int) -> bytes:
    """A broken record, one of the ways real pipelines break them; distinct per `i`."""
    kind = i % 6
    if kind == 0:  # truncated in transit
        return b'{"timestamp": "2026-11-20T08:00:00+0000", "flow_id": %d, "src_ip": ' % i
    if kind == 1:  # not UTF-8
        return b"\xff\xfe\x00garbage-%d" % i
    if kind == 2:  # Suricata, but not an alert event
        return b'{"event_type": "flow", "flow_id": %d, "src_ip": "10.0.0.1"}' % i
    if kind == 3:  # JSON no normaliser knows
        return b'{"hello": "world", "n": %d}' % i
    if kind == 4:  # empty record
        return b""
    return b'{"metadata": {"eventType": "EPPDetectionSummaryEvent", "offset": %d}, "event": 7}' % i


@dataclass
class Stream:
    """The records to publish, and what the test must find for them."""

    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    alert_ids: set[str] = field(default_factory=set)  # every well-formed alert
    malformed: list[bytes] = field(default_factory=list)  # one DLQ record each
    redelivered: int = 0


def make_stream(
    n: int, *, malformed_share: float = 0.05, redeliver_every: int = 10, seed: int = 7
) -> Stream:
    """`n` well-formed records (half Suricata, half Falcon), redeliveries and malformed ones."""
    rng = random.Random(seed)
    out = Stream()
    bad = int(n * malformed_share)
    bad_at = set(rng.sample(range(n), bad))
    for i in range(n):
        value = json.dumps(document(i, rng, Pools())).encode()
        alerts = parse_payload(value, source="gen").alerts
        assert len(alerts) == 1, "the generator must produce well-formed alerts"
        alert = alerts[0]
        key = next((e.key for e in alert.entities if e.type.value in ("host", "ip")), None)
        out.records.append((key.encode() if key else None, value))
        out.alert_ids.add(alert.id)
        if i % redeliver_every == 0:
            out.records.append((key.encode() if key else None, value))
            out.redelivered += 1
        if i in bad_at:
            junk = malformed(i)
            out.records.append((b"junk", junk))
            out.malformed.append(junk)
    return out
