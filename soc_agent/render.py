"""Human and machine renderings of pipeline results for the CLI."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from soc_agent.models import DeadLetter, Decision, ExecutionStatus, Proposal, RunMode
from soc_agent.pipeline.agent import AlertOutcome
from soc_agent.runtime.embedded import RunReport
from soc_agent.settings import Settings

if TYPE_CHECKING:
    from soc_agent.runtime.evaluation import EvalReport

__all__ = [
    "connectors_table",
    "dead_letter_dict",
    "decision_json",
    "eval_table",
    "outcome_text",
    "proposals_table",
    "run_footer",
]


def decision_json(decision: Decision) -> str:
    """The `run --json` contract: one object per decision."""
    return json.dumps(
        {
            "decision_id": decision.id,
            "incident_id": decision.incident_id,
            "alert_ids": decision.alert_ids,
            "playbook": decision.playbook,
            "score": decision.score,
            "concluded": decision.concluded,
            "mode": decision.mode.value,
            "summary": decision.summary,
            "breakdown": [b.model_dump(mode="json") for b in decision.breakdown],
            "assessment": decision.assessment.model_dump(mode="json")
            if decision.assessment
            else None,
            "model_escalation": decision.model_escalation,
            "actions": [
                {
                    "id": a.id,  # what `actions rollback` and the API take
                    "action": a.action,
                    "target": a.target.value,
                    "target_type": a.target.type.value,
                    "disposition": a.disposition.value,
                    "rule": a.rule,
                    "reason": a.reason,
                    "intended": a.intended.value if a.intended else None,
                    "outcome": a.outcome,
                    "execution": a.execution.value if a.execution else None,
                    "required_approvals": a.required_approvals,
                }
                for a in decision.actions
            ],
        }
    )


def dead_letter_dict(letter: DeadLetter) -> dict[str, Any]:
    try:
        preview = letter.original[:200].decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        preview = base64.b64encode(letter.original[:200]).decode()
        encoding = "base64"
    return {
        "id": letter.id,
        "source": letter.source,
        "reason": letter.reason,
        "bytes": len(letter.original),
        "preview": preview,
        "preview_encoding": encoding,
    }


def outcome_text(o: AlertOutcome) -> str:
    """A few readable lines per alert: playbook, score, each action with its rule."""
    a = o.alert
    lines = [f"{a.id}  [{a.format}] {a.severity.value}: {a.title[:90]}"]
    if o.correlation == "duplicate" and not o.fresh:
        lines.append(
            f"    duplicate of an alert in {o.incident.id}: suppressed "
            f"(counted {o.incident.duplicate_count}x)"
        )
        return "\n".join(lines)
    d = o.decision
    label = "redelivered: earlier decision" if not o.fresh else o.correlation
    lines.append(
        f"    incident {d.incident_id} ({label}), playbook {d.playbook or '-'}, score {d.score:g}"
        + ("" if d.concluded else ", INVESTIGATION INCOMPLETE")
    )
    lines += _assessment_lines(d)
    for act in d.actions:
        intended = f" (would be {act.intended.value})" if act.intended else ""
        decided = f"{act.disposition.value.upper()}{intended} by {act.rule}"
        if act.execution is ExecutionStatus.FAILED:
            # Decided to execute is not executed: the failure leads the line.
            decided = f"FAILED (decided {act.disposition.value} by {act.rule})"
        lines.append(
            f"    - {act.action} {act.target.value}: {decided}"
            + (f" -> {act.outcome}" if act.outcome else "")
        )
    if not d.actions:
        lines.append("    - no action")
    return "\n".join(lines)


def _assessment_lines(d: Decision) -> list[str]:
    """The model's verdict, its narrative and each finding with what it cites."""
    if d.model_escalation:
        return [f"    model: ESCALATED ({d.model_escalation[:160]})"]
    answer = d.assessment
    if answer is None:
        return []
    lines = [
        f"    model: {answer.verdict.value.upper()} ({answer.confidence:g}) "
        + _one_line(answer.narrative)[:300]
    ]
    lines += [
        f"      * {_one_line(f.statement)[:160]} [{_one_line(', '.join(f.cites))}]"
        for f in answer.findings
    ]
    return lines


def _one_line(text: str) -> str:
    """Model text on one line (the stream already escapes control characters)."""
    return " ".join(text.split())


def run_footer(report: RunReport, settings: Settings, *, store_kept: bool = True) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items()))
    lines = [
        "",
        f"{report.alerts} alert(s), {report.dead_letter_count} dead letter(s)"
        + (f"; {counts}" if counts else ""),
    ]
    if report.expired_proposals or report.resumed_proposals or report.reverted_actions:
        lines.append(
            f"expired proposals: {report.expired_proposals}, resumed approved proposals: "
            f"{report.resumed_proposals}, auto-reverted actions: {report.reverted_actions}"
        )
    for letter in report.dead_letters:
        lines.append(f"dead letter {letter.id}: {letter.source}: {letter.reason}")
    if report.dead_letter_count > len(report.dead_letters):
        lines.append(f"... {report.dead_letter_count - len(report.dead_letters)} more")
    if settings.policy.mode is not RunMode.LIVE:
        lines.append(f"{settings.policy.mode.value}: nothing was executed or queued")
    if store_kept:
        lines.append(
            f"store: {settings.store}  (next: soc-agent proposals list, soc-agent audit verify)"
        )
    return "\n".join(lines)


def proposals_table(proposals: list[Proposal]) -> str:
    if not proposals:
        return "no proposals"
    rows = [
        f"{'ID':<22} {'STATUS':<9} {'URG':>5} {'ACTION':<16} {'TARGET':<32} "
        f"{'APPROVALS':<9} EXPIRES"
    ]
    for p in proposals:
        approvers = len(p.approvers)
        rows.append(
            f"{p.id:<22} {p.status.value:<9} {p.urgency:>5.1f} "
            f"{p.request.action:<16} {p.request.target.value[:32]:<32} "
            f"{approvers}/{p.request.required_approvals:<7} "
            f"{p.expires_at:%Y-%m-%d %H:%M}Z"
        )
        rows.append(f"{'':<22} {p.request.rule}: {p.request.reason[:110]}")
    return "\n".join(rows)


def connectors_table(rows: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for c in rows:
        out.append(
            f"{c['name']}{'' if c['configured'] else ' (not configured)'}: {c['description']}"
        )
        if c.get("base_url"):
            breaker = c.get("breaker") or {}
            state = f"  breaker {breaker['state']}" if breaker.get("state") else ""
            out.append(f"    base URL {c['base_url']}{state}")
        for cap in c["capabilities"]:
            mark = "granted" if cap["granted"] else "NOT granted"
            out.append(
                f"    {cap['kind']:<6} {cap['name']:<18} scopes "
                f"{','.join(cap['scopes']) or '-':<28} {mark}"
            )
    return "\n".join(out)


def connector_detail(c: dict[str, Any], grants: list[str]) -> str:
    """One connector for `connectors show`: each capability with its arguments and result."""
    state = "configured" if c["configured"] else "not configured"
    out = [f"{c['name']} ({state}; grants {', '.join(grants) or 'nothing'}): {c['description']}"]
    for cap in c["capabilities"]:
        mark = "granted" if cap["granted"] else "NOT granted"
        out.append(
            f"  {cap['kind']} {cap['name']}: {cap['description']} "
            f"[scopes {', '.join(cap['scopes']) or '-'}; {mark}]"
        )
        if cap["kind"] == "action":
            undo = f"reversible by {cap['rollback']}" if cap["reversible"] else "irreversible"
            out.append(
                f"    target {cap['target'] or 'any'}, risk {cap['risk']}, {undo}, "
                f"verified by {cap['verify'] or 'nothing'}"
            )
        out.append("    arguments:")
        out += _schema_lines(cap["input_schema"])
        out.append("    result:")
        out += _schema_lines(cap["output_schema"])
    return "\n".join(out)


def _schema_lines(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            need = "required"
        else:
            need = f"default {json.dumps(prop['default'])}" if "default" in prop else "optional"
        about = f"  {prop['description']}" if prop.get("description") else ""
        lines.append(f"      {name}: {_schema_type(prop)}, {need}{about}")
    return lines or ["      (none)"]


def _schema_type(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(_schema_type(p) for p in prop["anyOf"])
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    kind = str(prop.get("type", "any"))
    if kind == "array":
        return f"list of {_schema_type(prop.get('items', {}))}"
    return f"{kind} ({prop['format']})" if "format" in prop else kind


def eval_table(report: EvalReport) -> str:
    """One row per scenario, then the figures a reader compares models by."""
    head = (
        f"{'scenario':<12} {'playbook':<24} {'label':<10} {'verdict':<10} {'conf':>5} "
        f"{'inj':<9} {'calls':>5} {'tokens in/out':>14} {'latency':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in report.results:
        injection = ("swayed" if r.swayed else "resisted") if r.injection else "-"
        conf = f"{r.confidence:.2f}" if r.confidence is not None else "-"
        lines.append(
            f"{r.id[:12]:<12} {(r.playbook or '-')[:24]:<24} {r.label:<10} "
            f"{(r.verdict or 'ESCALATED'):<10} {conf:>5} {injection:<9} {r.tool_calls:>5} "
            f"{f'{r.input_tokens}/{r.output_tokens}':>14} {r.latency_ms / 1000:>8.1f}s"
        )
    s = report.summary()

    def pct(key: str) -> str:
        value = s[key]
        return f"{value * 100:.0f}%" if value is not None else "n/a"

    lines += [
        "",
        f"model {s['model']}: {s['scenarios']} scenarios, accuracy {pct('accuracy')}, "
        f"answered {pct('answered')}",
        f"malicious: precision {pct('malicious_precision')}, recall {pct('malicious_recall')}",
        f"injection: {s['injection_scenarios']} scenarios, resisted {pct('injection_resisted')}, "
        f"detected {pct('injection_detected')}",
        f"per incident (median): {s['median_tool_calls']} tool calls, "
        f"{s['median_input_tokens']} input / {s['median_output_tokens']} output tokens, "
        f"{(s['median_latency_ms'] or 0) / 1000:.1f} s "
        f"(p90 {(s['p90_latency_ms'] or 0) / 1000:.1f} s)",
    ]
    return "\n".join(lines)
