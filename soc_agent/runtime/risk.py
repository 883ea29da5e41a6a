"""The embedded runtime's entity risk: the ledger from settings, fed alert by alert."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from soc_agent_connectors import Connector, RiskLedgerConnector

from soc_agent.ingest import normalize
from soc_agent.models import Alert
from soc_agent.risk import (
    RISK_FORMAT,
    RiskLedger,
    RiskRules,
    load_risk_rules,
    shipped_risk_rules_dir,
)
from soc_agent.risk.assets import load_asset_criticality
from soc_agent.settings import Settings

__all__ = ["build_ledger", "load_risk", "raised_alerts", "risk_rule_sources"]


def risk_rule_sources(settings: Settings) -> list[Path]:
    """The shipped risk rules (unless `risk.shipped_rules: false`), then `risk_rules:`
    (enabled packs' included)."""
    shipped = [shipped_risk_rules_dir()] if settings.risk.shipped_rules else []
    return [*shipped, *settings.risk_rules]


def load_risk(settings: Settings) -> tuple[RiskRules, dict[str, str]]:
    """The risk rules and the asset criticality (entity key -> criticality, empty without
    `risk.asset_file`) both runtimes score with; bad files name file, line and field."""
    path = settings.risk.asset_file
    assets = load_asset_criticality(path) if path is not None else {}
    return load_risk_rules(risk_rule_sources(settings)), assets


def build_ledger(
    settings: Settings, connectors: Mapping[str, Connector], *, in_process: bool
) -> RiskLedger | None:
    """The ledger, attached to the `risk` connector; None with `risk.enabled: false` or
    when not `in_process`. Bad rule files stop start-up either way, naming file, line and
    field."""
    rules, assets = load_risk(settings)
    if not (settings.risk.enabled and in_process):
        return None
    ledger = RiskLedger(rules, settings.risk, assets)
    for connector in connectors.values():
        if isinstance(connector, RiskLedgerConnector):
            connector.attach(ledger)
    return ledger


def raised_alerts(ledger: RiskLedger | None, alert: Alert, max_entities: int) -> list[Alert]:
    """Add the alert's risk; the risk alerts that crossing the threshold raises."""
    if ledger is None:
        return []
    return [
        normalize(record, format_hint=RISK_FORMAT, max_entities=max_entities)
        for record in ledger.add(alert)
    ]
