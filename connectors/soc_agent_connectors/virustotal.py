"""VirusTotal API v3: reputation of file hashes, IP addresses, domains and URLs.

Every report maps `data.attributes.last_analysis_stats` to the common
verdict (see `_reputation`). A `NotFoundError` (404) means VirusTotal has
never seen the indicator: `found=false`, verdict `unknown`. Quota errors
(429 `QuotaExceededError`) are retried by the framework, honouring
`Retry-After`; the default rate limit keeps a public key under its quota.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soc_agent.errors import ConnectorError
from soc_agent_connectors import (
    HttpConnector,
    HttpConnectorConfig,
    HttpRuntime,
    VendorHTTPError,
    capability,
)
from soc_agent_connectors._reputation import (
    DomainInput,
    HashInput,
    IndicatorType,
    IpInput,
    Reputation,
    UrlInput,
    Verdict,
    band_score,
)

__all__ = ["AnalysisStats", "VirusTotal", "VirusTotalConfig", "VtReputation", "url_id"]

_MAX_SOURCES = 25


class VirusTotalConfig(HttpConnectorConfig):
    base_url: str = "https://www.virustotal.com/api/v3"
    gui_url: str = Field(
        default="https://www.virustotal.com/gui", description="where `link` points an analyst"
    )
    # The public API allows 4 lookups a minute: one every 15 s never exceeds it.
    rate_limit_per_second: float | None = Field(default=4 / 60, gt=0)
    cache_ttl_seconds: float = Field(default=3600.0, ge=0, description="reports; 0 = off")
    malicious_min_engines: int = Field(
        default=3, ge=1, description="engines flagging it malicious for a malicious verdict"
    )
    benign_min_engines: int = Field(
        default=10,
        ge=1,
        description="engines that must have analysed it, none flagging, for a benign verdict",
    )


class AnalysisStats(BaseModel):
    """`last_analysis_stats`: how many engines put the indicator in each category."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    malicious: int = 0
    suspicious: int = 0
    harmless: int = 0
    undetected: int = 0
    timeout: int = 0
    confirmed_timeout: int = Field(default=0, alias="confirmed-timeout")
    failure: int = 0
    type_unsupported: int = Field(default=0, alias="type-unsupported")

    @property
    def verdicts(self) -> int:
        """Engines that reached a verdict (timeouts, failures and unsupported types excluded)."""
        return self.malicious + self.suspicious + self.harmless + self.undetected


class VtReputation(Reputation):
    """The common reputation plus what VirusTotal adds."""

    stats: AnalysisStats | None = None
    community_reputation: int | None = Field(
        default=None, description="`reputation`: VirusTotal community votes (negative = bad)"
    )
    last_analysis_at: datetime | None = None
    threat_label: str | None = Field(
        default=None, description="files: popular_threat_classification.suggested_threat_label"
    )


class LookupInput(BaseModel):
    """The offline `threat_intel.lookup` input, so either connector serves a playbook step."""

    indicator: str = Field(min_length=1, max_length=8192)
    type: IndicatorType


def url_id(url: str) -> str:
    """VirusTotal's URL identifier: unpadded URL-safe base64 of the URL (RFC 4648 3.2)."""
    return base64.urlsafe_b64encode(url.encode()).decode("ascii").rstrip("=")


class VirusTotal(HttpConnector):
    name = "virustotal"
    description = "VirusTotal API v3: file, IP, domain and URL reputation"
    config_model: ClassVar[type[HttpConnectorConfig]] = VirusTotalConfig
    auth_header = "x-apikey"
    auth_scheme = None

    def __init__(self, config: VirusTotalConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.vt_config = config

    @capability(kind="query", scopes=["intel:read"])
    async def file_report(self, args: HashInput) -> VtReputation:
        """Reputation of a file by its MD5, SHA-1 or SHA-256."""
        return await self._report(f"/files/{args.hash}", args.hash, "file_hash", "file")

    @capability(kind="query", scopes=["intel:read"])
    async def ip_report(self, args: IpInput) -> VtReputation:
        """Reputation of an IP address."""
        return await self._report(f"/ip_addresses/{args.ip}", args.ip, "ip", "ip-address")

    @capability(kind="query", scopes=["intel:read"])
    async def domain_report(self, args: DomainInput) -> VtReputation:
        """Reputation of a domain."""
        return await self._report(f"/domains/{args.domain}", args.domain, "domain", "domain")

    @capability(kind="query", scopes=["intel:read"])
    async def url_report(self, args: UrlInput) -> VtReputation:
        """Reputation of a URL (identified by its unpadded base64)."""
        return await self._report(f"/urls/{url_id(args.url)}", args.url, "url", "url")

    @capability(kind="query", scopes=["intel:read"])
    async def lookup(self, args: LookupInput) -> VtReputation:
        """Reputation of any indicator, with the offline threat_intel connector's arguments."""
        try:
            if args.type == "file_hash":
                return await self.file_report(HashInput(hash=args.indicator))
            if args.type == "ip":
                return await self.ip_report(IpInput(ip=args.indicator))
            if args.type == "domain":
                return await self.domain_report(DomainInput(domain=args.indicator))
            if args.type == "url":
                return await self.url_report(UrlInput(url=args.indicator))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise ConnectorError(f"virustotal.lookup: invalid {args.type}: {reason}") from None
        raise ConnectorError(f"virustotal has no reports for indicators of type {args.type!r}")

    async def _report(
        self, path: str, indicator: str, kind: IndicatorType, gui_kind: str
    ) -> VtReputation:
        response = await self.request("GET", path, allow_status={404})
        body = self.json_of(response)
        if response.status_code == 404:
            code = _error_code(body)
            if code != "NotFoundError":
                raise VendorHTTPError(
                    f"GET {path}: HTTP 404 {code or '(no VirusTotal error code)'}", status_code=404
                )
            return VtReputation(
                indicator=indicator,
                type=kind,
                found=False,
                verdict="unknown",
                score=0,
                provider=self.name,
            )
        try:
            data = body["data"]
            attrs: dict[str, Any] = data["attributes"]
            object_id = str(data["id"])
        except (KeyError, TypeError):
            raise ConnectorError(f"GET {path}: answer has no data.attributes") from None
        return self._reputation(indicator, kind, object_id, attrs, gui_kind)

    def _reputation(
        self,
        indicator: str,
        kind: IndicatorType,
        object_id: str,
        attrs: dict[str, Any],
        gui_kind: str,
    ) -> VtReputation:
        raw_stats = attrs.get("last_analysis_stats")
        stats = AnalysisStats.model_validate(raw_stats) if isinstance(raw_stats, dict) else None
        community = attrs.get("reputation")
        verdict, strength = self._verdict(stats, community if isinstance(community, int) else 0)
        analysed = attrs.get("last_analysis_date")
        threat = attrs.get("popular_threat_classification") or {}
        return VtReputation(
            indicator=indicator,
            type=kind,
            found=True,
            verdict=verdict,
            score=band_score(verdict, strength),
            sources=_flagging_engines(attrs.get("last_analysis_results")),
            tags=_tags(attrs, threat),
            link=f"{self.vt_config.gui_url.rstrip('/')}/{gui_kind}/{object_id}",
            provider=self.name,
            stats=stats,
            community_reputation=community if isinstance(community, int) else None,
            last_analysis_at=(
                datetime.fromtimestamp(analysed, UTC) if isinstance(analysed, int) else None
            ),
            threat_label=threat.get("suggested_threat_label") if isinstance(threat, dict) else None,
        )

    def _verdict(self, stats: AnalysisStats | None, community: int) -> tuple[Verdict, float]:
        """The verdict and its strength (share of engines flagging it, doubled, capped at 1)."""
        if stats is None or stats.verdicts == 0:
            return "unknown", 0.0
        cfg = self.vt_config
        flagged = stats.malicious + stats.suspicious / 2
        strength = min(1.0, 2 * flagged / stats.verdicts)
        if stats.malicious >= cfg.malicious_min_engines:
            return "malicious", strength
        if stats.malicious or stats.suspicious or community < 0:
            return "suspicious", strength
        if stats.verdicts >= cfg.benign_min_engines:
            return "benign", 0.0
        return "unknown", 0.0


def _error_code(body: Any) -> str | None:
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return str(code) if code else None


def _flagging_engines(results: Any) -> list[str]:
    """Engines whose last analysis called the indicator malicious or suspicious."""
    if not isinstance(results, dict):
        return []
    names = {
        str(result.get("engine_name") or engine)
        for engine, result in results.items()
        if isinstance(result, dict) and result.get("category") in ("malicious", "suspicious")
    }
    return sorted(names, key=str.lower)[:_MAX_SOURCES]


def _tags(attrs: dict[str, Any], threat: Any) -> list[str]:
    """VirusTotal tags, popular threat names/categories (files), threat names and
    categories (URLs, domains), de-duplicated in order."""
    found: list[str] = [str(t) for t in attrs.get("tags") or []]
    if isinstance(threat, dict):
        for key in ("popular_threat_category", "popular_threat_name"):
            found += [str(item["value"]) for item in threat.get(key) or [] if "value" in item]
    found += [str(name) for name in attrs.get("threat_names") or []]
    categories = attrs.get("categories")
    if isinstance(categories, dict):
        found += sorted({str(c).lower() for c in categories.values()})
    unique: dict[str, str] = {}
    for tag in found:
        unique.setdefault(tag.lower(), tag)
    return list(unique.values())
