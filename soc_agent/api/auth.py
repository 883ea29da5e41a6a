"""Authentication (bearer tokens, OIDC JWTs, web sessions) and role checks.

The JSON API accepts only `Authorization: Bearer ...`: an API token (looked up
by its hash) or, when `api.oidc` is configured, a JWT from the issuer. The web
UI uses a session cookie opened by logging in with either of the two. Cookies
never authenticate the JSON API, so no API call can be forged cross-site.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from soc_agent.api.context import ApiContext, get_context
from soc_agent.api.credentials import Session
from soc_agent.api.errors import Forbidden, Unauthorized
from soc_agent.api.identity import Principal
from soc_agent.api.oidc import OidcError, looks_like_jwt
from soc_agent.models import AuditEvent, Role

__all__ = [
    "SESSION_COOKIE",
    "audit_login",
    "authenticate_bearer",
    "authenticate_session",
    "require",
    "require_role",
]

SESSION_COOKIE = "soc_session"

_bearer = HTTPBearer(auto_error=False, description="API token or OIDC access token")


async def authenticate_bearer(ctx: ApiContext, token: str) -> Principal:
    """The caller behind a bearer credential; Unauthorized says why it was refused."""
    token = token.strip()
    if not token:
        raise Unauthorized("missing bearer token")
    if looks_like_jwt(token):
        if ctx.oidc is None:
            raise Unauthorized("OIDC tokens are not accepted: api.oidc is not configured")
        try:
            return await ctx.oidc.verify(token)
        except OidcError as exc:
            raise Unauthorized(str(exc)) from None
    record = await ctx.tokens.lookup(token, ctx.now())
    if record is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(name=record.name, role=record.role, source="token", token_name=record.name)


async def authenticate_session(ctx: ApiContext, session_id: str | None) -> Session | None:
    """The live session behind a cookie; a revoked token ends its sessions at once."""
    if not session_id:
        return None
    session = await ctx.sessions.get(session_id, ctx.now())
    if session is None:
        return None
    name = session.principal.token_name
    if name is not None and not await ctx.tokens.is_active(name):
        await ctx.sessions.delete(session_id)
        return None
    return session


def require_role(principal: Principal, role: Role, what: str) -> None:
    if not principal.may(role):
        raise Forbidden(
            f"{what} needs the {role.value} role; {principal.name} is {principal.role.value}"
        )


async def _api_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token in the Authorization header")
    return await authenticate_bearer(get_context(request), credentials.credentials)


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the bearer's principal, if its role includes `role`."""

    async def dependency(
        principal: Annotated[Principal, Depends(_api_principal)],
    ) -> Principal:
        require_role(principal, role, "this endpoint")
        return principal

    return dependency


async def audit_login(
    ctx: ApiContext, name: str, outcome: str, detail: str, *, client: str = ""
) -> None:
    """A web login on the audit chain: each success, and each burst of failures once.

    Only an authenticated login names its actor; a failed one is `unauthenticated`,
    with the username it claimed (capped) and the client as details, so nobody can
    write an audit entry in another's name.
    """
    ok = outcome == "ok"
    await ctx.components.audit.append(
        AuditEvent(
            actor=name[:128] if ok else "unauthenticated",
            action="api.login",
            subject="web-ui",
            reason=detail[:500],
            outcome=outcome,
            details={} if ok else {"claimed_username": name[:64], "client": client[:64]},
            at=ctx.now(),
        )
    )
