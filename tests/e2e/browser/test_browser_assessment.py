"""The investigator's assessment in the analyst UI, in real headless Chromium.

`soc-agent run` investigates the fixture malware alert with a playbook that
uses the model (an OpenAI-compatible server on loopback answering as the API
documents), then `soc-agent serve` shows the result. The analyst reads the
verdict, narrative and findings on the proposal and incident pages, and every
citation leads to the evidence row (or alert) it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.served import Served, start_served
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

NARRATIVE = "teams_update.exe on WS-ENG-007 is known malware; no spread seen in the event store."
ANSWER = {
    "verdict": "malicious",
    "confidence": 0.92,
    "narrative": NARRATIVE,
    "findings": [
        {"statement": "Threat intel knows the hash as malicious.", "cites": ["hash_intel"]},
        {"statement": "No other host ran it in the last hour.", "cites": ["agent.1"]},
        {"statement": "The EDR rated the detection high.", "cites": ["alert"]},
    ],
    "recommended_actions": ["isolate_host"],
    "open_questions": ["How did the file arrive?"],
}


def _chat(request: RecordedRequest) -> Reply:
    looked_up = '"tool"' in json.dumps(request.json()["messages"])
    name, args = (
        ("final_result", ANSWER)
        if looked_up
        else ("event_store__search", {"query": "host.name:ws-eng-007", "window_minutes": 60})
    )
    call = {"id": "call_1", "type": "function"}
    call["function"] = {"name": name, "arguments": json.dumps(args)}  # type: ignore[assignment]
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return Reply(
        200,
        {
            "id": "chatcmpl-7",
            "object": "chat.completion",
            "created": 1795164400,
            "model": "local",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 700, "completion_tokens": 120, "total_tokens": 820},
        },
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Served]:
    model = VendorServer()
    model.route("POST", "/v1/chat/completions", _chat)
    llm = {"model": "local", "base_url": f"{model.url}/v1"}
    root = tmp_path_factory.mktemp("assessment")
    s = start_served(root, playbook="endpoint-malware-hybrid", llm=llm)
    yield s
    s.stop()
    model.close()


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


def _login(page: Any, served: Served) -> None:
    page.goto(served.url + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=token]", served.tokens["alice"])
    page.click("button[type=submit]")
    page.wait_for_url("**/proposals")


def test_the_proposal_page_shows_the_assessment_and_each_citation_leads_to_its_evidence(
    page: Any, served: Served
) -> None:
    _login(page, served)
    page.goto(f"{served.url}/proposals/{served.proposal_id('isolate_host')}")
    page.wait_for_selector("#assessment")
    assert page.inner_text("#verdict") == "malicious"
    assert page.inner_text("#confidence") == "0.92"
    assert page.inner_text("#narrative") == NARRATIVE
    assert "How did the file arrive?" in page.inner_text("#open-questions")
    findings = page.locator("#findings li.finding")
    assert findings.count() == 3
    for step in ("hash_intel", "agent.1"):
        link = page.locator("#findings a.cite", has_text=step)
        link.click()
        assert page.url.endswith(f"#evidence-{step}")
        row = page.locator(f"[id='evidence-{step}']")
        assert row.is_visible() and step in row.inner_text()
    page.locator("#findings a.cite", has_text="alert").click()
    target = page.url.rsplit("#", 1)[1]
    assert "ws-eng-007" in page.locator(f"[id='{target}']").inner_text().lower() or (
        "known malware" in page.locator(f"[id='{target}']").inner_text().lower()
    )
    assert "model" in page.inner_text("#breakdown")  # the model-derived rule is marked
    assert page.problems == []


def test_the_incident_page_shows_the_assessment_with_its_evidence(
    page: Any, served: Served
) -> None:
    _login(page, served)
    incident = served.api("GET", "/api/v1/proposals", "vic").json()["items"][0]["incident_id"]
    page.goto(f"{served.url}/incidents/{incident}")
    page.wait_for_selector("#assessment")
    assert page.inner_text("#narrative") == NARRATIVE
    page.locator("#findings a.cite", has_text="agent.1").click()
    assert page.locator("[id='evidence-agent.1']").is_visible()
    assert "event_store.search" in page.inner_text("[id='evidence-agent.1']")
    assert page.problems == []
