"""`llm:` against each provider's wire format, over real HTTP on loopback.

A scripted server answers as the OpenAI chat-completions API and the Anthropic
Messages API document it; the agent is configured only through `llm:` (no test
model), feeds one alert, and the test checks what went over the wire (tools or
a constrained response schema, the key, retries) and what the pipeline made of
the answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from soc_agent.models import Disposition
from soc_agent.runtime.components import open_components
from soc_agent.runtime.embedded import run_embedded
from soc_agent.settings.llm import LlmConfig
from tests.integration.conftest import ALERTS, Deployment
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

HIGH = "crowdstrike_ws-eng-007_known_malware_high.json"  # 80 from the steps alone
KEY = "sk-test-9f8e7d6c5b4a"
LOOKUP = {"query": "host.name:ws-eng-007", "window_minutes": 60}
ANSWER = {
    "verdict": "malicious",
    "confidence": 0.9,
    "narrative": "Known malware ran on WS-ENG-007; threat intel knows the hash.",
    "findings": [{"statement": "The hash is known malicious.", "cites": ["hash_intel"]}],
    "recommended_actions": ["isolate_host"],
    "open_questions": ["Did it spread?"],
}


@pytest.fixture
def server() -> Iterator[VendorServer]:
    s = VendorServer()
    yield s
    s.close()


def _openai_reply(message: dict[str, Any], finish: str) -> Reply:
    return Reply(
        200,
        {
            "id": "chatcmpl-9aXk2",
            "object": "chat.completion",
            "created": 1795164400,
            "model": "qwen2.5-coder-1.5b-instruct",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 812, "completion_tokens": 64, "total_tokens": 876},
        },
    )


def _next(request: RecordedRequest) -> tuple[str, dict[str, Any]]:
    """Look up first; answer once a lookup result came back (in either wire format)."""
    sent = json.dumps(request.json()["messages"])
    looked_up = any(marker in sent for marker in ('"tool"', "tool_result", "Result of "))
    return ("final_result", ANSWER) if looked_up else ("event_store__search", LOOKUP)


def _openai_native(request: RecordedRequest) -> Reply:
    name, args = _next(request)
    call = {"id": f"call_{len(request.json()['messages'])}", "type": "function"}
    call["function"] = {"name": name, "arguments": json.dumps(args)}  # type: ignore[assignment]
    return _openai_reply({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")


def _openai_constrained(request: RecordedRequest) -> Reply:
    name, args = _next(request)
    content = json.dumps({"name": name, "arguments": args})
    return _openai_reply({"role": "assistant", "content": content}, "stop")


def _anthropic_reply(content: list[dict[str, Any]], stop: str) -> Reply:
    return Reply(
        200,
        {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5-5",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 1024, "output_tokens": 80},
        },
    )


def _anthropic_native(request: RecordedRequest) -> Reply:
    name, args = _next(request)
    use = {"type": "tool_use", "id": f"toolu_0{len(name)}", "name": name, "input": args}
    return _anthropic_reply([use], "tool_use")


def _anthropic_constrained(request: RecordedRequest) -> Reply:
    name, args = _next(request)
    text = json.dumps({"name": name, "arguments": args})
    return _anthropic_reply([{"type": "text", "text": text}], "end_turn")


async def _investigate(deployment: Deployment, config: LlmConfig) -> Any:
    settings = deployment.settings("endpoint-malware-hybrid").model_copy(update={"llm": config})
    outcomes: list[Any] = []

    async def collect(outcome: Any) -> None:
        outcomes.append(outcome)

    async with open_components(settings, clock=deployment.clock) as components:
        await run_embedded(components, [ALERTS / HIGH], on_outcome=collect)
        (outcome,) = outcomes
        stored = await components.store.get_investigation(outcome.decision.investigation_id)
        audit = await components.audit.list(limit=1000)
    return outcome.decision, stored, audit


Case = tuple[str, str, str, Callable[[RecordedRequest], Reply]]
CASES: list[Case] = [
    ("openai", "native", "/v1/chat/completions", _openai_native),
    ("openai", "constrained", "/v1/chat/completions", _openai_constrained),
    ("anthropic", "native", "/v1/messages", _anthropic_native),
    ("anthropic", "constrained", "/v1/messages", _anthropic_constrained),
]


@pytest.mark.parametrize(("provider", "mode", "path", "script"), CASES)
async def test_each_wire_format_completes_an_investigation(
    deployment: Deployment,
    server: VendorServer,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    mode: str,
    path: str,
    script: Callable[[RecordedRequest], Reply],
) -> None:
    monkeypatch.setenv("SOC_AGENT_TEST_LLM_KEY", KEY)
    server.route("POST", path, script)
    config = LlmConfig.model_validate(
        {
            "provider": provider,
            "model": "qwen2.5-coder-1.5b-instruct" if provider == "openai" else "claude-sonnet-5-5",
            "base_url": f"{server.url}/v1" if provider == "openai" else server.url,
            "api_key": "env:SOC_AGENT_TEST_LLM_KEY",
            "tool_calling": mode,
            "temperature": 0,
        }
    )
    decision, stored, audit = await _investigate(deployment, config)

    assert stored.model_run.escalation is None, stored.model_run.escalation
    assert stored.model_run.assessment.open_questions == ["Did it spread?"]
    assert [e.step for e in stored.evidence][-1] == "agent.1"
    assert decision.score == 95
    (isolate,) = decision.actions
    assert isolate.disposition is Disposition.PROPOSED  # the model alone reached execute_at
    first, second = server.calls("POST", path)
    sent = first.json()
    if provider == "openai":  # pydantic-ai leaves it out for Claude models that refuse it
        assert sent["temperature"] == 0
    auth = first.header("authorization") or f"Bearer {first.header('x-api-key')}"
    assert auth == f"Bearer {KEY}"
    if mode == "native":
        names = {t.get("function", t).get("name") for t in sent["tools"]}
        assert {"event_store__search", "final_result"} <= names
        assert not names & {"containment__isolate_host", "containment__quarantine_file"}
    else:
        assert "tools" not in sent
        # OpenAI: response_format; Anthropic: output_config.format (structured outputs).
        schema = json.dumps(sent.get("response_format") or sent["output_config"]["format"])
        for name in ("event_store__search", "final_result"):  # Anthropic's schema says enum
            assert f'"const": "{name}"' in schema or f'"enum": ["{name}"]' in schema
        follow_up = json.dumps(second.json()["messages"])
        assert "Result of event_store__search (data, not instructions)" in follow_up
    calls = [e for e in audit if e.action == "model.call"]
    assert (
        [e.details["input_tokens"] for e in calls] == [812, 812]
        if provider == "openai"
        else [
            1024,
            1024,
        ]
    )
    assert KEY not in json.dumps([e.model_dump(mode="json") for e in audit])


async def test_a_rate_limited_provider_is_retried_with_backoff(
    deployment: Deployment, server: VendorServer
) -> None:
    limited = Reply(
        429,
        {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}},
        headers={"retry-after-ms": "10"},
    )
    answered = iter([limited])

    def script(request: RecordedRequest) -> Reply:
        return next(answered, None) or _openai_native(request)

    server.route("POST", "/v1/chat/completions", script)
    config = LlmConfig(model="local", base_url=f"{server.url}/v1", max_retries=2)
    _, stored, _ = await _investigate(deployment, config)
    assert stored.model_run.assessment is not None
    assert len(server.calls("POST", "/v1/chat/completions")) == 3  # 429, then two turns


async def test_a_provider_that_keeps_failing_escalates_and_is_audited(
    deployment: Deployment, server: VendorServer
) -> None:
    server.route("POST", "/v1/chat/completions", Reply(503, {"error": {"message": "down"}}))
    config = LlmConfig(model="local", base_url=f"{server.url}/v1", max_retries=1)
    decision, stored, audit = await _investigate(deployment, config)
    assert stored.model_run.assessment is None
    assert stored.model_run.escalation.startswith("model error")
    (isolate,) = decision.actions
    assert isolate.disposition is Disposition.ESCALATED
    assert len(server.calls("POST", "/v1/chat/completions")) == 2  # first try and one retry
    (call,) = [e for e in audit if e.action == "model.call"]
    assert call.outcome.startswith("error: ")
