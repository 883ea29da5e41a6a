"""The `soc-agent` command line: parses, calls, prints. Logic lives in the packages."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from soc_agent import render
from soc_agent.errors import SocAgentError
from soc_agent.logs import configure_logging
from soc_agent.models import ProposalStatus, Role, RunMode
from soc_agent.models.identity import LOCAL_OPERATOR
from soc_agent.settings import Settings, load_settings
from soc_agent.terminal import TerminalSafeStream

if TYPE_CHECKING:  # the CLI imports what a command needs only when it runs
    from soc_agent.playbooks.testing import CaseResult

__all__ = ["app", "main"]

_T = TypeVar("_T")

app = typer.Typer(
    help="soc-agent: investigate security alerts, decide under policy, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
playbooks_app = typer.Typer(help="Validate, test and describe playbooks.", no_args_is_help=True)
proposals_app = typer.Typer(help="Review proposed actions.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect and verify the audit chain.", no_args_is_help=True)
actions_app = typer.Typer(help="Executed actions: list and roll back.", no_args_is_help=True)
connectors_app = typer.Typer(help="Installed connectors and their grants.", no_args_is_help=True)
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(proposals_app, name="proposals")
app.add_typer(audit_app, name="audit")
app.add_typer(actions_app, name="actions")
app.add_typer(connectors_app, name="connectors")
incidents_app = typer.Typer(help="Incidents: close one with a verdict.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
policy_app = typer.Typer(help="Policy advice from analysts' verdicts.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
packs_app = typer.Typer(
    help="Packs: playbooks, tests, mappings and YAML connectors in one bundle.",
    no_args_is_help=True,
)
app.add_typer(packs_app, name="packs")
tokens_app = typer.Typer(help="API tokens for the analyst API and web UI.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
topics_app = typer.Typer(help="Kafka topics of the worker's contract.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="SQLite store path [env SOC_AGENT_STORE; default ./soc-agent.db]"),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file [env SOC_AGENT_CONFIG]")
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="read every record as this format or mapping (skips detection)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
AnalystOpt = Annotated[
    str | None,
    typer.Option(
        "--analyst",
        help="who is deciding: must match the token's holder; without a token, recorded "
        "as an unauthenticated local name (local:NAME)",
        default_factory=lambda: os.environ.get("SOC_AGENT_ANALYST"),
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="file holding your API token (or set SOC_AGENT_TOKEN): who you are",
    ),
]


def _settings(config: Path | None, store: Path | None, **extra: Any) -> Settings:
    try:
        settings = load_settings(config, store=store, **extra)
    except SocAgentError as exc:
        raise _fail(str(exc)) from None
    configure_logging(settings.log_level)
    return settings


def _run(coro_fn: Callable[[], Awaitable[_T]]) -> _T:
    async def wrapper() -> _T:
        return await coro_fn()

    try:
        return asyncio.run(wrapper())
    except SocAgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _announce_connectors(settings: Settings) -> None:
    """Which connectors run with which grants, on stderr: a smaller set is seen at once."""
    from soc_agent.runtime.control import active_connectors

    for line in active_connectors(settings):
        typer.echo(line, err=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def run(
    alerts: Annotated[
        list[str] | None,
        typer.Option(
            "--alerts",
            "-a",
            help="alert file or directory, or - for stdin; repeatable "
            "[default: the shipped demo alerts]",
        ),
    ] = None,
    mode: Annotated[
        RunMode | None, typer.Option(help="live | dry_run | shadow [env SOC_AGENT_POLICY__MODE]")
    ] = None,
    format_hint: FormatOpt = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The main job: alerts in, investigated decisions out, all audited in the store."""
    from soc_agent.runtime.embedded import default_alert_sources

    settings = _settings(config, store)
    if mode is not None:
        settings.policy = settings.policy.model_copy(update={"mode": mode})
    sources: list[str | Path] = [*alerts] if alerts else [*default_alert_sources()]
    _process(settings, sources, as_json, format_hint=format_hint)


@app.command()
def replay(
    alerts: Annotated[
        list[str],
        typer.Option("--alerts", "-a", help="past alerts: file, directory or -; repeatable"),
    ],
    format_hint: FormatOpt = None,
    as_json: JsonOpt = False,
    store: Annotated[
        Path | None,
        typer.Option(help="where to keep the shadow decisions [default: a temporary file]"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Shadow mode over past alerts: what would the playbooks and policy do now?

    Nothing executes, nothing is queued; each action shows what it would have
    been (`intended`). The production store (SQLite or Elasticsearch) is not
    touched unless `--store` names one: replays go to a local SQLite file.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="soc-agent-replay-") as tmp:
        settings = _settings(config, store or Path(tmp) / "replay.db")
        settings.store_backend = "sqlite"
        settings.policy = settings.policy.model_copy(update={"mode": RunMode.SHADOW})
        _process(
            settings, list(alerts), as_json, store_kept=store is not None, format_hint=format_hint
        )


AlertsHistoryOpt = Annotated[
    Path | None,
    typer.Option("--alerts", "-a", help="labelled history: JSON lines of {verdict, reason, alert}"),
]
FromStoreOpt = Annotated[
    bool, typer.Option("--from-store", help="label the store's own alerts with their verdicts")
]


def _labelled_source(
    alerts: Path | None, from_store: bool
) -> Callable[[Settings], Awaitable[list[Any]]]:
    """Where the labelled alerts come from: a history file, or the store's closed incidents."""
    from soc_agent.calibration.replay import labelled_from_store, read_labelled
    from soc_agent.runtime.backend import open_backend

    if (alerts is None) == (not from_store):
        raise _fail("give either --alerts FILE or --from-store", 2)

    async def load(settings: Settings) -> list[Any]:
        if alerts is not None:
            labelled = read_labelled(alerts, settings)
        else:
            async with open_backend(settings) as backend:
                labelled = await labelled_from_store(backend.store)
        if not labelled:
            raise SocAgentError("no labelled alerts to calibrate against")
        return labelled

    return load


def _run_calibration(coro_fn: Callable[[], Awaitable[_T]]) -> _T:
    """`_run`, saying how to install the statistics when they are missing."""
    from soc_agent.calibration.stats import MISSING_EXTRA

    try:
        return _run(coro_fn)
    except RuntimeError as exc:
        if str(exc) != MISSING_EXTRA:
            raise
        raise _fail(MISSING_EXTRA) from None


@app.command()
def calibrate(
    alerts: AlertsHistoryOpt = None,
    from_store: FromStoreOpt = False,
    candidate: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="a candidate configuration to compare with the current one "
            "(the current one is SOC_AGENT_CONFIG's)",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="also write a self-contained HTML report")
    ] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """What-if replay against analysts' verdicts: how precise would executions and
    proposals be, at which execute_at, and what a candidate configuration changes.

    Replays run in shadow mode on temporary stores; nothing executes and the
    production store is only read (with --from-store).
    """
    from soc_agent.calibration.replay import (
        replay_labelled,
    )
    from soc_agent.calibration.report import as_html, as_text
    from soc_agent.calibration.report import as_json as report_json
    from soc_agent.calibration.stats import build_report

    current = _settings(None, store)
    other = _settings(candidate, store) if candidate is not None else None
    source = _labelled_source(alerts, from_store)

    async def main() -> Any:
        labelled = await source(current)
        now = await replay_labelled(current, labelled)
        then = await replay_labelled(other, labelled) if other is not None else None
        return build_report(now, then, alerts=len(labelled))

    report = _run_calibration(main)
    if html is not None:
        html.write_text(as_html(report), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report_json(report)))
    else:
        typer.echo(as_text(report))


@policy_app.command("suggest")
def policy_suggest(
    alerts: AlertsHistoryOpt = None,
    from_store: FromStoreOpt = False,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Per action, the highest autonomy level whose measured precision clears
    policy.calibration (min_precision over min_cases labelled executions), as an
    action_autonomy block to review and paste. Nothing is changed."""
    from soc_agent.calibration.replay import replay_labelled
    from soc_agent.calibration.suggest import as_block, suggest

    settings = _settings(config, store)
    source = _labelled_source(alerts, from_store)

    async def main() -> Any:
        outcomes = await replay_labelled(settings, await source(settings))
        return suggest(outcomes, settings.policy.calibration)

    advice = _run_calibration(main)
    if as_json:
        rows = [
            {
                "action": s.action,
                "level": int(s.level),
                "why": s.why,
                "measured": {
                    str(int(level)): {
                        "correct": p.correct,
                        "labelled": p.labelled,
                        "value": p.value,
                    }
                    for level, p in s.measured
                },
            }
            for s in advice
        ]
        typer.echo(json.dumps({"action_autonomy": rows}))
    else:
        typer.echo(as_block(advice))


def _process(
    settings: Settings,
    sources: list[str | Path],
    as_json: bool,
    *,
    store_kept: bool = True,
    format_hint: str | None = None,
) -> None:
    from soc_agent.ingest import FORMATS, load_mappings
    from soc_agent.pipeline.agent import AlertOutcome
    from soc_agent.runtime.components import open_components
    from soc_agent.runtime.embedded import RunReport, run_embedded

    for src in sources:
        if src != "-" and not Path(src).exists():
            raise _fail(f"alert source not found: {src}")
    if format_hint is not None:
        known = [*FORMATS, *(m.name for m in load_mappings(settings.mappings))]
        if format_hint not in known:
            # Every record would be a dead letter: say so once, before anything runs.
            raise _fail(f"unknown --format {format_hint!r} (known: {', '.join(known)})", 2)
    _announce_connectors(settings)

    async def main() -> RunReport:
        # A batch run does nothing but its alerts: the store's statements run on its loop.
        async with open_components(settings, inline_store=True) as c:

            async def emit(outcome: AlertOutcome) -> None:
                if not as_json:
                    sys.stdout.write(render.outcome_text(outcome) + "\n")
                elif outcome.fresh:
                    sys.stdout.write(render.decision_json(outcome.decision) + "\n")
                sys.stdout.flush()

            return await run_embedded(c, sources, on_outcome=emit, format_hint=format_hint)

    report = _run(main)
    if not (report.alerts or report.dead_letter_count or report.counts["filtered"]):
        # Silence would look like success on the wrong file or an empty export.
        typer.echo(f"no alerts in {', '.join(map(str, sources))}", err=True)
    if as_json:
        for letter in report.dead_letters:
            typer.echo(json.dumps({"dead_letter": render.dead_letter_dict(letter)}), err=True)
    else:
        typer.echo(render.run_footer(report, settings, store_kept=store_kept))


@app.command()
def normalize(
    file: Annotated[
        str, typer.Argument(help="JSON document, JSON array or JSON lines; - for stdin")
    ],
    format_hint: FormatOpt = None,
    mapping: Annotated[
        list[Path] | None,
        typer.Option("--mapping", help="declarative field mapping YAML; repeatable"),
    ] = None,
    dead_letters: Annotated[
        Path | None,
        typer.Option("--dead-letters", help="also write dead letters as JSON lines to this file"),
    ] = None,
) -> None:
    """Print canonical alerts as JSON lines; report dead letters on stderr (exit 1 if any)."""
    from soc_agent.ingest import load_mappings, parse_payload

    try:
        mappings = load_mappings(mapping or [])
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except SocAgentError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None
    result = parse_payload(
        data, source="stdin" if file == "-" else file, format_hint=format_hint, mappings=mappings
    )
    for alert in result.alerts:
        sys.stdout.write(alert.model_dump_json() + "\n")
    for left_out in result.filtered:
        typer.echo(f"filtered: {left_out.source}: {left_out.mapping}: {left_out.reason}", err=True)
    letters = [render.dead_letter_dict(d) for d in result.dead_letters]
    for letter in letters:
        typer.echo(f"dead letter: {letter['source']}: {letter['reason']}", err=True)
    if not (result.alerts or letters or result.filtered):
        typer.echo(f"no alerts in {file}", err=True)
    if dead_letters is not None and letters:
        with dead_letters.open("a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(letter) + "\n" for letter in letters)
    if letters:
        raise typer.Exit(1)


@playbooks_app.command("validate")
def playbooks_validate(
    path: Annotated[
        Path | None, typer.Argument(help="dir or file [default: every playbook production loads]")
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Check playbooks against the schema; errors name file, line and field."""
    from soc_agent.playbooks import load_playbooks
    from soc_agent.runtime.control import connector_catalog
    from soc_agent.runtime.playbook_set import load_all_playbooks

    try:
        settings = _settings(config, None)
        if path is None:
            loaded = load_all_playbooks(settings)
        else:
            loaded = load_playbooks(path, catalog=connector_catalog(settings))
    except SocAgentError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "errors": str(exc).splitlines()}))
            raise typer.Exit(1) from None
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, "playbooks": [p.name for p in loaded]}))
    else:
        typer.echo(f"{len(loaded)} playbook(s) valid: {', '.join(p.name for p in loaded)}")


@playbooks_app.command("test")
def playbooks_test(
    path: Annotated[
        Path | None,
        typer.Argument(help="playbooks dir (cases under <dir>/tests/) [default: shipped]"),
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Run each case: fixture alert + recorded step results -> expected decision."""
    from soc_agent.runtime.playbook_tests import decision_summary, run_playbook_tests

    settings = _settings(config, None)
    results = _run(lambda: run_playbook_tests(path, settings))
    failed = [r for r in results if not r.ok]
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "case": r.name,
                        "ok": r.ok,
                        "failures": r.failures,
                        "decision": decision_summary(r),
                    }
                    for r in results
                ]
            )
        )
    else:
        _print_cases(results)
    if failed or not results:
        raise typer.Exit(1)


def _print_cases(results: list[CaseResult]) -> None:
    """PASS/FAIL with the decision each case checked, its failures, then the totals."""
    from soc_agent.runtime.playbook_tests import decision_summary

    for r in results:
        typer.echo(f"{'PASS' if r.ok else 'FAIL'} {r.name}: {decision_summary(r)}")
        for f in r.failures:
            typer.echo(f"    {f}")
    failed = sum(not r.ok for r in results)
    typer.echo(f"{len(results) - failed} passed, {failed} failed")


@playbooks_app.command("schema")
def playbooks_schema() -> None:
    """Print the playbook JSON Schema (for editors)."""
    from soc_agent.playbooks import export_json_schema

    typer.echo(json.dumps(export_json_schema(), indent=2))


@proposals_app.command("list")
def proposals_list(
    status: Annotated[
        ProposalStatus | None, typer.Option(help="filter by status [default: pending]")
    ] = ProposalStatus.PENDING,
    all_: Annotated[bool, typer.Option("--all", help="every status")] = False,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The analyst queue, most urgent first."""
    from soc_agent.runtime.backend import open_backend

    settings = _settings(config, store)

    async def main() -> list[Any]:
        async with open_backend(settings, writer=False) as backend:
            return await backend.store.list_proposals(status=None if all_ else status, limit=1000)

    proposals = _run(main)
    if as_json:
        for p in proposals:
            typer.echo(p.model_dump_json())
    else:
        typer.echo(render.proposals_table(proposals))


def _decide(
    proposal_id: str,
    analyst: str | None,
    token_file: Path | None,
    comment: str | None,
    approve: bool,
    store: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    from soc_agent.api.credentials.operator import cli_approver, read_cli_token
    from soc_agent.runtime.components import open_components

    settings = _settings(config, store)
    token = read_cli_token(token_file, dict(os.environ))

    async def main() -> Any:
        async with open_components(settings) as c:
            approver = await cli_approver(
                c.backend, token=token, claimed=analyst, local_operator=settings.local_operator
            )
            comment_ = comment
            if approver.name == LOCAL_OPERATOR and analyst:
                note = f"[local operator, typed as {analyst}]"
                comment_ = f"{comment} {note}" if comment else note
            if approve:
                return await c.proposals.approve(proposal_id, approver, comment_)
            return await c.proposals.reject(proposal_id, approver, comment_)

    outcome = _run(main)
    if as_json:
        typer.echo(
            json.dumps(
                {"message": outcome.message, "proposal": outcome.proposal.model_dump(mode="json")}
            )
        )
    else:
        typer.echo(outcome.message)


@incidents_app.command("close")
def incidents_close(
    incident_id: str,
    verdict: Annotated[
        str,
        typer.Option(help="true_positive | benign_true_positive | false_positive"),
    ],
    reason: Annotated[
        str, typer.Option(help="why: recorded, audited, and read by later decisions")
    ],
    analyst: AnalystOpt,
    token_file: TokenFileOpt = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Close an incident with your verdict, as your API token's holder (analyst role)."""
    from soc_agent.api.credentials.operator import cli_approver, read_cli_token
    from soc_agent.models import Verdict
    from soc_agent.pipeline.closing import close_incident
    from soc_agent.runtime.backend import open_backend

    try:
        chosen = Verdict(verdict)
    except ValueError:
        raise _fail(
            f"--verdict must be one of {', '.join(v.value for v in Verdict)}, not {verdict!r}", 2
        ) from None
    settings = _settings(config, store)
    token = read_cli_token(token_file, dict(os.environ))

    async def main() -> Any:
        async with open_backend(settings) as b:
            approver = await cli_approver(
                b, token=token, claimed=analyst, local_operator=settings.local_operator
            )
            return await close_incident(
                b.store,
                b.audit,
                incident_id=incident_id,
                verdict=chosen,
                reason=reason,
                closed_by=approver,
                at=datetime.now(UTC),
            )

    record = _run(main)
    if as_json:
        typer.echo(record.model_dump_json())
    else:
        typer.echo(f"{incident_id} closed as {record.verdict.value} by {record.closed_by.name}")


@proposals_app.command("approve")
def proposals_approve(
    proposal_id: str,
    analyst: AnalystOpt,
    token_file: TokenFileOpt = None,
    comment: Annotated[str | None, typer.Option(help="why")] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Approve a proposal as your API token's holder; it executes once enough distinct
    analysts approved."""
    _decide(proposal_id, analyst, token_file, comment, True, store, config, as_json)


@proposals_app.command("reject")
def proposals_reject(
    proposal_id: str,
    analyst: AnalystOpt,
    token_file: TokenFileOpt = None,
    comment: Annotated[str | None, typer.Option(help="why")] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Reject a proposal as your API token's holder; nothing is executed (a review item
    is rolled back)."""
    _decide(proposal_id, analyst, token_file, comment, False, store, config, as_json)


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None, typer.Option(help="head hash recorded elsewhere (detects truncation)")
    ] = None,
    expect_count: Annotated[
        int | None,
        typer.Option(help="entry count recorded elsewhere (Elasticsearch: the shared chain's)"),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            help="heads published elsewhere: an anchor file (audit_anchor_file) or `kafka` "
            "(the last entry on the audit topic)"
        ),
    ] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check the hash chain; exit 1 and name the first bad entry if tampered with."""
    from soc_agent.audit.anchors import read_anchors
    from soc_agent.runtime.backend import open_backend

    settings = _settings(config, store)
    if settings.store_backend == "sqlite" and not settings.store.exists():
        raise _fail(f"no store at {settings.store}")

    async def main() -> Any:
        anchors: dict[int, str] = {}
        if against == "kafka":
            from soc_agent.runtime.kafka.audit_head import published_head

            head = await published_head(settings.kafka)
            if head is None:
                raise _fail(f"the audit topic {settings.kafka.topics.audit} holds no entry")
            anchors[head[0]] = head[1]
        elif against is not None:
            anchors = read_anchors(Path(against))
        async with open_backend(settings, writer=False) as backend:
            return await backend.audit.verify(
                expected_head=expect_head, expected_count=expect_count, anchors=anchors
            )

    result = _run(main)
    chains = dict(result.parts)  # Elasticsearch: the shared chain ("") and each worker's
    if as_json:
        typer.echo(json.dumps(result.summary()))
    elif result.ok and chains:
        typer.echo(
            f"audit chains intact: {result.count} entries in {len(chains)} chains; the shared "
            f"chain (anchors every other) {chains[''].count} entries, head {result.head}"
        )
    elif result.ok:
        typer.echo(f"audit chain intact: {result.count} entries, head {result.head}")
    else:
        typer.echo(
            f"AUDIT CHAIN BROKEN at entry {result.first_bad_seq}: {result.problem}", err=True
        )
    unkeyed = not result.keyed or any(r.count and not r.keyed for r in chains.values())
    if result.ok and result.count and unkeyed:
        typer.echo(
            "WARNING: the audit chain is not keyed: anyone who can write the store could "
            "rebuild it. Configure audit_key, or let the agent key it (any run, serve or "
            "worker does)",
            err=True,
        )
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="entries to show")] = 50,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show the most recent audit entries."""
    from soc_agent.runtime.backend import open_backend

    settings = _settings(config, store)

    async def main() -> Any:
        async with open_backend(settings, writer=False) as backend:
            events = await backend.audit.list(limit=limit, newest_first=True)
            return list(reversed(events))

    for event in _run(main):
        if as_json:
            typer.echo(event.model_dump_json())
        else:
            typer.echo(
                f"{event.seq:>6} {event.at:%Y-%m-%d %H:%M:%S} {event.actor:<14} "
                f"{event.action:<22} {event.subject} {event.outcome}"
            )


@actions_app.command("list")
def actions_list(
    as_json: JsonOpt = False, store: StoreOpt = None, config: ConfigOpt = None
) -> None:
    """Actions in the ledger (executed, failed, rolled back)."""
    from soc_agent.runtime.backend import open_backend

    settings = _settings(config, store)

    async def main() -> list[Any]:
        async with open_backend(settings, writer=False) as backend:
            return await backend.store.list_actions(limit=1000)

    for r in _run(main):
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "id": r.action_id,
                        "key": r.idempotency_key,
                        "action": r.action,
                        "target": r.target,
                        "status": r.status,
                        "attempts": r.attempts,
                        "revert_at": r.revert_at.isoformat() if r.revert_at else None,
                    }
                )
            )
        else:
            typer.echo(f"{r.action_id}  {r.action:<16} {r.target:<40} {r.status}")


@actions_app.command("rollback")
def actions_rollback(
    action_id: str,
    analyst: AnalystOpt,
    token_file: TokenFileOpt = None,
    comment: Annotated[str | None, typer.Option(help="why")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Undo an executed reversible action with its declared inverse."""
    from soc_agent.api.credentials.operator import cli_actor, read_cli_token
    from soc_agent.runtime.components import open_components

    settings = _settings(config, store)
    token = read_cli_token(token_file, dict(os.environ))

    async def main() -> Any:
        async with open_components(settings) as c:
            actor = await cli_actor(c.backend, token=token, claimed=analyst)
            return await c.executor.rollback(
                action_id, actor=actor, reason=comment or "manual rollback"
            )

    outcome = _run(main)
    typer.echo(f"{outcome.status}: {outcome.detail}")
    if outcome.status != "rolled_back":
        raise typer.Exit(1)


@app.command("kill-switch")
def kill_switch(
    analyst: AnalystOpt,
    state: Annotated[str, typer.Argument(help="on | off | status")] = "status",
    token_file: TokenFileOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Turn every execution into a proposal (on), or let policy decide again (off)."""
    from soc_agent.api.credentials.operator import cli_actor, read_cli_token
    from soc_agent.pipeline import controls
    from soc_agent.runtime.backend import open_backend

    if state not in ("on", "off", "status"):
        raise _fail("state must be on, off or status", 2)
    settings = _settings(config, store)
    token = read_cli_token(token_file, dict(os.environ))

    async def main() -> dict[str, bool]:
        async with open_backend(settings) as b:
            if state == "status":
                return await controls.kill_switch_state(b.store, settings.policy)
            return await controls.set_kill_switch(
                b.store,
                b.audit,
                settings.policy,
                state == "on",
                actor=await cli_actor(b, token=token, claimed=analyst),
                at=datetime.now(UTC),
            )

    active = _run(main)["active"]
    typer.echo(f"kill switch is {'ON: no action executes automatically' if active else 'off'}")


@connectors_app.command("list")
def connectors_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Every installed connector, its capabilities, scopes and whether they are granted."""
    from soc_agent.runtime.control import describe_connectors

    settings = _settings(config, None)
    rows = describe_connectors(settings)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(render.connectors_table(rows))


PackArg = Annotated[str, typer.Argument(help="an installed pack's name or a pack directory")]


@packs_app.command("list")
def packs_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Installed packs and the ones `packs:` enables."""
    from soc_agent.runtime.pack_tools import list_packs

    rows = list_packs(_settings(config, None))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "installed, not enabled"
        typer.echo(f"{row['name']} {row['version']} ({state}): {row['description']}")
    if not rows:
        typer.echo("no packs installed or enabled")


@packs_app.command("show")
def packs_show(pack: PackArg, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """What a pack carries: playbooks, test cases, mappings, connectors, requirements."""
    from soc_agent.runtime.pack_tools import describe_pack, find_pack

    try:
        info = describe_pack(find_pack(pack, _settings(config, None)))
    except SocAgentError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{info['name']} {info['version']}: {info['description']}")
    typer.echo(f"  from {info['root']}")
    for key in ("playbooks", "mappings", "connectors", "python_connectors", "risk_rules"):
        typer.echo(f"  {key.replace('_', ' ')}: {', '.join(info[key]) or '-'}")
    typer.echo(f"  test cases: {info['test_cases']}")
    typer.echo(f"  requires connectors: {', '.join(info['requires']['connectors']) or '-'}")
    for name, spec in info["settings"].items():
        default = "required" if spec["required"] else f"default {json.dumps(spec['default'])}"
        typer.echo(f"  setting {name}: {spec['type']}, {default}  {spec['description']}")


@packs_app.command("validate")
def packs_validate(pack: PackArg, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Load the pack as start-up would, beside the deployment's own playbooks and connectors."""
    from soc_agent.runtime.pack_tools import find_pack, validate_pack

    settings = _settings(config, None)
    try:
        info = validate_pack(find_pack(pack, settings), settings)
    except SocAgentError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "errors": str(exc).splitlines()}))
            raise typer.Exit(1) from None
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, **info}))
    else:
        typer.echo(
            f"pack {info['name']} {info['version']} valid: {len(info['playbooks'])} playbook(s), "
            f"{info['test_cases']} test case(s), {len(info['mappings'])} mapping(s), "
            f"{len(info['connectors']) + len(info['python_connectors'])} connector(s)"
        )


@packs_app.command("test")
def packs_test(pack: PackArg, config: ConfigOpt = None) -> None:
    """Run the pack's playbook test cases against the playbooks production would load."""
    from soc_agent.runtime.pack_tools import find_pack, test_pack

    settings = _settings(config, None)
    try:
        found = find_pack(pack, settings)
    except SocAgentError as exc:
        raise _fail(str(exc)) from None
    results = _run(lambda: test_pack(found, settings))
    _print_cases(results)
    if not results or any(not r.ok for r in results):
        raise typer.Exit(1)


@connectors_app.command("show")
def connectors_show(
    name: Annotated[str, typer.Argument(help="connector name, as configured or installed")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """One connector: each capability's arguments and result schemas, scopes and grants."""
    from soc_agent.runtime.control import describe_connectors

    settings = _settings(config, None)
    rows = {row["name"]: row for row in describe_connectors(settings)}
    if name not in rows:
        hint = difflib.get_close_matches(name, list(rows), n=1)
        raise _fail(
            f"no connector named {name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(rows)})")
        )
    if as_json:
        typer.echo(json.dumps(rows[name], indent=2))
    else:
        typer.echo(render.connector_detail(rows[name], settings.grants.get(name, [])))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=0, max=65535)] = 8080,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The analyst API (/api/v1, OpenAPI at /openapi.json) and web UI over the store."""
    from soc_agent.api.app import serve as serve_api

    settings = _settings(config, store)
    where = (
        f"Elasticsearch {settings.elasticsearch.index_prefix}-*"
        if settings.store_backend == "elasticsearch"
        else f"store {settings.store}"
    )
    typer.echo(f"soc-agent API and UI on http://{host}:{port}/ ({where})", err=True)
    _announce_connectors(settings)
    serve_api(settings, host, port)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="who the token is for (audit identity)")],
    role: Annotated[str, typer.Option("--role", help="viewer | analyst | senior | admin")],
    analyst: AnalystOpt,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API token and print it once; only its hash is stored."""
    from soc_agent.api.credentials import create_token
    from soc_agent.api.credentials.operator import local_identity

    try:
        chosen = Role(role.lower())
    except ValueError:
        raise _fail(f"unknown role {role!r} (viewer, analyst, senior or admin)", 2) from None
    settings = _settings(config, store)
    secret = _run(lambda: create_token(settings, name, chosen, actor=local_identity(analyst)))
    typer.echo(secret)
    typer.echo(f"token for {name} ({chosen.value}) created; it is shown only this once", err=True)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="the token's name")],
    analyst: AnalystOpt,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a token; its web sessions end at once."""
    from soc_agent.api.credentials import revoke_token
    from soc_agent.api.credentials.operator import local_identity

    settings = _settings(config, store)
    _run(lambda: revoke_token(settings, name, actor=local_identity(analyst)))
    typer.echo(f"token {name} revoked")


@tokens_app.command("list")
def tokens_list(as_json: JsonOpt = False, store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Token names, roles and state (never the secrets)."""
    from soc_agent.api.credentials import list_tokens

    settings = _settings(config, store)
    for t in list_tokens(settings):
        row = {
            "name": t.name,
            "role": t.role.value,
            "active": t.active,
            "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
        }
        if as_json:
            typer.echo(json.dumps(row))
        else:
            state = "active" if t.active else "revoked"
            typer.echo(f"{t.name:<24} {t.role.value:<8} {state:<8} created {row['created_at']}")


@app.command()
def worker(
    webhook: Annotated[
        str | None,
        typer.Option("--webhook", help="also serve POST /v1/alerts on HOST:PORT"),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Kafka runtime: consume alerts, approvals and closings; publish decisions, proposals,
    actions, audit."""
    from soc_agent.runtime.kafka.commands import parse_listen, worker_summary
    from soc_agent.runtime.kafka.runner import run_worker

    settings = _settings(config, store)
    try:
        listen = parse_listen(webhook) if webhook else None
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    _announce_connectors(settings)
    report = _run(lambda: run_worker(settings, webhook=listen))
    typer.echo(worker_summary(report), err=True)


@app.command()
def stream(
    host: Annotated[
        str, typer.Option("--host", help="address of health and metrics (never a wildcard)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 6066,
    config: ConfigOpt = None,
) -> None:
    """Entity risk over Kafka: a faust app beside the workers (soc.alerts.normalized in)."""
    import ipaddress

    from soc_agent.runtime.stream import run_stream

    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        raise _fail(f"--host must be an IP address, not {host!r}", 2) from None
    if wildcard:
        raise _fail("--host must be one address (e.g. the pod's IP), not a wildcard", 2)
    settings = _settings(config, None)
    if not settings.risk.enabled:
        raise _fail("risk.enabled is false: the stream app has nothing to do", 2)
    try:
        run_stream(settings, web_host=host, web_port=port)
    except SocAgentError as exc:
        raise _fail(str(exc)) from None


@app.command("eval")
def eval_model(
    scenarios: Annotated[
        Path | None,
        typer.Option(
            "--scenarios",
            help="scenario file, its world/ beside it [default: the set shipped with the package]",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N scenarios")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Measure the configured model on labelled incidents: verdicts, injection, cost.

    Every alert runs through the pipeline in shadow mode on a fresh temporary
    store, with the scenario set's recorded connector data; nothing executes.
    """
    from soc_agent.runtime.evaluation import run_eval, shipped_scenarios

    settings = _settings(config, None)
    path = scenarios or shipped_scenarios()
    report = _run(lambda: run_eval(settings, path, limit=limit))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        typer.echo(render.eval_table(report))


@topics_app.command("create")
def topics_create(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Create the missing topics (names, partitions, retention from the kafka settings)."""
    from soc_agent.runtime.kafka.topics import create_topics

    settings = _settings(config, None)
    result = _run(lambda: create_topics(settings.kafka))
    for name, state in result.items():
        typer.echo(json.dumps({"topic": name, "state": state}) if as_json else f"{name}: {state}")


def main() -> None:
    # Everything the CLI prints may carry attacker-chosen text: it goes out escaped, and
    # so without colours (which are escape sequences too).
    os.environ.setdefault("NO_COLOR", "1")
    sys.stdout = TerminalSafeStream(sys.stdout)
    sys.stderr = TerminalSafeStream(sys.stderr)
    try:
        app()
    except SocAgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
