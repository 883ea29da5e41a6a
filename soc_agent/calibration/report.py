"""Render a calibration as text for a terminal, JSON for machines and one
self-contained HTML page (inline CSS, the sweep plots as embedded PNGs).

Playbook names, actions, targets and alert ids come from alerts an attacker can
shape, so every one of them is escaped for where it lands: HTML-escaped in the
page, control characters made visible in the terminal, never drawn by matplotlib.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from soc_agent.calibration.model import (
    ActionFigures,
    CalibrationReport,
    Change,
    Precision,
    SweepPoint,
)
from soc_agent.calibration.stats import MISSING_EXTRA

__all__ = ["TARGET_PRECISION", "as_html", "as_json", "as_text", "describe", "first_reaching"]

# The precision a responder typically wants before letting an action run unattended;
# the plot marks the first execute_at that reaches it.
TARGET_PRECISION = 0.98
_DISPOSITIONS = ("executed", "proposed", "notified", "escalated", "other")


# -- shared wording ---------------------------------------------------------------------


def _level(confidence: float) -> str:
    return f"{round(confidence * 100, 1):g}%"


def describe(p: Precision, confidence: float, *, total: int | None = None) -> str:
    """`0.95 (38/40, 95% CI 0.83-0.99)`; `total` adds how many cases carried no verdict."""
    unlabelled = (total - p.labelled) if total is not None else 0
    tail = f"; {unlabelled} unlabelled" if unlabelled > 0 else ""
    if p.value is None or p.low is None or p.high is None:
        return "no labelled cases" + (f" ({unlabelled} unlabelled)" if unlabelled > 0 else "")
    return (
        f"{p.value:.2f} ({p.correct}/{p.labelled}, "
        f"{_level(confidence)} CI {p.low:.2f}-{p.high:.2f}{tail})"
    )


def first_reaching(sweep: Sequence[SweepPoint], target: float = TARGET_PRECISION) -> int | None:
    """The lowest execute_at whose precision reaches `target`, or None if none does."""
    return next((s.threshold for s in sweep if (s.precision.value or 0.0) >= target), None)


def _reach(sweep: Sequence[SweepPoint]) -> str:
    at = first_reaching(sweep)
    if at is None:
        return f"precision never reaches {TARGET_PRECISION:.2f}"
    return f"precision first reaches {TARGET_PRECISION:.2f} at execute_at {at}"


def _runs(report: CalibrationReport) -> list[tuple[str, str, tuple[ActionFigures, ...]]]:
    runs = [("current", "Current configuration", report.current)]
    if report.candidate is not None:
        runs.append(("candidate", "Candidate configuration", report.candidate))
    return runs


# -- text -------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """Control characters shown as escapes, so a hostile name cannot drive the terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _columns(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _text_action(f: ActionFigures, confidence: float) -> list[str]:
    c = f.counts
    lines = [
        f"{_plain(f.playbook)} / {_plain(f.action)}",
        "  " + "  ".join(f"{d} {getattr(c, d)}" for d in _DISPOSITIONS),
        f"  executions: {describe(f.executions, confidence, total=c.executed)}",
        f"  proposals:  {describe(f.proposals, confidence, total=c.proposed)}",
    ]
    if f.judged:
        lines.append(
            f"  judged on the action itself: {f.judged} (approvals, rejections, rollbacks)"
        )
    if not f.sweep:
        return [*lines, "  sweep: not recorded"]
    rows = [("execute_at", "executions", "precision")]
    rows += [
        (str(s.threshold), str(s.executions), describe(s.precision, confidence, total=s.executions))
        for s in f.sweep
    ]
    return [*lines, f"  sweep: {_reach(f.sweep)}", *_columns(rows, indent="    ")]


def _text_changes(changes: Sequence[Change]) -> list[str]:
    if not changes:
        return ["no disposition changes"]
    rows = [("alert", "playbook", "action", "target", "current", "candidate", "verdict")]
    rows += [
        (
            _plain(c.alert_id),
            _plain(c.playbook),
            _plain(c.action),
            _plain(c.target),
            c.current,
            c.candidate,
            c.verdict.value if c.verdict is not None else "-",
        )
        for c in changes
    ]
    return _columns(rows, indent="")


def as_text(report: CalibrationReport) -> str:
    """A readable report: figures per action and configuration, their sweeps, the changes."""
    lines = [
        f"Calibration: {report.alerts} alerts replayed, {report.labelled} labelled; "
        f"precision with Wilson {_level(report.confidence)} intervals",
    ]
    for _, title, figs in _runs(report):
        lines += ["", f"== {title} =="]
        if not figs:
            lines.append("no actions put forward")
        for f in figs:
            lines += ["", *_text_action(f, report.confidence)]
    if report.candidate is not None:
        lines += ["", f"== Changes (current -> candidate): {len(report.changes)} ==", ""]
        lines += _text_changes(report.changes)
    return "\n".join(lines) + "\n"


# -- JSON -------------------------------------------------------------------------------


def _json_precision(p: Precision) -> dict[str, Any]:
    return {
        "correct": p.correct,
        "labelled": p.labelled,
        "value": p.value,
        "low": p.low,
        "high": p.high,
    }


def _json_point(s: SweepPoint) -> dict[str, Any]:
    return {
        "threshold": s.threshold,
        "executions": s.executions,
        "precision": _json_precision(s.precision),
    }


def _json_figures(f: ActionFigures) -> dict[str, Any]:
    return {
        "playbook": f.playbook,
        "action": f.action,
        "counts": {d: getattr(f.counts, d) for d in _DISPOSITIONS},
        "executions": _json_precision(f.executions),
        "proposals": _json_precision(f.proposals),
        "sweep": [_json_point(s) for s in f.sweep],
        "judged": f.judged,
    }


def _json_change(c: Change) -> dict[str, Any]:
    return {
        "alert_id": c.alert_id,
        "playbook": c.playbook,
        "action": c.action,
        "target": c.target,
        "current": c.current,
        "candidate": c.candidate,
        "verdict": c.verdict.value if c.verdict is not None else None,
    }


def as_json(report: CalibrationReport) -> dict[str, Any]:
    """The report as plain JSON types with a fixed set of keys (`candidate` null when none)."""
    return {
        "alerts": report.alerts,
        "labelled": report.labelled,
        "confidence": report.confidence,
        "current": [_json_figures(f) for f in report.current],
        "candidate": (
            [_json_figures(f) for f in report.candidate] if report.candidate is not None else None
        ),
        "changes": [_json_change(c) for c in report.changes],
    }


# -- HTML -------------------------------------------------------------------------------


def _plot(sweep: Sequence[SweepPoint], confidence: float) -> bytes:
    """The sweep as a PNG: precision with its interval band, executions on a second axis."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeError(MISSING_EXTRA) from exc

    def _nan(v: float | None) -> float:
        return math.nan if v is None else v  # a gap in the line, not a zero

    x = [s.threshold for s in sweep]
    # A Figure on its own Agg canvas, without pyplot: no global figure registry to leak
    # into, and no backend switch in a process that embeds us.
    fig = Figure(figsize=(6.4, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    volume = ax.twinx()
    volume.bar(x, [s.executions for s in sweep], width=3, color="#b8c4d6", label="executions")
    volume.set_ylabel("executions")
    ax.set_zorder(volume.get_zorder() + 1)  # the precision line above the bars
    ax.patch.set_visible(False)
    ax.fill_between(
        x,
        [_nan(s.precision.low) for s in sweep],
        [_nan(s.precision.high) for s in sweep],
        color="#1f5fa8",
        alpha=0.18,
        label=f"{_level(confidence)} interval",
    )
    ax.plot(x, [_nan(s.precision.value) for s in sweep], "o-", color="#1f5fa8", label="precision")
    ax.axhline(TARGET_PRECISION, color="#888888", linestyle=":", linewidth=1)
    reached = first_reaching(sweep)
    if reached is not None:
        ax.axvline(reached, color="#c0392b", linestyle="--", linewidth=1)
        ax.annotate(
            f"{TARGET_PRECISION:.2f} at {reached}",
            (reached, TARGET_PRECISION),
            xytext=(4, -14),
            textcoords="offset points",
            color="#c0392b",
            fontsize=8,
        )
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("execute_at")
    ax.set_ylabel("precision")
    lines, labels = ax.get_legend_handles_labels()
    bars, bar_labels = volume.get_legend_handles_labels()
    ax.legend(lines + bars, labels + bar_labels, loc="lower left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    fig.clear()  # drop the artists now rather than when the collector gets to them
    return buffer.getvalue()


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;
color:#1d2330}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #d5dae3;padding-bottom:.2rem}
h3{font-size:1rem;margin-bottom:.3rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}
th,td{border:1px solid #d5dae3;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f4f8;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.action{margin-bottom:2rem}.plot{display:block;max-width:100%;height:auto}
.muted{color:#5b6476}code{overflow-wrap:anywhere}
"""


def _row(cells: Sequence[str], *, header: bool = False, cls: str = "") -> str:
    tag = "th" if header else "td"
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _html_action(f: ActionFigures, confidence: float, anchor: str) -> str:
    c = f.counts
    name = f"{escape(f.playbook)} / {escape(f.action)}"
    counts = "".join(
        f'<tr><th scope="row">{d}</th><td class="n">{getattr(c, d)}</td></tr>'
        for d in _DISPOSITIONS
    )
    figures = (
        '<table class="figures"><tbody>'
        f"{counts}"
        '<tr><th scope="row">precision of executions</th>'
        f'<td class="precision-executions">'
        f"{escape(describe(f.executions, confidence, total=c.executed))}</td></tr>"
        '<tr><th scope="row">precision of proposals</th>'
        f'<td class="precision-proposals">'
        f"{escape(describe(f.proposals, confidence, total=c.proposed))}</td></tr>"
        '<tr><th scope="row">judged on the action itself</th>'
        f'<td class="n judged">{f.judged}</td></tr>'
        "</tbody></table>"
    )
    if f.sweep:
        png = base64.b64encode(_plot(f.sweep, confidence)).decode("ascii")
        rows = "".join(
            _row(
                [
                    str(s.threshold),
                    str(s.executions),
                    escape(describe(s.precision, confidence, total=s.executions)),
                ],
                cls="sweep-point",
            )
            for s in f.sweep
        )
        sweep = (
            f'<img class="plot" alt="Precision and executions against execute_at for {name}" '
            f'src="data:image/png;base64,{png}">'
            f'<p class="reach">{_reach(f.sweep)}</p>'
            '<table class="sweep"><thead>'
            + _row(["execute_at", "executions", "precision"], header=True)
            + f"</thead><tbody>{rows}</tbody></table>"
        )
    else:
        sweep = '<p class="muted">No threshold sweep was recorded for this action.</p>'
    return (
        f'<section class="action" id="{anchor}" data-playbook="{escape(f.playbook)}" '
        f'data-action="{escape(f.action)}"><h3>{name}</h3>{figures}{sweep}</section>'
    )


def _html_changes(report: CalibrationReport) -> str:
    if report.candidate is None:
        return '<p class="muted">No candidate configuration was given.</p>'
    if not report.changes:
        return '<p class="muted">No alert changes disposition under the candidate.</p>'
    head = _row(
        ["alert", "playbook", "action", "target", "current", "candidate", "verdict"], header=True
    )
    body = "".join(
        _row(
            [
                f"<code>{escape(c.alert_id)}</code>",
                escape(c.playbook),
                escape(c.action),
                f"<code>{escape(c.target)}</code>",
                escape(c.current),
                escape(c.candidate),
                escape(c.verdict.value) if c.verdict is not None else "-",
            ],
            cls="change",
        )
        for c in report.changes
    )
    return f'<table id="changes"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _summary(report: CalibrationReport) -> str:
    parts = [
        f"{report.alerts} alerts replayed in shadow mode, {report.labelled} of them labelled "
        f"by an analyst. Precision is the share of labelled cases where acting was right: the "
        f"analyst approved or upheld the action, or, where the action itself was not judged, "
        f"the incident was a true positive, "
        f"with Wilson {_level(report.confidence)} intervals."
    ]
    for _, title, figs in _runs(report):
        executed = sum(f.counts.executed for f in figs)
        proposed = sum(f.counts.proposed for f in figs)
        parts.append(f"{title}: {executed} executions, {proposed} proposals.")
    if report.candidate is not None:
        parts.append(f"{len(report.changes)} actions change disposition.")
    return " ".join(parts)


def as_html(report: CalibrationReport) -> str:
    """One HTML5 document that needs nothing but itself: no script, no external URL."""
    sections = []
    for key, title, figs in _runs(report):
        body = (
            "".join(_html_action(f, report.confidence, f"{key}-{i}") for i, f in enumerate(figs))
            or '<p class="muted">No actions put forward.</p>'
        )
        sections.append(f'<section id="{key}"><h2>{title}</h2>{body}</section>')
    diff = _html_changes(report)
    sections.append(f'<section id="diff"><h2>Changes, current to candidate</h2>{diff}</section>')
    # The policy forbids any fetch and any script: even a name that slipped past
    # escaping could neither run nor call out.
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>soc-agent calibration</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>Calibration before trusting</h1>"
        f'<p id="summary">{escape(_summary(report))}</p>' + "".join(sections) + "</body></html>\n"
    )
