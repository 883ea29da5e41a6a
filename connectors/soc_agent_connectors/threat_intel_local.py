"""Offline threat intelligence: a local list of indicators with verdicts."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from soc_agent_connectors import Connector, capability
from soc_agent_connectors._local_data import DATA_PATH, load_records, resolve_data_path

__all__ = ["LocalThreatIntel"]

IndicatorType = Literal["ip", "domain", "url", "file_hash", "email"]
Verdict = Literal["malicious", "suspicious", "benign", "unknown"]


class LocalThreatIntelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        default=None, description="YAML file of indicators", json_schema_extra=DATA_PATH
    )


class IntelEntry(BaseModel):
    """One indicator in the file; checked at start-up, so a bad entry never fails a lookup."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)
    type: IndicatorType  # before `indicator`, whose check depends on it
    indicator: str = Field(min_length=1)
    verdict: Verdict = "unknown"
    score: int = Field(default=0, ge=0, le=100)
    sources: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("indicator")
    @classmethod
    def _network_parses(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == "ip" and "/" in value:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError("not an IP network") from None
        return value

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        """The CIDR range an `ip` indicator names, if it names one."""
        if self.type != "ip" or "/" not in self.indicator:
            return None
        return ipaddress.ip_network(self.indicator.strip(), strict=False)


class LookupInput(BaseModel):
    indicator: str = Field(min_length=1, max_length=2048)
    type: IndicatorType


class LookupOutput(BaseModel):
    indicator: str
    type: IndicatorType
    found: bool
    verdict: Verdict
    score: int = Field(ge=0, le=100)
    sources: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class LocalThreatIntel(Connector):
    """Indicators from a YAML list: `{indicator, type, verdict, score, sources, tags}`.

    IPs also match the CIDR ranges listed with type `ip`.
    """

    name = "threat_intel"
    description = "Local threat-intel list (offline stand-in for VirusTotal/MISP)"
    config_model = LocalThreatIntelConfig

    def __init__(self, config: LocalThreatIntelConfig) -> None:
        super().__init__(config)
        path = resolve_data_path(config.path, "intel.yaml")
        items = load_records(path, "indicators", connector=self.name, entry=IntelEntry)
        self._exact: dict[tuple[str, str], IntelEntry] = {}
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, IntelEntry]] = []
        for item in items:
            network = item.network
            if network is not None:
                self._networks.append((network, item))
            else:
                self._exact[(item.type, item.indicator.strip().lower())] = item

    @capability(kind="query", scopes=["intel:read"])
    async def lookup(self, args: LookupInput) -> LookupOutput:
        """Reputation of one indicator."""
        value = args.indicator.strip().lower()
        item = self._exact.get((args.type, value))
        if item is None and args.type == "ip":
            try:
                addr = ipaddress.ip_address(value)
            except ValueError:
                addr = None
            if addr is not None:
                item = next((it for net, it in self._networks if addr in net), None)
        if item is None:
            return LookupOutput(
                indicator=args.indicator, type=args.type, found=False, verdict="unknown", score=0
            )
        return LookupOutput(
            indicator=args.indicator,
            type=args.type,
            found=True,
            verdict=item.verdict,
            score=item.score,
            sources=list(item.sources),
            tags=list(item.tags),
        )
