"""`soc-agent run` with a model configured from SOC_AGENT_LLM__*: the assessment is printed.

A real process against an OpenAI-compatible server on loopback that answers as
the chat-completions API documents; the shipped triage-default playbook runs as
hybrid because a model is configured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import SAMPLES, cli, decisions
from tests.integration.connectors.vendor_server import RecordedRequest, Reply, VendorServer

ANSWER = {
    "verdict": "suspicious",
    "confidence": 0.6,
    "narrative": "A Splunk notable with no matching playbook;\nthe source host needs a look.",
    "findings": [{"statement": "The notable names one host.", "cites": ["alert"]}],
    "recommended_actions": ["notify"],
    "open_questions": ["Is the host expected to do this?"],
}


def _final(request: RecordedRequest) -> Reply:
    call = {"name": "final_result", "arguments": json.dumps(ANSWER)}
    return Reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1795164400,
            "model": "local",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 500, "completion_tokens": 90, "total_tokens": 590},
        },
    )


@pytest.fixture
def server() -> Iterator[VendorServer]:
    s = VendorServer()
    s.route("POST", "/v1/chat/completions", _final)
    yield s
    s.close()


def _env(server: VendorServer) -> dict[str, str]:
    return {"SOC_AGENT_LLM__MODEL": "local", "SOC_AGENT_LLM__BASE_URL": f"{server.url}/v1"}


def test_run_prints_the_models_assessment(server: VendorServer, tmp_path: Path) -> None:
    alert = str(SAMPLES / "splunk_notable.json")
    text = cli("run", "--alerts", alert, "--store", "t.db", cwd=tmp_path, env=_env(server))
    assert text.returncode == 0, text.stderr
    assert "playbook triage-default" in text.stdout
    assert (
        "model: SUSPICIOUS (0.6) A Splunk notable with no matching playbook; the source host"
        in text.stdout
    )
    assert "* The notable names one host. [alert]" in text.stdout

    as_json = cli(
        "run", "--alerts", alert, "--store", "j.db", "--json", cwd=tmp_path, env=_env(server)
    )
    assert as_json.returncode == 0, as_json.stderr
    (decision,) = decisions(as_json.stdout)
    assert decision["assessment"]["verdict"] == "suspicious"
    assert decision["assessment"]["open_questions"] == ["Is the host expected to do this?"]
    assert decision["model_escalation"] is None
    assert len(server.calls("POST", "/v1/chat/completions")) == 2  # one per run


def test_without_a_model_the_output_has_no_assessment(tmp_path: Path) -> None:
    alert = str(SAMPLES / "splunk_notable.json")
    result = cli("run", "--alerts", alert, "--store", "t.db", "--json", cwd=tmp_path)
    (decision,) = decisions(result.stdout)
    assert decision["assessment"] is None and decision["model_escalation"] is None


def test_eval_prints_a_table_and_json(server: VendorServer, tmp_path: Path) -> None:
    scenarios = str(Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "scenarios.yaml")
    table = cli("eval", "--scenarios", scenarios, cwd=tmp_path, env=_env(server))
    assert table.returncode == 0, table.stderr
    assert "t-03" in table.stdout and "resisted" in table.stdout
    assert "model openai:local: 3 scenarios, accuracy 0%, answered 100%" in table.stdout
    assert "injection: 1 scenarios, resisted 100%, detected 100%" in table.stdout

    as_json = cli(
        "eval", "--scenarios", scenarios, "--json", "--limit", "1", cwd=tmp_path, env=_env(server)
    )
    report = json.loads(as_json.stdout)
    assert report["summary"]["scenarios"] == 1
    assert report["results"][0]["verdict"] == "suspicious"
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working directory


def test_eval_without_a_model_says_what_to_configure(tmp_path: Path) -> None:
    scenarios = str(Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "scenarios.yaml")
    result = cli("eval", "--scenarios", scenarios, cwd=tmp_path)
    assert result.returncode == 1
    assert "eval measures a model: configure llm:" in result.stderr


def test_eval_defaults_to_the_set_shipped_with_the_package(
    server: VendorServer, tmp_path: Path
) -> None:
    result = cli("eval", "--limit", "2", "--json", cwd=tmp_path, env=_env(server))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["id"] for r in report["results"]] == ["eval-01", "eval-02"]
    assert [r["playbook"] for r in report["results"]] == ["malware-on-endpoint"] * 2
