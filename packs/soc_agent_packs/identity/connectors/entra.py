"""Microsoft Entra ID through Microsoft Graph: user details, disabling and re-enabling an
account, and revoking its sign-in sessions.

OAuth2 client credentials (scope `https://graph.microsoft.com/.default`) for
an app registration granted only User.Read.All, User.EnableDisableAccount.All
and User.RevokeSessions.All. A user is read with `GET /v1.0/users/{upn}`;
actions resolve the object id first and then `PATCH /v1.0/users/{id}` with
`{"accountEnabled": false|true}` or `POST /v1.0/users/{id}/revokeSignInSessions`.
Verification reads `accountEnabled`. Errors are `{"error": {"code", "message"}}`;
429s carry `Retry-After`.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, Field
from soc_agent_connectors import (
    ActionDone,
    ActionInput,
    HttpRuntime,
    StateAnswer,
    StateQuery,
    capability,
)
from soc_agent_connectors._oauth2 import MicrosoftOAuth2Config, OAuth2Connector

from soc_agent.errors import ConnectorError

__all__ = ["Entra", "EntraConfig"]

_SELECT = (
    "id,displayName,userPrincipalName,mail,accountEnabled,department,jobTitle,"
    "createdDateTime,lastPasswordChangeDateTime,signInSessionsValidFromDateTime"
)


class EntraConfig(MicrosoftOAuth2Config):
    base_url: str = "https://graph.microsoft.com"  # national clouds: graph.microsoft.us, ...
    scope: str | None = "https://graph.microsoft.com/.default"
    upn_domain: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,}$",
        description="appended to a bare username from an alert: m.chen -> m.chen@<upn_domain>",
    )


class UserInput(BaseModel):
    user: str = Field(min_length=1, max_length=1024, description="UPN, object id or username")


class EntraUser(BaseModel):
    user: str
    found: bool
    id: str | None = None
    user_principal_name: str | None = None
    display_name: str | None = None
    mail: str | None = None
    account_enabled: bool | None = None
    department: str | None = None
    job_title: str | None = None
    created: str | None = None
    last_password_change: str | None = None
    sessions_valid_from: str | None = Field(
        default=None, description="signInSessionsValidFromDateTime: the last revocation"
    )


class Entra(OAuth2Connector):
    """Microsoft Graph users: details, accountEnabled, sign-in session revocation."""

    name = "entra"
    description = "Microsoft Entra ID (Graph): user details, disable/enable, revoke sessions"
    config_model: ClassVar[type[EntraConfig]] = EntraConfig

    def __init__(self, config: EntraConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.entra_config = config

    @capability(kind="query", scopes=["idp:read"], cache_ttl=60)
    async def get_user(self, args: UserInput) -> EntraUser:
        """Entra's view of a user: enabled, department, title, last session revocation."""
        user = await self._user(args.user, _SELECT)
        if user is None:
            return EntraUser(user=args.user, found=False)
        return EntraUser(
            user=args.user,
            found=True,
            id=user["id"],
            user_principal_name=user.get("userPrincipalName"),
            display_name=user.get("displayName"),
            mail=user.get("mail"),
            account_enabled=user.get("accountEnabled"),
            department=user.get("department"),
            job_title=user.get("jobTitle"),
            created=user.get("createdDateTime"),
            last_password_change=user.get("lastPasswordChangeDateTime"),
            sessions_valid_from=user.get("signInSessionsValidFromDateTime"),
        )

    @capability(kind="query", scopes=["idp:read"], cache_ttl=0)
    async def check_state(self, args: StateQuery) -> StateAnswer:
        """Whether an account is disabled (disable_user) or enabled (enable_user)."""
        if args.action not in ("disable_user", "enable_user"):
            raise ConnectorError(f"entra cannot verify {args.action!r}")
        user = await self._require_user(args.target)
        enabled = bool(user.get("accountEnabled"))
        return StateAnswer(
            action=args.action,
            target=args.target,
            in_effect=enabled if args.action == "enable_user" else not enabled,
            state=_state(enabled),
            vendor_id=user["id"],
        )

    # PATCH sets an absolute value: repeating it changes nothing, so it may be retried.
    @capability(
        kind="action",
        scopes=["user:disable"],
        target="user",
        target_names=("upn", "object_id"),
        reversible=True,
        rollback="enable_user",
        verify="check_state",
        risk="high",
        idempotent=True,
    )
    async def disable_user(self, args: ActionInput) -> ActionDone:
        """Disable the account (accountEnabled false): no new sign-ins."""
        return await self._set_enabled("disable_user", args, enabled=False)

    @capability(
        kind="action",
        scopes=["user:disable"],
        target="user",
        target_names=("upn", "object_id"),
        reversible=True,
        rollback="disable_user",
        verify="check_state",
        risk="low",
        idempotent=True,
    )
    async def enable_user(self, args: ActionInput) -> ActionDone:
        """Re-enable the account (accountEnabled true)."""
        return await self._set_enabled("enable_user", args, enabled=True)

    # Revoking again only moves signInSessionsValidFromDateTime forward: safe to retry.
    @capability(
        kind="action",
        scopes=["session:revoke"],
        target="user",
        target_names=("upn", "object_id"),
        reversible=False,
        risk="medium",
        idempotent=True,
    )
    async def revoke_sessions(self, args: ActionInput) -> ActionDone:
        """Invalidate the user's refresh tokens and session cookies (cannot be undone)."""
        user = await self._require_user(args.target)
        body = await self.post_json(
            f"/v1.0/users/{quote(user['id'], safe='')}/revokeSignInSessions", None, idempotent=True
        )
        if not (isinstance(body, dict) and body.get("value") is True):
            raise ConnectorError(f"entra: revokeSignInSessions for {args.target} answered {body}")
        return ActionDone(
            action="revoke_sessions",
            target=args.target,
            vendor_id=user["id"],
            state="sessions revoked",
            changed=True,
        )

    # --- internals -------------------------------------------------------------------------

    async def _set_enabled(self, action: str, args: ActionInput, *, enabled: bool) -> ActionDone:
        user = await self._require_user(args.target)
        changed = bool(user.get("accountEnabled")) != enabled
        if changed:
            await self.request(
                "PATCH",
                f"/v1.0/users/{quote(user['id'], safe='')}",
                json={"accountEnabled": enabled},
                idempotent=True,
            )
        return ActionDone(
            action=action,
            target=args.target,
            vendor_id=user["id"],
            state=_state(enabled),
            changed=changed,
        )

    async def _require_user(self, target: str) -> dict[str, Any]:
        user = await self._user(target, "id,userPrincipalName,accountEnabled")
        if user is None:
            raise ConnectorError(f"entra: no user {self._upn(target)!r}")
        return user

    async def _user(self, target: str, select: str) -> dict[str, Any] | None:
        response = await self.request(
            "GET",
            _user_path(self._upn(target)),
            params={"$select": select},
            allow_status={404},
            idempotent=True,
        )
        if response.status_code == 404:
            return None
        body = self.json_of(response)
        if not isinstance(body, dict) or not body.get("id"):
            raise ConnectorError(f"entra: the answer for {target!r} is not a user")
        return body

    def _upn(self, target: str) -> str:
        domain = self.entra_config.upn_domain
        if domain and "@" not in target and not _looks_like_object_id(target):
            return f"{target}@{domain}"
        return target


def _user_path(upn: str) -> str:
    if upn.startswith("$"):
        # Graph: a UPN starting with $ is addressed as users('$...')
        return f"/v1.0/users('{quote(upn.replace(chr(39), chr(39) * 2), safe='@$')}')"
    return f"/v1.0/users/{quote(upn, safe='@')}"


def _looks_like_object_id(value: str) -> bool:
    parts = value.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdefABCDEF" for p in parts for c in p
    )


def _state(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"
