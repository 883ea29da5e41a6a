"""Closings on the verdicts topic are authenticated like approvals: signed by the API
that authenticated the analyst, else refused with why; an authentic but old one is
reported stale rather than refused, so a worker can recognise a closing it already kept."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from soc_agent.models import ApprovalVerdict, Approver, IncidentVerdict, Role, Verdict
from soc_agent.pipeline.closing import verdict_id
from soc_agent.runtime.kafka.signed_verdicts import (
    UnauthenticatedVerdict,
    sign_closing,
    sign_verdict,
    verify_closing,
    verify_verdict,
)

KEY = b"approvals-signing-key-shared-by-api-and-workers"
PREVIOUS_KEY = b"the-key-before-the-rotation-still-accepted-01"
OTHER_KEY = b"a-key-the-workers-do-not-know-9876543210ab"
NOW = datetime(2026, 12, 6, 9, 30, 12, 345678, tzinfo=UTC)
DAY = timedelta(days=1)


def _closing(*, closed_at: datetime = NOW - timedelta(minutes=3)) -> IncidentVerdict:
    """A closing as the API keeps it for the Falcon detection on ws-fin-042."""
    analyst = Approver.of("token", "amy", Role.ANALYST)
    reason = "signed updater from the vendor; ticket CHG-1042"
    incident = "inc-5c1e2d7a9b04"
    return IncidentVerdict(
        id=verdict_id(incident, analyst.name, closed_at, Verdict.FALSE_POSITIVE, reason),
        incident_id=incident,
        verdict=Verdict.FALSE_POSITIVE,
        reason=reason,
        closed_by=analyst,
        closed_at=closed_at,
        rules=["crowdstrike:MaliciousFileWritten"],
        entities=["file:8e1f2a6c", "host:ws-fin-042", "user:corp\\jdoe"],
        alert_ids=["crowdstrike:ldt:4f2c9a:88412"],
    )


def _verify(value: bytes, keys: list[bytes] | None = None) -> Any:
    return verify_closing(value, [KEY] if keys is None else keys, now=NOW, max_age=DAY)


def _edited(value: bytes, **changes: Any) -> bytes:
    return json.dumps(json.loads(value) | changes).encode()


def test_a_closing_signed_by_the_api_verifies_as_the_record_it_kept() -> None:
    record = _closing()
    verified = _verify(sign_closing(record, KEY))
    assert verified.record == record
    assert verified.stale is None
    # The instant survives the JSON round trip exactly, so a worker derives the same id
    # and recognises the closing the API already kept.
    got = verified.record
    again = verdict_id(got.incident_id, got.closed_by.name, got.closed_at, got.verdict, got.reason)
    assert again == record.id


def test_a_closing_signed_with_the_previous_key_verifies_during_a_rotation() -> None:
    record = _closing()
    assert _verify(sign_closing(record, PREVIOUS_KEY), [KEY, PREVIOUS_KEY]).record == record


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("not JSON", b"close inc-5c1e2d7a9b04 please", "invalid closing: not a JSON object"),
        ("a JSON array", b'["inc-5c1e2d7a9b04", "false_positive"]', "not a JSON object"),
        (
            "unsigned",
            json.dumps(_closing().model_dump(mode="json")).encode(),
            "unsigned closing",
        ),
        ("an empty signature", _edited(sign_closing(_closing(), KEY), signature=""), "unsigned"),
        ("signed with another key", sign_closing(_closing(), OTHER_KEY), "forged or altered"),
        (
            "an altered verdict",
            _edited(sign_closing(_closing(), KEY), verdict="true_positive"),
            "forged or altered",
        ),
        (
            "another analyst",
            _edited(
                sign_closing(_closing(), KEY), closed_by={"name": "token:eve", "role": "admin"}
            ),
            "forged or altered",
        ),
        (
            "a field added",
            _edited(sign_closing(_closing(), KEY), note="also close the others"),
            "forged or altered",
        ),
        (
            "an unknown verdict",
            _edited(sign_closing(_closing(), KEY), verdict="maybe"),
            "invalid closing: verdict:",
        ),
        (
            "an analyst without a door",
            _edited(sign_closing(_closing(), KEY), closed_by={"name": "amy", "role": "analyst"}),
            "invalid closing: closed_by.name:",
        ),
        (
            "no closing instant",
            _edited(sign_closing(_closing(), KEY), closed_at=None),
            "invalid closing: closed_at:",
        ),
    ],
)
def test_unauthenticated_closings_are_refused_saying_why(name: str, value: bytes, why: str) -> None:
    with pytest.raises(UnauthenticatedVerdict, match=re.escape(why)):
        _verify(value)


def test_without_a_key_no_closing_is_authenticated() -> None:
    with pytest.raises(UnauthenticatedVerdict, match=r"kafka\.approvals_key"):
        _verify(sign_closing(_closing(), KEY), [])


def test_an_authentic_old_closing_is_returned_marked_stale() -> None:
    old = _closing(closed_at=NOW - DAY - timedelta(seconds=1))
    verified = _verify(sign_closing(old, KEY))
    assert verified.record == old  # authentic: a worker may find it already kept
    assert verified.stale is not None
    assert "too old" in verified.stale and "kafka.approvals_max_age_seconds 86400" in verified.stale
    assert _verify(sign_closing(_closing(closed_at=NOW - DAY), KEY)).stale is None


def test_a_closing_from_the_future_is_stale_beyond_five_minutes_of_clock_skew() -> None:
    assert _verify(sign_closing(_closing(closed_at=NOW + timedelta(minutes=4)), KEY)).stale is None
    ahead = _verify(sign_closing(_closing(closed_at=NOW + timedelta(minutes=6)), KEY))
    assert ahead.stale is not None and "from the future" in ahead.stale


def test_the_signature_is_checked_before_the_age() -> None:
    """A forged old closing is forged, not merely stale: nothing may treat it as kept."""
    old = _closing(closed_at=NOW - 30 * DAY)
    with pytest.raises(UnauthenticatedVerdict, match="forged or altered"):
        _verify(sign_closing(old, OTHER_KEY))


def test_a_signature_of_non_ascii_text_is_refused_not_a_crash() -> None:
    """Such a record once raised TypeError (str compare_digest), stopping the worker on it
    again at every restart: a poison pill. Verdicts and closings share the comparison."""
    forged = "hmac-sha256:" + "\u00e9" * 64
    closing = _edited(sign_closing(_closing(), KEY), signature=forged)
    with pytest.raises(UnauthenticatedVerdict, match="forged or altered"):
        _verify(closing)
    approval = sign_verdict(
        proposal_id="prop-isolate-ws-fin-042",
        analyst="token:amy",
        role=Role.SENIOR,
        verdict=ApprovalVerdict.APPROVE,
        comment=None,
        issued_at=NOW,
        key=KEY,
    )
    with pytest.raises(UnauthenticatedVerdict, match="forged or altered"):
        verify_verdict(_edited(approval, signature=forged), [KEY], now=NOW, max_age=DAY)
