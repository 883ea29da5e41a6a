"""Who acts: analyst roles (each including everything the ones before it may do), approvers."""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DOORS", "LOCAL_OPERATOR", "Approver", "Door", "Role", "canonical_name", "identity"]

Door = Literal["token", "oidc", "local"]
DOORS: tuple[Door, ...] = ("token", "oidc", "local")
LOCAL_OPERATOR = "local:operator"
"""Every CLI decision without a token, whatever name was typed: one person for four-eyes."""


def canonical_name(name: str) -> str:
    """How names compare: Unicode NFKC, case-folded, outer spaces removed (`Senior-1` is
    `senior-1`; a full-width or ligature look-alike is the plain name)."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def identity(door: Door, name: str) -> str:
    """The namespaced identity a door vouches for: `token:alice`, `oidc:alice`."""
    return f"{door}:{canonical_name(name)}"


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
    """Who decides a proposal, as the door that authenticated them vouches.

    `name` is the namespaced identity (`token:alice`, `oidc:alice`,
    `local:operator`), kept canonical, so a token holder and an OIDC user of
    the same name are two people and `Alice` is `alice`.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=3, max_length=256)
    role: Role

    @field_validator("name")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        door, sep, rest = value.partition(":")
        if not sep or door not in DOORS or not canonical_name(rest):
            raise ValueError(
                "an approver is a namespaced identity: token:NAME, oidc:NAME or local:operator"
            )
        return f"{door}:{canonical_name(rest)}"

    @classmethod
    def of(cls, door: Door, name: str, role: Role) -> Approver:
        return cls(name=identity(door, name), role=role)

    @property
    def bare_name(self) -> str:
        """The canonical name without its door."""
        return self.name.partition(":")[2]
