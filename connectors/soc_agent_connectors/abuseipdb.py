"""AbuseIPDB API v2: how much an IP address has been reported for abuse.

`check_ip` calls `GET /check?ipAddress=&maxAgeInDays=` with the `Key`
header and maps `abuseConfidenceScore` to the common verdict: whitelisted
addresses are benign, scores at or above the thresholds suspicious or
malicious, and an address nobody reported is unknown (not benign: absence
of reports is not evidence of good behaviour). Errors come as
`{"errors": [{"detail", "status", "source"?}]}`; a 429 carries `Retry-After`
and `X-RateLimit-*` headers, which the framework honours.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, Field, ValidationError

from soc_agent.errors import ConnectorError
from soc_agent_connectors import HttpConnector, HttpConnectorConfig, HttpRuntime, capability
from soc_agent_connectors._reputation import IpInput, Reputation, Verdict, band_score

__all__ = ["AbuseIpDb", "AbuseIpDbConfig", "AbuseIpReport"]


class AbuseIpDbConfig(HttpConnectorConfig):
    base_url: str = "https://api.abuseipdb.com/api/v2"
    gui_url: str = "https://www.abuseipdb.com/check"
    # The free plan allows 1,000 checks a day; this spreads them instead of burning
    # the day's quota in a storm (raise it for paid plans).
    rate_limit_per_second: float | None = Field(default=1000 / 86400, gt=0)
    rate_limit_burst: int = Field(default=20, ge=1, le=10_000)
    cache_ttl_seconds: float = Field(default=3600.0, ge=0)
    max_age_in_days: int = Field(default=90, ge=1, le=365, description="default report window")
    malicious_min_score: int = Field(default=75, ge=1, le=100)
    suspicious_min_score: int = Field(default=25, ge=1, le=100)


class CheckInput(IpInput):
    max_age_in_days: int | None = Field(
        default=None, ge=1, le=365, description="reports to consider; default from config"
    )


class AbuseIpReport(Reputation):
    """The common reputation plus AbuseIPDB's own fields."""

    abuse_confidence_score: int = Field(ge=0, le=100)
    total_reports: int = Field(ge=0)
    distinct_reporters: int = Field(default=0, ge=0)
    country_code: str | None = None
    isp: str | None = None
    usage_type: str | None = None
    domain: str | None = None
    is_whitelisted: bool | None = None
    is_tor: bool | None = None
    last_reported_at: datetime | None = None


class _CheckData(BaseModel):
    """`data` of a /check answer; aliases are AbuseIPDB's field names."""

    ip_address: str = Field(alias="ipAddress")
    abuse_confidence_score: int = Field(alias="abuseConfidenceScore", ge=0, le=100)
    total_reports: int = Field(default=0, alias="totalReports")
    distinct_reporters: int = Field(default=0, alias="numDistinctUsers")
    country_code: str | None = Field(default=None, alias="countryCode")
    isp: str | None = None
    usage_type: str | None = Field(default=None, alias="usageType")
    domain: str | None = None
    is_whitelisted: bool | None = Field(default=None, alias="isWhitelisted")
    is_tor: bool | None = Field(default=None, alias="isTor")
    last_reported_at: datetime | None = Field(default=None, alias="lastReportedAt")


class AbuseIpDb(HttpConnector):
    name = "abuseipdb"
    description = "AbuseIPDB API v2: abuse reports and confidence score of IP addresses"
    config_model: ClassVar[type[HttpConnectorConfig]] = AbuseIpDbConfig
    auth_header = "Key"
    auth_scheme = None

    def __init__(self, config: AbuseIpDbConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.abuse_config = config

    @capability(kind="query", scopes=["intel:read"])
    async def check_ip(self, args: CheckInput) -> AbuseIpReport:
        """Abuse confidence score, report count, country, ISP and usage type of an IP."""
        cfg = self.abuse_config
        days = args.max_age_in_days or cfg.max_age_in_days
        body = await self.get_json("/check", params={"ipAddress": args.ip, "maxAgeInDays": days})
        try:
            data = _CheckData.model_validate(body["data"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ConnectorError(f"GET /check: unexpected answer ({type(exc).__name__})") from None
        verdict, strength = self._verdict(data)
        return AbuseIpReport(
            indicator=args.ip,
            type="ip",
            found=data.total_reports > 0 or bool(data.is_whitelisted),
            verdict=verdict,
            score=band_score(verdict, strength),
            sources=[self.name] if data.total_reports else [],
            tags=_tags(data),
            link=f"{cfg.gui_url.rstrip('/')}/{args.ip}",
            provider=self.name,
            **data.model_dump(exclude={"ip_address"}),
        )

    def _verdict(self, data: _CheckData) -> tuple[Verdict, float]:
        """The verdict, and where the confidence score sits between its thresholds."""
        cfg = self.abuse_config
        score = data.abuse_confidence_score
        high, low = cfg.malicious_min_score, min(cfg.suspicious_min_score, cfg.malicious_min_score)
        if data.is_whitelisted:
            return "benign", 0.0
        if score >= high:
            return "malicious", (score - high) / max(1, 100 - high)
        if score >= low:
            return "suspicious", (score - low) / max(1, high - low)
        return "unknown", 0.0


def _tags(data: _CheckData) -> list[str]:
    tags: list[str] = []
    if data.is_tor:
        tags.append("tor-exit")
    if data.usage_type:
        tags.append(data.usage_type)
    return tags
