"""The playbook engine: schema, loader/validator, CEL expressions, the investigation runner,
scoring and candidate actions, and playbook unit tests for responders."""

from __future__ import annotations

from soc_agent.playbooks.checks import CapabilityInfo, CapabilitySpec, Catalog, check_playbook
from soc_agent.playbooks.context import build_context, incident_context
from soc_agent.playbooks.expressions import EvaluationError, compile_expression, evaluate
from soc_agent.playbooks.loader import (
    PlaybookValidationError,
    load_playbook_file,
    load_playbooks,
    shipped_playbooks_dir,
)
from soc_agent.playbooks.recordings import RecordedCall, RecordedStepExecutor
from soc_agent.playbooks.runner import StepExecutor, investigate
from soc_agent.playbooks.schema import (
    Budget,
    Playbook,
    RespondRule,
    ScoreRule,
    Scoring,
    Step,
    TargetSpec,
    export_json_schema,
    json_schema_text,
)
from soc_agent.playbooks.scoring import (
    MatchError,
    Selection,
    candidates,
    match_playbooks,
    score,
    score_bound,
    select_playbook,
)

__all__ = [
    "Budget",
    "CapabilityInfo",
    "CapabilitySpec",
    "Catalog",
    "EvaluationError",
    "MatchError",
    "Playbook",
    "PlaybookValidationError",
    "RecordedCall",
    "RecordedStepExecutor",
    "RespondRule",
    "ScoreRule",
    "Scoring",
    "Selection",
    "Step",
    "StepExecutor",
    "TargetSpec",
    "build_context",
    "candidates",
    "check_playbook",
    "compile_expression",
    "evaluate",
    "export_json_schema",
    "incident_context",
    "investigate",
    "json_schema_text",
    "load_playbook_file",
    "load_playbooks",
    "match_playbooks",
    "score",
    "score_bound",
    "select_playbook",
    "shipped_playbooks_dir",
]
