"""Okta: user details, suspend and unsuspend, and clearing a user's sessions (Users API).

Authorised with an API token (`Authorization: SSWS <token>`) of an admin
whose (custom) role only reads users, suspends and unsuspends them and
clears their sessions. `GET /api/v1/users/{login}` resolves
the alert's user (id, login or login shortname); the lifecycle operations
`POST /api/v1/users/{id}/lifecycle/suspend|unsuspend` and
`DELETE /api/v1/users/{id}/sessions` act on the Okta id. Errors are
`{"errorCode": "E0000007", "errorSummary": ...}`; a 429 says when the limit
resets in `X-Rate-Limit-Reset` (epoch seconds), which is honoured.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, Field
from soc_agent_connectors import (
    ActionDone,
    ActionInput,
    HttpConnectorConfig,
    HttpRuntime,
    ResetHeaderConnector,
    StateAnswer,
    StateQuery,
    capability,
)

from soc_agent.errors import ConnectorError

__all__ = ["Okta", "OktaConfig"]

# Statuses in which the user cannot sign in because an admin (or we) disabled the account.
_DISABLED = frozenset({"SUSPENDED", "DEPROVISIONED"})


class OktaConfig(HttpConnectorConfig):
    base_url: str = Field(description="the Okta org URL, e.g. https://example.okta.com")
    revoke_oauth_tokens: bool = Field(
        default=True,
        description="revoke_sessions also revokes the OIDC/OAuth tokens Okta issued to the user",
    )


class UserInput(BaseModel):
    user: str = Field(min_length=1, max_length=512, description="Okta id, login or shortname")


class OktaUser(BaseModel):
    user: str
    found: bool
    id: str | None = None
    status: str | None = Field(default=None, description="ACTIVE, SUSPENDED, LOCKED_OUT, ...")
    login: str | None = None
    email: str | None = None
    department: str | None = None
    display_name: str | None = None
    last_login: str | None = None
    status_changed: str | None = None


class Okta(ResetHeaderConnector):
    """Okta Users API: user details and the lifecycle operations of account containment."""

    name = "okta"
    description = "Okta: user details, suspend/unsuspend, clear sessions"
    config_model: ClassVar[type[OktaConfig]] = OktaConfig
    auth_scheme = "SSWS"
    rate_limit_reset_header = "X-Rate-Limit-Reset"

    def __init__(self, config: OktaConfig, *, runtime: HttpRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        self.okta_config = config

    @capability(kind="query", scopes=["idp:read"], cache_ttl=60)
    async def get_user(self, args: UserInput) -> OktaUser:
        """Okta's view of a user: status, login, email, department, last login."""
        user = await self._user(args.user)
        if user is None:
            return OktaUser(user=args.user, found=False)
        profile = user.get("profile") or {}
        names = [profile.get("firstName"), profile.get("lastName")]
        return OktaUser(
            user=args.user,
            found=True,
            id=user["id"],
            status=user.get("status"),
            login=profile.get("login"),
            email=profile.get("email"),
            department=profile.get("department"),
            display_name=profile.get("displayName") or " ".join(n for n in names if n) or None,
            last_login=user.get("lastLogin"),
            status_changed=user.get("statusChanged"),
        )

    @capability(kind="query", scopes=["idp:read"], cache_ttl=0)
    async def check_state(self, args: StateQuery) -> StateAnswer:
        """Whether a user is suspended (disable_user) or not (enable_user)."""
        if args.action not in ("disable_user", "enable_user"):
            raise ConnectorError(f"okta cannot verify {args.action!r}")
        user = await self._require_user(args.target)
        disabled = user.get("status") in _DISABLED
        return StateAnswer(
            action=args.action,
            target=args.target,
            in_effect=disabled if args.action == "disable_user" else not disabled,
            state=user.get("status"),
            vendor_id=user["id"],
        )

    # Okta documents lifecycle operations as non-idempotent (a second suspend answers 400),
    # so they are never retried blindly; the executor verifies through check_state instead.
    @capability(
        kind="action",
        scopes=["user:disable"],
        target="user",
        target_names=("upn", "email"),
        reversible=True,
        rollback="enable_user",
        verify="check_state",
        risk="high",
        idempotent=False,
    )
    async def disable_user(self, args: ActionInput) -> ActionDone:
        """Suspend a user: no sign-in until unsuspended; groups and apps are kept."""
        user = await self._require_user(args.target)
        status = str(user.get("status") or "")
        if status in _DISABLED:
            return _done("disable_user", args, user["id"], status, changed=False)
        await self.request(
            "POST", f"/api/v1/users/{_segment(user['id'])}/lifecycle/suspend", idempotent=False
        )
        return _done("disable_user", args, user["id"], "SUSPENDED", changed=True)

    @capability(
        kind="action",
        scopes=["user:disable"],
        target="user",
        target_names=("upn", "email"),
        reversible=True,
        rollback="disable_user",
        verify="check_state",
        risk="low",
        idempotent=False,
    )
    async def enable_user(self, args: ActionInput) -> ActionDone:
        """Unsuspend a suspended user."""
        user = await self._require_user(args.target)
        status = str(user.get("status") or "")
        if status == "DEPROVISIONED":
            raise ConnectorError(
                f"okta: {args.target} is deactivated (DEPROVISIONED); unsuspend cannot "
                "reactivate it, an Okta admin must"
            )
        if status != "SUSPENDED":
            return _done("enable_user", args, user["id"], status, changed=False)
        await self.request(
            "POST", f"/api/v1/users/{_segment(user['id'])}/lifecycle/unsuspend", idempotent=False
        )
        return _done("enable_user", args, user["id"], "ACTIVE", changed=True)

    # DELETE is idempotent: clearing sessions twice leaves none either way, so it is retried.
    @capability(
        kind="action",
        scopes=["session:revoke"],
        target="user",
        target_names=("upn", "email"),
        reversible=False,
        risk="medium",
        idempotent=True,
    )
    async def revoke_sessions(self, args: ActionInput) -> ActionDone:
        """Clear all of a user's Okta sessions (and OAuth tokens); cannot be undone."""
        user = await self._require_user(args.target)
        params = {"oauthTokens": "true"} if self.okta_config.revoke_oauth_tokens else None
        await self.request(
            "DELETE",
            f"/api/v1/users/{_segment(user['id'])}/sessions",
            params=params,
            idempotent=True,
        )
        return _done("revoke_sessions", args, user["id"], "sessions cleared", changed=True)

    # --- internals -------------------------------------------------------------------------

    async def _user(self, user: str) -> dict[str, Any] | None:
        response = await self.request(
            "GET", f"/api/v1/users/{_segment(user)}", allow_status={404}, idempotent=True
        )
        if response.status_code == 404:
            return None
        body = self.json_of(response)
        if not isinstance(body, dict) or not body.get("id"):
            raise ConnectorError(f"okta: GET /api/v1/users/{user}: answer is not a user")
        return body

    async def _require_user(self, target: str) -> dict[str, Any]:
        user = await self._user(target)
        if user is None:
            raise ConnectorError(f"okta: no user {target!r}")
        return user


def _segment(value: str) -> str:
    # A login is an email address; anything else in it must not change the path.
    return quote(value, safe="@")


def _done(action: str, args: ActionInput, user_id: str, state: str, *, changed: bool) -> ActionDone:
    return ActionDone(
        action=action, target=args.target, vendor_id=user_id, state=state, changed=changed
    )
