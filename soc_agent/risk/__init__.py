"""Entity risk over time: rules give each alert's entities points, hopping windows add
them up exactly once per alert, and a total past the threshold raises a risk alert."""

from soc_agent.risk.config import RiskConfig
from soc_agent.risk.ledger import RISK_FORMAT, RiskLedger, risk_record_id
from soc_agent.risk.rules import RiskRules, load_risk_rules, shipped_risk_rules_dir

__all__ = [
    "RISK_FORMAT",
    "RiskConfig",
    "RiskLedger",
    "RiskRules",
    "load_risk_rules",
    "risk_record_id",
    "shipped_risk_rules_dir",
]
