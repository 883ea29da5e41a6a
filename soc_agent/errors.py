"""The error hierarchy: every error a user can meet says what to fix and where."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectorError",
    "EgressDeniedError",
    "ExpressionError",
    "NormalizationError",
    "PlaybookError",
    "PolicyError",
    "ScopeDeniedError",
    "SocAgentError",
    "StoreError",
]


class SocAgentError(Exception):
    """Root of every error soc-agent raises on purpose."""


class ConfigError(SocAgentError):
    """Invalid configuration: names the source (file or env), the key and the problem."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.source, self.key, self.line = source, key, line
        where = ":".join(p for p in (source, str(line) if line else None) if p)
        prefix = f"{where}: " if where else ""
        field = f"{key}: " if key else ""
        super().__init__(f"{prefix}{field}{message}")


class PlaybookError(SocAgentError):
    """Invalid playbook: names the file, line and field."""

    def __init__(
        self, message: str, *, file: str, line: int | None = None, field: str | None = None
    ) -> None:
        self.file, self.line, self.field = file, line, field
        where = f"{file}:{line}" if line else file
        at = f" [{field}]" if field else ""
        super().__init__(f"{where}{at}: {message}")


class ExpressionError(SocAgentError):
    """A CEL expression failed to compile or evaluate."""


class NormalizationError(SocAgentError):
    """An input could not be turned into a canonical Alert; becomes a dead letter."""

    def __init__(self, reason: str, *, format: str | None = None) -> None:
        self.reason, self.format = reason, format
        super().__init__(reason if format is None else f"{format}: {reason}")


class RecordFiltered(SocAgentError):
    """A record a mapping recognises but its `keep` conditions leave out: not an alert,
    not a dead letter, counted as filtered."""

    def __init__(self, mapping: str, reason: str) -> None:
        self.mapping, self.reason = mapping, reason
        super().__init__(f"{mapping}: {reason}")


class ConnectorError(SocAgentError):
    """A connector call failed (transport, vendor error, bad output)."""


class EgressDeniedError(ConnectorError):
    """A connector tried to reach a host or address it is not allowed to; nothing was sent."""


class ScopeDeniedError(ConnectorError):
    """The gateway refused a call because the agent does not hold the needed scopes."""


class PolicyError(SocAgentError):
    """The policy configuration is inconsistent."""


class StoreError(SocAgentError):
    """The store is unreadable, locked, or holds something it should not."""
