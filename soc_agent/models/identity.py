"""Who acts: analyst roles (each including everything the ones before it may do), approvers."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Approver", "Role"]


class Role(StrEnum):
    """Analyst roles, each including everything the ones before it may do."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    SENIOR = "senior"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def includes(self, other: Role) -> bool:
        """True when this role may do what `other` may."""
        return self.rank >= other.rank


_RANK = {role: i for i, role in enumerate(Role)}


class Approver(BaseModel):
    """Who decides a proposal, as the door that authenticated them vouches: name and role."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=256)
    role: Role
