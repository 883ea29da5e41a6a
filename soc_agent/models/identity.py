"""Who acts: analyst roles, each including everything the ones before it may do."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


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
