"""The real model server the reasoning investigator's integration tests run against.

It answers OpenAI-style chat completions, and a `response_format` JSON schema
constrains what it generates: the prompt asks for prose, which is what the model
writes without the schema, so valid JSON with it proves enforcement, not a
cooperative model. Generation is kept to a few dozen tokens: about 16 tokens/s
on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.infra.fixtures import needs
from tests.infra.llm import RunningLLM

pytestmark = [pytest.mark.real_model, *needs("llm")]


class Assessment(BaseModel):
    """What the investigator asks of a model, in miniature: a closed verdict, bounded numbers."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["benign", "suspicious", "malicious"]
    confidence: int = Field(ge=0, le=100)
    reason: str = Field(max_length=80)


@pytest.fixture
def client(llm_server: RunningLLM) -> Iterator[httpx.Client]:
    # Prompt processing runs at tens of tokens/s here: allow for a slow first answer.
    with httpx.Client(base_url=llm_server.base_url, timeout=120.0) as http:
        yield http


def _chat(client: httpx.Client, model: str, **request: Any) -> dict[str, Any]:
    response = client.post(
        "/chat/completions", json={"model": model, "temperature": 0, "seed": 7, **request}
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def test_lists_its_model(client: httpx.Client, llm_server: RunningLLM) -> None:
    response = client.get("/models")
    response.raise_for_status()
    assert llm_server.model in [entry["id"] for entry in response.json()["data"]]
    assert llm_server.base_url.startswith("http://127.0.0.1:")
    assert llm_server.base_url.endswith("/v1")


def test_chat_completion_answers(client: httpx.Client, llm_server: RunningLLM) -> None:
    body = _chat(
        client,
        llm_server.model,
        messages=[
            {"role": "system", "content": "You answer with one word."},
            {"role": "user", "content": "Reply with the word pong."},
        ],
        max_tokens=8,
    )
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert "pong" in choice["message"]["content"].lower()
    assert 0 < body["usage"]["completion_tokens"] <= 8


_PROSE_PLEASE = [
    {
        "role": "user",
        "content": "mimikatz.exe ran on a domain controller. In one plain English sentence, "
        "no JSON: is it malicious, and how sure are you on a scale of 0 to 1000?",
    }
]


def test_json_schema_response_format_is_enforced(
    client: httpx.Client, llm_server: RunningLLM
) -> None:
    unconstrained = _chat(client, llm_server.model, messages=_PROSE_PLEASE, max_tokens=32)
    assert not unconstrained["choices"][0]["message"]["content"].lstrip().startswith("{")

    body = _chat(
        client,
        llm_server.model,
        messages=_PROSE_PLEASE,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "assessment",
                "strict": True,
                "schema": Assessment.model_json_schema(),
            },
        },
        max_tokens=96,
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # complete, not cut off by max_tokens
    assessment = Assessment.model_validate_json(choice["message"]["content"])
    assert assessment.verdict in {"suspicious", "malicious"}
