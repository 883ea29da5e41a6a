"""The calibration report opened from disk in real headless Chromium: the sweep plots
decode, the diff table is there, a hostile target reads as text, and the page asks
the network for nothing. A screenshot goes to artifacts/ for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from soc_agent.calibration.model import ActionOutcome, Verdict
from soc_agent.calibration.report import as_html
from soc_agent.calibration.stats import build_report
from tests.e2e.served import ROOT

ARTIFACTS = ROOT / "artifacts"
HOSTILE = "<img src=x onerror=alert(1)>"
TP, FP = Verdict.TRUE_POSITIVE, Verdict.FALSE_POSITIVE


def _outcome(
    i: int, *, score: float, verdict: Verdict | None, disposition: str, target: str = ""
) -> ActionOutcome:
    return ActionOutcome(
        alert_id=f"okta-{i:04d}",
        incident_id=f"inc-{i:04d}",
        playbook="identity-compromise",
        action="disable_user",
        target=target or f"user:analyst{i}@acme.example",
        score=score,
        disposition=disposition,
        rule="threshold.execute" if disposition == "executed" else "threshold.propose",
        verdict=verdict,
        at_threshold={t: "executed" if score >= t else "proposed" for t in range(50, 101, 5)},
    )


def _report_file(folder: Path) -> Path:
    # Scores 55..99: false positives cluster low, so precision climbs with the threshold.
    current = [
        _outcome(
            i,
            score=55 + i,
            verdict=FP if i % 9 == 0 and i < 30 else TP,
            disposition="executed" if 55 + i >= 80 else "proposed",
            target=HOSTILE if i == 20 else "",
        )
        for i in range(45)
    ]
    # The candidate lowers execute_at to 70: proposals scoring 70-79 now execute.
    candidate = [
        _outcome(
            i,
            score=o.score,
            verdict=o.verdict,
            disposition="executed" if o.score >= 70 else "proposed",
            target=o.target,
        )
        for i, o in enumerate(current)
    ]
    path = folder / "calibration.html"
    path.write_text(as_html(build_report(current, candidate, alerts=45)), encoding="utf-8")
    return path


@dataclass
class Opened:
    page: Any
    url: str
    requests: list[str] = field(default_factory=list)  # everything but the page itself
    problems: list[str] = field(default_factory=list)  # console errors, script errors, dialogs


def _open(chromium: Any, path: Path) -> Iterator[Opened]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    opened = Opened(page=context.new_page(), url=path.as_uri())

    def guard(route: Any) -> None:
        # data: URLs never reach a route; anything that does, but the page, is a leak.
        if route.request.url == opened.url:
            route.continue_()
        else:
            opened.requests.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = opened.page
    page.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.problems.append(str(e)))

    def dialog(d: Any) -> None:  # an alert() would mean markup from the data ran
        opened.problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(opened.url, wait_until="load")
    yield opened
    context.close()


@pytest.fixture
def report(chromium: Any, tmp_path: Path) -> Iterator[Opened]:
    yield from _open(chromium, _report_file(tmp_path))


def test_plots_decode_and_the_page_fetches_nothing(report: Opened) -> None:
    page = report.page
    widths = page.eval_on_selector_all(
        "img.plot", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
    )
    assert widths == [640, 640]  # one sweep plot per configuration's action, decoded
    assert page.locator("section#current table.sweep tr.sweep-point").count() == 11
    assert "first reaches 0.98 at execute_at" in page.inner_text("section#current p.reach")
    assert "0.95" in page.inner_text("section#current td.precision-executions")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "calibration-report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert report.requests == []
    assert report.problems == []  # no CSP violation, no script error, no alert()


def test_diff_table_lists_the_changes_and_shows_a_hostile_target_as_text(report: Opened) -> None:
    page = report.page
    rows = page.locator("#changes tbody tr.change")
    assert rows.count() == 10  # scores 70..79 move from proposed to executed
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[0] == "okta-0015" and first[4:6] == ["proposed", "executed"]
    hostile = page.locator("#changes tbody tr.change", has_text="okta-0020").locator("td")
    assert hostile.nth(3).inner_text() == HOSTILE  # the markup reads as text
    assert page.locator("img").count() == 2  # and built no element
    assert page.locator('img[src="x"]').count() == 0
    assert report.requests == [] and report.problems == []


def test_the_network_guard_catches_an_external_request(chromium: Any, tmp_path: Path) -> None:
    # Proves the guard above would see a leak: a page that does fetch one is caught.
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><img src="http://calibration.invalid/pixel.png">')
    for opened in _open(chromium, leaky):
        assert opened.requests == ["http://calibration.invalid/pixel.png"]
