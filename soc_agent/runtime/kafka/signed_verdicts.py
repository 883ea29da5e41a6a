"""Analysts' verdicts on the approvals topic, signed by the door that authenticated them.

Producing to the approvals topic is privileged, but a topic is not an
authenticated door: anyone who can produce could otherwise write any analyst
name. So a verdict carries who decided and with which role, when it was
signed, and an HMAC-SHA256 signature over all of it with `kafka.approvals_key`,
a secret shared by the API (which authenticated the analyst) and the workers.
A worker applies only verdicts whose signature verifies and that are recent;
then the proposal service applies the same rules as for any door.

The signed bytes are the verdict's fields as canonical JSON (sorted keys, no
whitespace, ASCII), without `signature`; the signature is `hmac-sha256:<hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soc_agent.errors import SocAgentError
from soc_agent.models import ApprovalVerdict, Approver, IncidentVerdict, Role

__all__ = [
    "SignedVerdict",
    "UnauthenticatedVerdict",
    "sign_closing",
    "sign_verdict",
    "verify_verdict",
]

_SCHEME = "hmac-sha256:"


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


def _canonical(verdict: SignedVerdict) -> bytes:
    fields = verdict.model_dump(mode="json", exclude={"signature"})
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: bytes, data: bytes) -> str:
    return _SCHEME + hmac.new(key, data, hashlib.sha256).hexdigest()


def sign_closing(record: IncidentVerdict, key: bytes) -> bytes:
    """The record value for the verdicts topic: the closing as JSON with `signature`, an
    HMAC over its canonical JSON (without `signature`), so consumers can tell it was the
    API, which authenticated the analyst, that wrote it."""
    fields = record.model_dump(mode="json")
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return json.dumps({**fields, "signature": _mac(key, canonical.encode())}).encode()


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
    if not keys:
        raise UnauthenticatedVerdict(
            "no kafka.approvals_key is configured, so no verdict can be authenticated"
        )
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise UnauthenticatedVerdict("invalid approval: not a JSON object") from None
    if not isinstance(raw, dict) or not raw.get("signature"):
        raise UnauthenticatedVerdict(
            "unsigned verdict: verdicts must be signed by the API that authenticated the analyst"
        )
    try:
        verdict = SignedVerdict.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "message"
        raise UnauthenticatedVerdict(f"invalid approval: {where}: {err['msg']}") from None
    data = _canonical(verdict)
    if not any(hmac.compare_digest(_mac(key, data), verdict.signature) for key in keys):
        raise UnauthenticatedVerdict("the verdict's signature does not verify: forged or altered")
    age = now - verdict.issued_at
    if age > max_age or age < -timedelta(minutes=5):
        raise UnauthenticatedVerdict(
            f"the verdict was signed at {verdict.issued_at.isoformat()}: too old (or from the "
            f"future) for kafka.approvals_max_age_seconds {int(max_age.total_seconds())}"
        )
    return verdict
