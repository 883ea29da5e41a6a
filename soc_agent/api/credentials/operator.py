"""Who is at the command line: an API token's holder, or the local operator.

Whoever can run the CLI can write the store, so the CLI cannot prove a name
typed after `--analyst`. Decisions on proposals therefore need an API token
(its holder and role are what `soc-agent tokens create` recorded), unless
`local_operator: true` says this installation trusts its shell users; then
every such decision is the one identity `local:operator`, which four-eyes
counts once however many names are typed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from soc_agent.api.credentials.factory import open_token_store
from soc_agent.errors import SocAgentError
from soc_agent.models import Approver, Role
from soc_agent.models.identity import LOCAL_OPERATOR, canonical_name, identity
from soc_agent.runtime.backend import Backend

__all__ = ["OperatorRefused", "cli_actor", "cli_approver", "local_identity", "read_cli_token"]

TOKEN_ENV = "SOC_AGENT_TOKEN"  # noqa: S105 - the variable's name, not a secret


class OperatorRefused(SocAgentError):
    """The CLI caller cannot decide: no token and no local-operator mode, or a bad token."""


def read_cli_token(token_file: Path | None, environ: dict[str, str]) -> str | None:
    """The API token from `--token-file` or `SOC_AGENT_TOKEN` (never a command-line value,
    which other local users could read in the process list)."""
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise OperatorRefused(f"cannot read the token file: {exc.strerror}") from None
    return environ.get(TOKEN_ENV, "").strip() or None


async def _token_identity(backend: Backend, token: str, claimed: str | None) -> Approver:
    async with open_token_store(backend) as tokens:
        record = await tokens.lookup(token, datetime.now(UTC))
    if record is None:
        raise OperatorRefused("unknown or revoked API token")
    if claimed and canonical_name(claimed) != canonical_name(record.name):
        raise OperatorRefused("the token does not belong to the analyst named by --analyst")
    return Approver.of("token", record.name, record.role)


async def cli_approver(
    backend: Backend, *, token: str | None, claimed: str | None, local_operator: bool
) -> Approver:
    """The approver behind a CLI decision on a proposal."""
    if token is not None:
        return await _token_identity(backend, token, claimed)
    if local_operator:
        return Approver(name=LOCAL_OPERATOR, role=Role.ADMIN)
    raise OperatorRefused(
        "deciding a proposal needs an API token: pass --token-file FILE or set "
        f"{TOKEN_ENV} (create one with `soc-agent tokens create`), or turn on "
        "local_operator in the configuration"
    )


def local_identity(claimed: str | None) -> str:
    """An unauthenticated local claim: the name given, else the login, as local:NAME."""
    return identity("local", claimed or os.environ.get("USER") or "operator")


async def cli_actor(backend: Backend, *, token: str | None, claimed: str | None) -> str:
    """Who a CLI state change other than a proposal decision is audited as: the token's
    holder, or the name typed, marked as an unauthenticated local claim."""
    if token is not None:
        return (await _token_identity(backend, token, claimed)).name
    return local_identity(claimed)
