"""The reputation answer every intel connector gives, whatever the vendor.

It is a superset of the offline `threat_intel.lookup` output (indicator, type,
found, verdict, score, sources, tags), so playbook conditions such as
`r.result.verdict == "malicious"` read the same against any provider.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "DomainInput",
    "HashInput",
    "IndicatorType",
    "IpInput",
    "Reputation",
    "UrlInput",
    "Verdict",
    "band_score",
]

IndicatorType = Literal["ip", "domain", "url", "file_hash", "email"]
Verdict = Literal["malicious", "suspicious", "benign", "unknown"]

# Each verdict owns a band of the 0-100 score, so a score never contradicts its verdict.
_BANDS: dict[str, tuple[int, int]] = {
    "malicious": (70, 100),
    "suspicious": (30, 69),
    "benign": (0, 0),
    "unknown": (0, 0),
}
_HASH = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


class Reputation(BaseModel):
    """One indicator's reputation according to one provider."""

    indicator: str
    type: IndicatorType
    found: bool = Field(description="the provider knows the indicator")
    verdict: Verdict
    score: int = Field(ge=0, le=100, description="malicious 70-100, suspicious 30-69, else 0")
    sources: list[str] = Field(
        default_factory=list, description="who flagged it (engines, feeds, reporters)"
    )
    tags: list[str] = Field(default_factory=list)
    link: str | None = Field(default=None, description="the provider's page for an analyst")
    provider: str


def band_score(verdict: Verdict, strength: float) -> int:
    """A score inside `verdict`'s band; `strength` (0..1) places it within the band."""
    low, high = _BANDS[verdict]
    return low + round((high - low) * min(1.0, max(0.0, strength)))


class HashInput(BaseModel):
    hash: str = Field(min_length=32, max_length=64, description="MD5, SHA-1 or SHA-256 (hex)")

    @field_validator("hash")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HASH.match(value):
            raise ValueError("must be an MD5, SHA-1 or SHA-256 hex digest")
        return value


class IpInput(BaseModel):
    ip: str = Field(min_length=2, max_length=45)

    @field_validator("ip")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None


class DomainInput(BaseModel):
    domain: str = Field(min_length=1, max_length=254)

    @field_validator("domain")
    @classmethod
    def _hostname(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not _DOMAIN.match(value):
            raise ValueError("must be a domain name such as example.com")
        return value


class UrlInput(BaseModel):
    url: str = Field(min_length=1, max_length=8192)

    @field_validator("url")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value
