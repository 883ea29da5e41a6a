"""Analysts' verdicts and closings on Kafka, signed by the door that authenticated them.

Producing to the approvals or verdicts topic is privileged, but a topic is not
an authenticated door: anyone who can produce could otherwise write any analyst
name. So a record carries who decided and with which role, when, and an
HMAC-SHA256 signature over all of it with `kafka.approvals_key`, a secret
shared by the API (which authenticated the analyst) and the workers. A worker
applies only records whose signature verifies and that are recent: verdicts on
proposals (approvals topic, `verify_verdict`) through the proposal service,
incident closings (verdicts topic, `verify_closing`) through `close_incident`;
either way the same rules as for any door apply.

The signed bytes are the record's fields as canonical JSON (sorted keys, no
whitespace, ASCII), without `signature`; the signature is `hmac-sha256:<hex>`.
The signature is checked before the age, so an authentic but old closing can
still be recognised as one already kept (the API keeps a closing, then exports it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soc_agent.errors import SocAgentError
from soc_agent.models import ApprovalVerdict, Approver, IncidentVerdict, Role

__all__ = [
    "SignedVerdict",
    "UnauthenticatedVerdict",
    "VerifiedClosing",
    "sign_closing",
    "sign_verdict",
    "verify_closing",
    "verify_verdict",
]

_SCHEME = "hmac-sha256:"
_FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew between the API and the workers


class UnauthenticatedVerdict(SocAgentError):
    """A verdict that is unsigned, forged, altered, stale or malformed; says which."""


class SignedVerdict(BaseModel):
    """What an authenticated door vouches for: this analyst, with this role, decided this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proposal_id: str = Field(min_length=1, max_length=128)
    analyst: str = Field(min_length=1, max_length=256)
    role: Role
    verdict: ApprovalVerdict
    comment: str | None = Field(default=None, max_length=4096)
    issued_at: datetime
    signature: str = Field(default="", max_length=200)

    @field_validator("analyst")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        # The identity as the signing door vouched for it (token:NAME or oidc:NAME).
        return Approver(name=value, role=Role.VIEWER).name

    @property
    def approver(self) -> Approver:
        return Approver(name=self.analyst, role=self.role)


@dataclass(frozen=True)
class VerifiedClosing:
    """An authentic closing. `stale` says why it is too old (or too far in the future) to
    apply now, None when it is recent: the caller may still recognise one it already kept."""

    record: IncidentVerdict
    stale: str | None = None


def _canonical_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _canonical(verdict: SignedVerdict) -> bytes:
    return _canonical_json(verdict.model_dump(mode="json", exclude={"signature"}))


def _mac(key: bytes, data: bytes) -> str:
    return _SCHEME + hmac.new(key, data, hashlib.sha256).hexdigest()


def _signed_by_one_of(keys: Sequence[bytes], data: bytes, signature: str) -> bool:
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text, and a record
    # with such a "signature" must be refused, not stop the worker.
    given = signature.encode("utf-8", "replace")
    return any(hmac.compare_digest(_mac(key, data).encode(), given) for key in keys)


def _require_keys(keys: Sequence[bytes]) -> None:
    if not keys:
        raise UnauthenticatedVerdict(
            "no kafka.approvals_key is configured, so no verdict can be authenticated"
        )


def _json_object(value: bytes, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict):
        raise UnauthenticatedVerdict(f"invalid {what}: not a JSON object")
    return raw


def _invalid(exc: ValidationError, what: str) -> UnauthenticatedVerdict:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "message"
    return UnauthenticatedVerdict(f"invalid {what}: {where}: {err['msg']}")


def _age_problem(
    what: str, signed_at: datetime, *, now: datetime, max_age: timedelta
) -> str | None:
    """Why a record signed at `signed_at` may not apply at `now`; None when it may."""
    age = now - signed_at
    if age > max_age:
        return (
            f"the {what} at {signed_at.isoformat()}: too old for "
            f"kafka.approvals_max_age_seconds {int(max_age.total_seconds())}"
        )
    if age < -_FUTURE_TOLERANCE:
        return (
            f"the {what} at {signed_at.isoformat()}: from the future, more than "
            f"{int(_FUTURE_TOLERANCE.total_seconds() // 60)} minutes ahead of this worker's clock"
        )
    return None


def sign_closing(record: IncidentVerdict, key: bytes) -> bytes:
    """The record value for the verdicts topic: the closing as JSON with `signature`, an
    HMAC over its canonical JSON (without `signature`), so consumers can tell it was the
    API, which authenticated the analyst, that wrote it."""
    fields = record.model_dump(mode="json")
    signature = _mac(key, _canonical_json(fields))
    return json.dumps({**fields, "signature": signature}).encode()


def verify_closing(
    value: bytes, keys: Sequence[bytes], *, now: datetime, max_age: timedelta
) -> VerifiedClosing:
    """The closing if a key's signature matches, marked `stale` if `closed_at` (the signing
    instant) is older than `max_age` or more than 5 minutes ahead of `now`; else
    UnauthenticatedVerdict (unsigned, forged or altered, malformed)."""
    _require_keys(keys)
    raw = _json_object(value, "closing")
    signature = raw.pop("signature", None)
    if not signature:
        raise UnauthenticatedVerdict(
            "unsigned closing: closings must be signed by the API that authenticated the analyst"
        )
    if not isinstance(signature, str):
        raise UnauthenticatedVerdict("invalid closing: signature: not a string")
    try:
        record = IncidentVerdict.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, "closing") from None
    # Over the fields as received, not as re-serialised: a field the model does not
    # know (and would drop) was not signed, so it alters the record.
    if not _signed_by_one_of(keys, _canonical_json(raw), signature):
        raise UnauthenticatedVerdict("the closing's signature does not verify: forged or altered")
    stale = _age_problem("incident was closed", record.closed_at, now=now, max_age=max_age)
    return VerifiedClosing(record, stale)


def sign_verdict(
    *,
    proposal_id: str,
    analyst: str,
    role: Role,
    verdict: ApprovalVerdict,
    comment: str | None,
    issued_at: datetime,
    key: bytes,
) -> bytes:
    """The record value for the approvals topic."""
    unsigned = SignedVerdict(
        proposal_id=proposal_id,
        analyst=analyst,
        role=role,
        verdict=verdict,
        comment=comment,
        issued_at=issued_at,
    )
    signed = unsigned.model_copy(update={"signature": _mac(key, _canonical(unsigned))})
    return signed.model_dump_json().encode()


def verify_verdict(
    value: bytes, keys: Sequence[bytes], *, now: datetime, max_age: timedelta
) -> SignedVerdict:
    """The verdict if a key's signature matches and it is recent; else UnauthenticatedVerdict."""
    _require_keys(keys)
    raw = _json_object(value, "approval")
    if not raw.get("signature"):
        raise UnauthenticatedVerdict(
            "unsigned verdict: verdicts must be signed by the API that authenticated the analyst"
        )
    try:
        verdict = SignedVerdict.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, "approval") from None
    if not _signed_by_one_of(keys, _canonical(verdict), verdict.signature):
        raise UnauthenticatedVerdict("the verdict's signature does not verify: forged or altered")
    stale = _age_problem("verdict was signed", verdict.issued_at, now=now, max_age=max_age)
    if stale is not None:
        raise UnauthenticatedVerdict(stale)
    return verdict
