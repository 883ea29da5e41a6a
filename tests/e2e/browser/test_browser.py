"""The analyst UI in real headless Chromium against `soc-agent serve` running as a process.

An analyst logs in, reads a proposal with its evidence, approves it, and sees
it executed and audited; a viewer sees no approve button and a POST forged
with the viewer's own session is refused. A screenshot of the proposal page is
written to artifacts/ for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.served import ROOT, Served, start_served

ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Served]:
    s = start_served(tmp_path_factory.mktemp("browser"))
    yield s
    s.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    yield page
    context.close()


def _login(page: Any, served: Served, who: str) -> None:
    page.goto(served.url + "/proposals")
    assert page.url.endswith("/login")  # no session: sent to log in
    page.fill("input[name=username]", who)
    page.fill("input[name=token]", served.tokens[who])
    page.click("button[type=submit]")
    page.wait_for_url("**/proposals")
    assert page.inner_text("#whoami") == who


def test_analyst_reviews_evidence_approves_and_sees_it_executed_and_audited(
    page: Any, served: Served
) -> None:
    _login(page, served, "alice")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 2
    assert "Kill switch off" in page.inner_text("#kill-switch")
    page.click("a.proposal-link:text('quarantine_file')")
    page.wait_for_selector("#evidence")

    assert page.inner_text("#proposal-status") == "pending"
    assert page.inner_text("#policy-rule") == "autonomy.collaborator"
    assert page.inner_text("#playbook-rule") == "quarantine-malicious-files"
    evidence = page.locator("#evidence tr.evidence-row")
    assert evidence.count() == 2
    assert "host_asset" in evidence.nth(0).inner_text()
    assert "ok" in evidence.nth(0).inner_text() and " ms" in evidence.nth(0).inner_text()
    breakdown = page.inner_text("#breakdown")
    assert "hash-malicious" in breakdown and "+50" in breakdown
    assert page.inner_text("#criticality") in {"low", "medium", "high", "critical"}
    assert "crowdstrike" in page.inner_text("#alert-1").lower()
    assert "ws-eng-007" in page.inner_text("#alert-1")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "proposal-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    page.fill("textarea[name=comment]", "known beacon, contain it")
    page.click("#approve")
    page.wait_for_selector("#flash")
    assert "executed" in page.inner_text("#flash")
    assert page.inner_text("#proposal-status") == "executed"
    assert "executed" in page.inner_text("#execution")
    trail = page.inner_text("#audit-trail")
    assert "proposal.approve" in trail and "alice" in trail and "known beacon" in trail
    assert page.locator("#approve").count() == 0
    assert [a for a, _ in served.journal()] == ["quarantine_file"]

    page.goto(served.url + "/audit?action=action.execute")
    audit = page.inner_text("#audit")
    assert "action.execute" in audit and "executed" in audit
    assert "Chain intact" in page.inner_text("#chain")
    assert page.problems == []  # nothing blocked by the CSP, no script errors


def test_viewer_sees_no_approve_button_and_a_forged_post_is_refused(
    page: Any, served: Served
) -> None:
    _login(page, served, "vic")
    pid = served.proposal_id("isolate_host")
    page.goto(f"{served.url}/proposals/{pid}")
    page.wait_for_selector("#evidence")
    assert page.locator("#approve").count() == 0
    assert page.locator("#reject").count() == 0
    assert "needs the senior role" in page.inner_text("#no-decide")
    csrf = page.get_attribute("input[name=csrf]", "value")
    forged = page.request.post(
        f"{served.url}/proposals/{pid}/approve", form={"csrf": csrf, "comment": "forged"}
    )
    assert forged.status == 403
    assert "needs the senior role" in forged.text()
    status = served.api("GET", f"/api/v1/proposals/{pid}", "vic").json()["proposal"]["status"]
    assert status == "pending"
    assert ("isolate_host", "ws-eng-007") not in served.journal()
    assert page.problems == []


def test_four_eyes_in_the_browser_and_kill_switch_on_every_page(
    page: Any, served: Served, chromium: Any
) -> None:
    pid = served.proposal_id("isolate_host")
    _login(page, served, "sam")
    page.goto(f"{served.url}/proposals/{pid}")
    page.click("#approve")
    page.wait_for_selector("#flash")
    assert "needs 1 more approver" in page.inner_text("#flash")
    page.click("#approve")  # the same senior again
    page.wait_for_selector("#flash")
    assert "already approved" in page.inner_text("#flash")
    assert page.inner_text("#proposal-status") == "pending"

    other = chromium.new_context().new_page()
    _login(other, served, "sue")
    other.goto(f"{served.url}/controls")
    other.click("#kill-on")
    other.wait_for_selector("#flash")
    for path in ("/proposals", f"/proposals/{pid}", "/incidents", "/actions", "/audit"):
        other.goto(served.url + path)
        assert "KILL SWITCH ON" in other.inner_text("#kill-switch"), path
    other.goto(f"{served.url}/proposals/{pid}")
    other.click("#approve")
    other.wait_for_selector("#flash")
    assert "executed" in other.inner_text("#flash")
    assert served.journal().count(("isolate_host", "ws-eng-007")) == 1
    other.goto(f"{served.url}/controls")
    other.click("#kill-off")
    other.wait_for_selector("#flash")
    assert "Kill switch off" in other.inner_text("#kill-switch")
    other.context.close()
