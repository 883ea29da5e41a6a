"""Errors the API turns into HTTP statuses; the web UI renders the same ones as pages."""

from __future__ import annotations

from soc_agent.errors import SocAgentError

__all__ = [
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Unauthorized",
    "UpstreamFailed",
]


class ApiError(SocAgentError):
    status: int = 400

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    """No credential, or one that is unknown, revoked or expired."""

    status = 401


class Forbidden(ApiError):
    """Authenticated, but the role may not do this."""

    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    """The object is no longer in a state that allows this (decided, expired, ...)."""

    status = 409


class UpstreamFailed(ApiError):
    """A connector call behind the request failed (e.g. the inverse of a rollback)."""

    status = 502
