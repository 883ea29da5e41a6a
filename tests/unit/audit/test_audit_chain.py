"""The hash chain on its own: canonical form, hashes, and what verification catches."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from soc_agent.audit import GENESIS, canonical, compute_hash, seal, verify_events
from soc_agent.audit.chain import KEYED_ACTION, key_id
from soc_agent.models import AuditEvent

T0 = datetime(2024, 11, 5, 9, 14, 27, 123456, tzinfo=UTC)
KEY = bytes.fromhex("5c1f8e0b2a7d4c93e6f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9")

EVENTS = [
    AuditEvent(
        actor="soc-agent",
        action="alert.correlated",
        subject="inc-3f2a9c1d8e7b6a50",
        reason="new incident: Suspicious PowerShell Encoded Command",
        outcome="new",
        evidence_ref="alert:ecs:4f1c9a0000000001e2b7",
        details={"alert_id": "ecs:4f1c9a0000000001e2b7", "severity": "high"},
        at=T0,
    ),
    AuditEvent(
        actor="soc-agent",
        action="decision.made",
        subject="inc-3f2a9c1d8e7b6a50",
        reason="score 92 >= execute_at 90 (playbook powershell-encoded, rule isolate)",
        outcome="executed",
        evidence_ref="investigation:inv-7d1e",
        details={"score": 92.5, "breakdown": [{"rule": "vt_malicious", "points": 40}]},
        at=T0 + timedelta(seconds=4),
    ),
    AuditEvent(
        actor="soc-agent",
        action="action.executed",
        subject="host:wks-fin-042",
        reason="isolate_host via crowdstrike.contain_host",
        outcome="ok",
        details={"idempotency_key": "a9d3e1", "revert_after_seconds": 86400},
        at=T0 + timedelta(seconds=6),
    ),
    AuditEvent(
        actor="analyst:m.rossi",
        action="proposal.approved",
        subject="prop-51c0",
        reason="confirmed phishing campaign, user clicked",
        outcome="approved",
        details={"comment": "ok to disable", "approvals": 2},
        at=T0 + timedelta(minutes=12),
    ),
    AuditEvent(
        actor="soc-agent",
        action="gateway.denied",
        subject="okta.disable_user",
        reason="missing scopes: user:disable",
        outcome="denied",
        details={},
        at=T0 + timedelta(minutes=13),
    ),
]


def chain(events: list[AuditEvent], key: bytes | None = None) -> list[AuditEvent]:
    out: list[AuditEvent] = []
    prev = GENESIS
    for seq, event in enumerate(events, start=1):
        sealed = seal(event, seq=seq, prev_hash=prev, key=key)
        assert sealed.hash is not None
        prev = sealed.hash
        out.append(sealed)
    return out


# -- canonical form and hashes ---------------------------------------------------------


def test_canonical_is_sorted_compact_json_of_the_hashed_fields() -> None:
    event = chain(EVENTS[:1])[0]
    data = canonical(event)
    assert b" " not in data.replace(b"new incident: Suspicious PowerShell Encoded Command", b"")
    doc = json.loads(data)
    assert list(doc) == sorted(doc)
    assert set(doc) == {
        "seq", "at", "actor", "action", "subject", "reason", "outcome",
        "evidence_ref", "details", "prev_hash",
    }  # fmt: skip
    assert doc["at"] == "2024-11-05T09:14:27.123456Z"
    assert doc["seq"] == 1
    assert doc["prev_hash"] == GENESIS
    assert compute_hash(event) == hashlib.sha256(data).hexdigest()


def test_time_is_hashed_in_utc_whatever_the_zone() -> None:
    paris = timezone(timedelta(hours=1))
    utc = EVENTS[0].model_copy(update={"seq": 1, "prev_hash": GENESIS})
    local = utc.model_copy(update={"at": T0.astimezone(paris)})
    naive = utc.model_copy(update={"at": T0.replace(tzinfo=None)})
    assert canonical(utc) == canonical(local) == canonical(naive)


def test_hmac_hash_differs_from_plain_and_by_key() -> None:
    event = chain(EVENTS[:1])[0]
    plain = compute_hash(event)
    keyed = compute_hash(event, key=KEY)
    assert len(keyed) == 64
    assert keyed != plain
    assert keyed != compute_hash(event, key=b"another key")


def test_details_that_json_cannot_hold_are_rejected() -> None:
    event = EVENTS[0].model_copy(update={"details": {"handle": object()}})
    with pytest.raises(ValueError, match="serialize"):
        seal(event, seq=1, prev_hash=GENESIS)


def test_non_finite_numbers_are_hashed_as_stored_null() -> None:
    sealed = seal(
        EVENTS[0].model_copy(update={"details": {"score": float("nan")}}), seq=1, prev_hash=GENESIS
    )
    assert sealed.details == {"score": None}
    assert verify_events([sealed]).ok


def test_seal_normalises_time_and_details_as_stored() -> None:
    paris = timezone(timedelta(hours=1))
    event = EVENTS[0].model_copy(
        update={"at": T0.astimezone(paris), "details": {"when": T0, "hosts": ("a", "b")}}
    )
    sealed = seal(event, seq=7, prev_hash="ab" * 32)
    assert sealed.at == T0
    assert sealed.at.utcoffset() == timedelta(0)
    assert sealed.details == {"when": "2024-11-05T09:14:27.123456Z", "hosts": ["a", "b"]}
    assert (sealed.seq, sealed.prev_hash) == (7, "ab" * 32)
    assert sealed.hash == compute_hash(sealed)


# -- verification ----------------------------------------------------------------------


def test_intact_chain_verifies() -> None:
    events = chain(EVENTS)
    result = verify_events(events)
    assert result.ok
    assert result.count == 5
    assert result.head == events[-1].hash
    assert result.first_bad_seq is None
    assert result.problem is None


def test_empty_chain_verifies_with_genesis_head() -> None:
    result = verify_events([])
    assert (result.ok, result.count, result.head) == (True, 0, GENESIS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "analyst:attacker"),
        ("action", "decision.overridden"),
        ("subject", "inc-0000000000000000"),
        ("reason", "score 10 < propose_at 60"),
        ("outcome", "skipped"),
        ("evidence_ref", "investigation:inv-forged"),
        ("details", {"score": 12.5, "breakdown": []}),
        ("at", T0 + timedelta(days=1)),
        ("prev_hash", "f" * 64),
        ("hash", "e" * 64),
    ],
)
def test_modified_entry_is_detected(field: str, value: Any) -> None:
    events = chain(EVENTS)
    events[1] = events[1].model_copy(update={field: value})
    result = verify_events(events)
    assert not result.ok
    assert result.first_bad_seq == 2
    assert result.count == 1
    assert result.head == events[0].hash
    assert result.problem is not None
    assert "entry 2" in result.problem


def test_modified_and_rehashed_entry_breaks_the_next_link() -> None:
    events = chain(EVENTS)
    forged = events[2].model_copy(update={"outcome": "failed"})
    events[2] = forged.model_copy(update={"hash": compute_hash(forged)})
    result = verify_events(events)
    assert result.first_bad_seq == 4
    assert result.problem is not None
    assert "does not link to entry 3" in result.problem


@pytest.mark.parametrize(("index", "bad_seq"), [(0, 1), (2, 3)])
def test_deleted_entry_is_detected(index: int, bad_seq: int) -> None:
    events = chain(EVENTS)
    del events[index]
    result = verify_events(events)
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert result.problem is not None
    assert f"entry {bad_seq} is missing" in result.problem


def test_deleted_tail_needs_an_anchor() -> None:
    events = chain(EVENTS)
    anchor = (len(events), events[-1].hash)
    truncated = events[:-2]
    assert verify_events(truncated).ok  # the chain alone cannot tell
    result = verify_events(truncated, expected_count=anchor[0], expected_head=anchor[1])
    assert not result.ok
    assert result.first_bad_seq == 4
    assert result.problem is not None
    assert "truncated" in result.problem
    assert not verify_events(truncated, expected_count=5).ok
    assert not verify_events(truncated, expected_head=anchor[1]).ok


def test_anchor_allows_growth_but_not_rewriting() -> None:
    events = chain(EVENTS)
    count, head = 3, events[2].hash
    assert head is not None
    assert verify_events(events, expected_count=count, expected_head=head).ok
    assert verify_events(events, expected_head=head).ok
    # a chain rebuilt from entry 2 on (no key needed) keeps its shape but not the anchor
    rebuilt = chain([EVENTS[0], EVENTS[1].model_copy(update={"outcome": "skipped"}), *EVENTS[2:]])
    assert verify_events(rebuilt).ok
    result = verify_events(rebuilt, expected_count=count, expected_head=head)
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_inserted_entry_is_detected_even_with_a_valid_own_hash() -> None:
    events = chain(EVENTS)
    forged = seal(
        AuditEvent(
            actor="analyst:m.rossi",
            action="proposal.approved",
            subject="prop-6666",
            reason="approve all",
            outcome="approved",
            at=T0 + timedelta(seconds=5),
        ),
        seq=3,
        prev_hash=events[1].hash or "",
    )
    shifted = [e.model_copy(update={"seq": (e.seq or 0) + 1}) for e in events[2:]]
    result = verify_events([*events[:2], forged, *shifted])
    assert not result.ok
    assert result.first_bad_seq == 4
    assert result.count == 3  # the forged entry itself looks fine; the next one exposes it


def test_reordered_entries_are_detected() -> None:
    events = chain(EVENTS)
    swapped = [events[0], events[3], events[2], events[1], events[4]]
    result = verify_events(swapped)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem is not None
    assert "entry 2 is missing" in result.problem
    assert "reordered" in result.problem
    # swapping the seq values too (as an UPDATE on the table would)
    renumbered = [
        events[0],
        events[3].model_copy(update={"seq": 2}),
        events[2],
        events[1].model_copy(update={"seq": 4}),
        events[4],
    ]
    result = verify_events(renumbered)
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_keyed_chain_cannot_be_rebuilt_without_the_key() -> None:
    events = chain(EVENTS, key=KEY)
    assert verify_events(events, key=KEY).ok
    assert verify_events(events).first_bad_seq == 1  # verifying without the key fails
    assert verify_events(events, key=b"guess").first_bad_seq == 1
    # An attacker rewrites entry 2 and rebuilds the chain after it, linked to the
    # genuine entry 1 but hashed without the key (they do not hold it).
    rebuilt = [events[0]]
    tampered = [EVENTS[1].model_copy(update={"outcome": "skipped"}), *EVENTS[2:]]
    for seq, event in enumerate(tampered, start=2):
        rebuilt.append(seal(event, seq=seq, prev_hash=rebuilt[-1].hash or ""))
    result = verify_events(rebuilt, key=KEY)
    assert (result.ok, result.first_bad_seq, result.count) == (False, 2, 1)
    assert result.problem is not None
    assert "wrong key" in result.problem
    # rebuilding the whole chain without the key fails at entry 1
    assert verify_events(chain([EVENTS[0], *tampered]), key=KEY).first_bad_seq == 1


def test_missing_chain_fields_are_reported() -> None:
    events = chain(EVENTS)
    events[2] = events[2].model_copy(update={"hash": None})
    result = verify_events(events)
    assert result.first_bad_seq == 3
    events = chain(EVENTS)
    events[0] = events[0].model_copy(update={"seq": None})
    assert verify_events(events).first_bad_seq == 1


# -- property: any single-field mutation is detected ------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_details = st.dictionaries(st.text(max_size=12), _json_values, max_size=4)
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_events = st.builds(
    AuditEvent,
    actor=st.sampled_from(["soc-agent", "analyst:m.rossi", "analyst:k.tanaka"]),
    action=st.sampled_from(["decision.made", "action.executed", "proposal.rejected"]),
    subject=st.text(min_size=1, max_size=30),
    reason=st.text(max_size=40),
    outcome=st.sampled_from(["", "ok", "failed", "denied"]),
    evidence_ref=st.none() | st.text(max_size=20),
    details=_details,
    at=_times,
)
_hex = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.none() | st.integers(-5, 50),
    "at": _times,
    "actor": st.text(max_size=20),
    "action": st.text(max_size=20),
    "subject": st.text(max_size=20),
    "reason": st.text(max_size=40),
    "outcome": st.text(max_size=10),
    "evidence_ref": st.none() | st.text(max_size=20),
    "details": _details,
    "prev_hash": st.none() | _hex,
    "hash": st.none() | _hex,
}


@settings(max_examples=400, deadline=None)
@given(
    events=st.lists(_events, min_size=1, max_size=8),
    key=st.none() | st.binary(min_size=16, max_size=32),
    data=st.data(),
)
def test_any_single_field_mutation_is_detected(
    events: list[AuditEvent], key: bytes | None, data: st.DataObject
) -> None:
    sealed = chain(events, key=key)
    assert verify_events(sealed, key=key).ok
    index = data.draw(st.integers(0, len(sealed) - 1), label="index")
    field = data.draw(st.sampled_from(sorted(_MUTATIONS)), label="field")
    value = data.draw(_MUTATIONS[field], label="value")
    original = sealed[index]
    mutated = original.model_copy(update={field: value})
    if field == "hash":
        assume(mutated.hash != original.hash)
    elif field in ("seq", "prev_hash") and value is None:
        assume(original.model_dump()[field] is not None)
    else:
        assume(canonical(mutated) != canonical(original))
    sealed[index] = mutated

    result = verify_events(sealed, key=key)

    assert not result.ok
    assert result.first_bad_seq == index + 1
    assert result.count == index
    assert result.problem is not None
    assert f"entry {index + 1}" in result.problem


def marker(key: bytes) -> AuditEvent:
    return AuditEvent(
        actor="soc-agent",
        action=KEYED_ACTION,
        subject="audit",
        outcome="keyed",
        details={"key_id": key_id(key), "algorithm": "hmac-sha256"},
        at=T0,
    )


def keyed_after_legacy(key: bytes) -> list[AuditEvent]:
    """A chain begun unkeyed (entries 1-2), keyed from its marker (entry 3) on."""
    out: list[AuditEvent] = []
    prev = GENESIS
    for seq, (event, sealing) in enumerate(
        [(EVENTS[0], None), (EVENTS[1], None), (marker(key), key), (EVENTS[2], key)], start=1
    ):
        out.append(seal(event, seq=seq, prev_hash=prev, key=sealing))
        prev = out[-1].hash or ""
    return out


def test_a_chain_keyed_from_its_marker_verifies_with_the_key_only() -> None:
    events = keyed_after_legacy(KEY)
    result = verify_events(events, key=KEY)
    assert (result.ok, result.count, result.keyed) == (True, 4, True)
    without = verify_events(events)
    assert (without.ok, without.first_bad_seq) == (False, 3)
    assert without.problem is not None and "without the audit key" in without.problem
    wrong = verify_events(events, key=b"another key of thirty-two bytes!")
    assert (wrong.ok, wrong.first_bad_seq) == (False, 3)
    assert wrong.problem is not None and "wrong key" in wrong.problem


def test_a_chain_rebuilt_without_the_key_fails_even_when_it_drops_the_marker() -> None:
    # The forger holds no key: they rebuild the whole chain as plain SHA-256.
    forged = chain([EVENTS[0], EVENTS[1], EVENTS[2].model_copy(update={"outcome": "skipped"})])
    assert verify_events(forged).ok  # the unkeyed verifier cannot tell ...
    assert not verify_events(forged).keyed  # ... and says so
    result = verify_events(forged, key=KEY)
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert result.problem is not None and "not sealed with the audit key" in result.problem


def test_plain_entries_after_the_marker_are_forgeries() -> None:
    events = keyed_after_legacy(KEY)
    events.append(seal(EVENTS[3], seq=5, prev_hash=events[-1].hash or ""))
    result = verify_events(events, key=KEY)
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_every_anchor_is_checked() -> None:
    events = chain(EVENTS)
    anchors = {2: events[1].hash or "", len(events): events[-1].hash or ""}
    assert verify_events(events, anchors=anchors).ok
    rebuilt = chain([EVENTS[0], EVENTS[1].model_copy(update={"outcome": "x"}), *EVENTS[2:]])
    assert verify_events(rebuilt, anchors=anchors).first_bad_seq == 2
    truncated = verify_events(events[:3], anchors=anchors)
    assert (truncated.ok, truncated.first_bad_seq) == (False, 4)
    assert truncated.problem is not None and "truncated" in truncated.problem
