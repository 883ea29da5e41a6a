"""Offline threat intelligence: a local list of indicators with verdicts."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from soc_agent.errors import ConfigError
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
        items = load_records(path, "indicators", connector=self.name, needs=("type", "indicator"))
        self._exact: dict[tuple[str, str], dict[str, Any]] = {}
        self._networks: list[
            tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, dict[str, Any]]
        ] = []
        for i, item in enumerate(items):
            kind, value = str(item["type"]), str(item["indicator"]).strip().lower()
            if kind == "ip" and "/" in value:
                try:
                    network = ipaddress.ip_network(value, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"not an IP network: {value[:64]!r}",
                        source=str(path),
                        key=f"indicators[{i}]",
                    ) from None
                self._networks.append((network, item))
            else:
                self._exact[(kind, value)] = item

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
            verdict=item.get("verdict", "unknown"),
            score=int(item.get("score", 0)),
            sources=list(item.get("sources", [])),
            tags=list(item.get("tags", [])),
        )
