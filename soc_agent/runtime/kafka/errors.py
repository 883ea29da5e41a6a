"""The Kafka runtime's own error, importable without the worker."""

from __future__ import annotations

from soc_agent.errors import SocAgentError

__all__ = ["KafkaUnavailable"]


class KafkaUnavailable(SocAgentError):
    """The brokers could not be reached or refused the client."""
