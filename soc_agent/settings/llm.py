"""`llm:` in the config file: the language model the reasoning investigator may use.

Absent, nothing changes: every playbook investigates with its steps only and
the embedded default needs no model. Every field also comes from
`SOC_AGENT_LLM__*` (e.g. `SOC_AGENT_LLM__MODEL`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from soc_agent_connectors import SecretRef

__all__ = ["LlmBudget", "LlmConfig"]


class LlmBudget(BaseModel):
    """What one investigation may spend; spending it escalates to an analyst."""

    model_config = ConfigDict(extra="forbid")

    max_requests: int = Field(default=12, ge=1, le=200, description="model turns")
    max_tool_calls: int = Field(default=8, ge=0, le=200, description="lookups the model runs")
    max_input_tokens: int = Field(default=60_000, ge=1_000, le=2_000_000)
    max_output_tokens: int = Field(default=4_000, ge=100, le=200_000)
    max_seconds: float = Field(default=120.0, gt=0, le=3600, description="wall time")
    max_repeats: int = Field(
        default=1, ge=1, le=10, description="identical calls (same tool, same arguments) allowed"
    )


class LlmConfig(BaseModel):
    """The model, how to reach it, and what an investigation may spend."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["openai", "anthropic"] = Field(
        default="openai",
        description="wire format: OpenAI-compatible chat completions (OpenAI, Azure OpenAI, "
        "vLLM, Ollama, llama.cpp's server) or the Anthropic Messages API",
    )
    model: str = Field(min_length=1, max_length=200, description="model name at the provider")
    base_url: str | None = Field(default=None, description="the provider's API root")
    api_key: SecretRef | None = Field(default=None, description="env:NAME or file:/path")
    tool_calling: Literal["native", "constrained"] = Field(
        default="native",
        description="native tool calls, or a reply constrained to a JSON schema of "
        "{name, arguments} for small local models that write calls as text",
    )
    temperature: float | None = Field(
        default=None,
        ge=0.0,
        le=2.0,
        description="sampling temperature; 0 for the most repeatable answers "
        "(default: the provider's)",
    )
    timeout_seconds: float = Field(default=60.0, gt=0, le=600, description="per model request")
    max_retries: int = Field(default=2, ge=0, le=10, description="on 429 and 5xx, with backoff")
    max_concurrency: int = Field(default=2, ge=1, le=64, description="requests in flight")
    identity: str = Field(
        default="investigator",
        min_length=1,
        max_length=64,
        description="who the model acts as at the gateway and in the audit log",
    )
    budget: LlmBudget = Field(default_factory=LlmBudget)
    redact_fields: list[str] = Field(
        default_factory=list,
        description="alert fields (dotted paths) replaced by [redacted] before they leave "
        "the machine",
    )
