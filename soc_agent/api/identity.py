"""Who is calling: the authenticated analyst (or service) behind a request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from soc_agent.models import Approver, Role
from soc_agent.models.identity import identity

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    `name` is the name the credential carries; `identity` (the name in its
    door's namespace) is what the audit log records and four-eyes counts;
    `source` is how it authenticated (`token` or `oidc`); `token_name` ties a
    web session to the API token it was opened with, so revoking the token ends
    the session; `expires_at` caps a session at the credential's own expiry.
    """

    name: str
    role: Role
    source: str
    token_name: str | None = None
    expires_at: datetime | None = None

    def may(self, role: Role) -> bool:
        return self.role.includes(role)

    @property
    def identity(self) -> str:
        """Who this is in the audit log and for four-eyes: `token:alice`, `oidc:alice`."""
        return identity("oidc" if self.source == "oidc" else "token", self.name)

    @property
    def approver(self) -> Approver:
        return Approver(name=self.identity, role=self.role)
