"""The analyst web UI: server-rendered pages, plain HTML forms, no JavaScript.

Sessions are server-side (see `sessions`); the cookie is HttpOnly,
SameSite=Strict and Secure over https (or as `api.cookie_secure` says). Every
form POST carries a CSRF token bound to the session (the login form: a
double-submit cookie). Authorisation is the same code as the JSON API's, so a
forged POST from a role that may not is refused with 403 whatever the page showed.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from soc_agent.api import operations
from soc_agent.api.auth import SESSION_COOKIE, audit_login, authenticate_bearer
from soc_agent.api.context import ApiContext, get_context
from soc_agent.api.credentials import Session
from soc_agent.api.errors import BadRequest, Conflict, Forbidden, Unauthorized
from soc_agent.api.views import (
    MAX_OFFSET,
    action_json,
    actions_page,
    audit_json,
    incident_detail,
    proposal_detail,
    proposal_json,
)
from soc_agent.api.web_render import (
    Comment,
    Csrf,
    LoginRequired,
    SessionDep,
    check_csrf,
    cookie_secure,
    flash_and_back,
    render,
    render_error,
)
from soc_agent.models import AutonomyLevel, ProposalStatus, Verdict
from soc_agent.models.identity import canonical_name
from soc_agent.pipeline.closing import CLOSE_ROLE

__all__ = ["LoginRequired", "render_error", "router"]

LOGIN_CSRF_COOKIE = "soc_login_csrf"
PAGE = 50

router = APIRouter(include_in_schema=False)


# -- login ------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = await render(request, None, "login.html", login_csrf=token, error=None)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        secure=cookie_secure(request),
        samesite="strict",
        path="/login",
        max_age=3600,
    )
    return response


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=8192)],
    csrf: Csrf = "",
    username: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    ctx = get_context(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
        raise Forbidden("the login form's CSRF token is missing or does not match; reload it")
    claimed = username.strip()
    client = request.client.host if request.client else "unknown"
    guard = ctx.login_guard
    wait = guard.retry_after(client, claimed) if guard is not None else None
    status, error = 401, ""
    if guard is not None and wait is not None:
        if guard.throttled_first_time(client, claimed):
            failures = guard.failures(client, claimed)
            await audit_login(
                ctx,
                claimed or "anonymous",
                "throttled",
                f"{failures} failed logins within {ctx.config.login_window_seconds}s; "
                f"further attempts refused for {wait:.0f}s",
                client=client,
            )
        status, error = 429, f"too many failed logins; try again in {max(1, round(wait))}s"
    else:
        try:
            principal = await authenticate_bearer(ctx, token)
            if claimed and canonical_name(claimed) != canonical_name(principal.name):
                raise Unauthorized("the token does not belong to that user")
        except Unauthorized as exc:
            error = exc.detail
            if guard is None or guard.failed(client, claimed):
                await audit_login(ctx, claimed or "anonymous", "denied", error, client=client)
    if error:
        fresh = secrets.token_urlsafe(32)
        page = await render(
            request, None, "login.html", http_status=status, login_csrf=fresh, error=error
        )
        if status == 429 and wait is not None:
            page.headers["Retry-After"] = str(max(1, round(wait)))
        page.set_cookie(
            LOGIN_CSRF_COOKIE,
            fresh,
            httponly=True,
            secure=cookie_secure(request),
            samesite="strict",
            path="/login",
        )
        return page
    ttl = timedelta(seconds=ctx.config.session_ttl_seconds)
    session_id = await ctx.sessions.create(principal, ttl, ctx.now())
    await audit_login(
        ctx, principal.identity, "ok", f"{principal.source} login as {principal.role}"
    )
    response = RedirectResponse("/proposals", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        secure=cookie_secure(request),
        samesite="strict",
        path="/",
        max_age=ctx.config.session_ttl_seconds,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep, csrf: Csrf = "") -> Response:
    check_csrf(session, csrf)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    await get_context(request).sessions.delete(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- proposals --------------------------------------------------------------------------


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/proposals", status_code=303)


@router.get("/proposals")
async def proposals_page(
    request: Request,
    session: SessionDep,
    status: Annotated[str, Query(max_length=20)] = "pending",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    ctx = get_context(request)
    try:
        chosen = None if status == "all" else ProposalStatus(status)
    except ValueError:
        raise BadRequest(f"unknown proposal status {status[:20]!r}") from None
    rows = await ctx.components.store.list_proposals(status=chosen, limit=PAGE, offset=offset)
    return await render(
        request,
        session,
        "proposals.html",
        proposals=[proposal_json(p, ctx.now()) for p in rows],
        status=status,
        statuses=["all", *[s.value for s in ProposalStatus]],
        offset=offset,
        page=PAGE,
    )


@router.get("/proposals/{proposal_id}")
async def proposal_page(request: Request, proposal_id: str, session: SessionDep) -> HTMLResponse:
    ctx = get_context(request)
    proposal = await operations.load_proposal(ctx, proposal_id)
    detail = await proposal_detail(ctx, proposal, session.principal)
    return await render(request, session, "proposal.html", d=detail)


async def _decide(
    request: Request, proposal_id: str, session: Session, csrf: str, comment: str, ok: bool
) -> RedirectResponse:
    check_csrf(session, csrf)
    ctx = get_context(request)
    to = f"/proposals/{proposal_id}"
    try:
        outcome = await operations.decide(
            ctx, session.principal, proposal_id, approve=ok, comment=comment.strip() or None
        )
    except Conflict as exc:
        return await flash_and_back(request, f"Not done: {exc.detail}", to)
    return await flash_and_back(request, outcome.message, to)


@router.post("/proposals/{proposal_id}/approve")
async def approve(
    request: Request, proposal_id: str, session: SessionDep, csrf: Csrf = "", comment: Comment = ""
) -> RedirectResponse:
    return await _decide(request, proposal_id, session, csrf, comment, True)


@router.post("/proposals/{proposal_id}/reject")
async def reject(
    request: Request, proposal_id: str, session: SessionDep, csrf: Csrf = "", comment: Comment = ""
) -> RedirectResponse:
    return await _decide(request, proposal_id, session, csrf, comment, False)


# -- incidents, actions, audit ----------------------------------------------------------


@router.get("/incidents")
async def incidents_page(
    request: Request, session: SessionDep, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
) -> HTMLResponse:
    rows = await get_context(request).components.store.list_incidents(limit=PAGE, offset=offset)
    return await render(
        request, session, "incidents.html", incidents=rows, offset=offset, page=PAGE
    )


@router.get("/incidents/{incident_id}")
async def incident_page(request: Request, incident_id: str, session: SessionDep) -> HTMLResponse:
    detail = await incident_detail(get_context(request), incident_id)
    may_close = session.principal.may(CLOSE_ROLE)
    return await render(
        request, session, "incident.html", d=detail, may_close=may_close, verdicts=list(Verdict)
    )


@router.post("/incidents/{incident_id}/close")
async def close_incident(
    request: Request,
    incident_id: str,
    session: SessionDep,
    verdict: Annotated[Verdict, Form()],
    csrf: Csrf = "",
    reason: Comment = "",
) -> RedirectResponse:
    check_csrf(session, csrf)
    to = f"/incidents/{incident_id}"
    try:
        record = await operations.close(
            get_context(request), session.principal, incident_id, verdict, reason
        )
    except BadRequest as exc:
        return await flash_and_back(request, f"Not closed: {exc.detail}", to)
    return await flash_and_back(request, f"Closed as {record.verdict.value}", to)


@router.get("/actions")
async def actions_list(
    request: Request, session: SessionDep, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
) -> HTMLResponse:
    ctx = get_context(request)
    rows = await actions_page(ctx, status=None, incident_id=None, limit=PAGE, offset=offset)
    actions = [
        {
            **action_json(r),
            "may_rollback": r.status == "executed"
            and r.request.reversible
            and session.principal.may(operations.decide_role(ctx, r.request.risk)),
        }
        for r in rows
    ]
    return await render(request, session, "actions.html", actions=actions, offset=offset, page=PAGE)


@router.post("/actions/{action_id}/rollback")
async def rollback(
    request: Request, action_id: str, session: SessionDep, csrf: Csrf = "", comment: Comment = ""
) -> RedirectResponse:
    check_csrf(session, csrf)
    try:
        outcome = await operations.rollback(
            get_context(request), session.principal, action_id, comment.strip() or None
        )
    except Conflict as exc:
        return await flash_and_back(request, f"Not rolled back: {exc.detail}", "/actions")
    return await flash_and_back(request, f"Rolled back: {outcome.detail}", "/actions")


@router.get("/audit")
async def audit_page(
    request: Request,
    session: SessionDep,
    subject: Annotated[str, Query(max_length=256)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    ctx = get_context(request)
    events = await ctx.components.audit.list(
        subject=subject or None,
        action_prefix=action or None,
        limit=PAGE,
        offset=offset,
        newest_first=True,
    )
    chain = await ctx.chain.status()
    return await render(
        request,
        session,
        "audit.html",
        events=[audit_json(e) for e in events],
        verify=chain.result,
        full_age_minutes=int(chain.full_age_seconds // 60),
        subject=subject,
        action=action,
        offset=offset,
        page=PAGE,
    )


# -- controls ---------------------------------------------------------------------------


async def _controls(request: Request, session: Session, ctx: ApiContext) -> HTMLResponse:
    return await render(
        request,
        session,
        "controls.html",
        autonomy=await operations.autonomy_state(ctx),
        levels=list(AutonomyLevel),
        on_role=ctx.config.kill_switch_on_role,
        off_role=ctx.config.kill_switch_off_role,
    )


@router.get("/controls")
async def controls_page(request: Request, session: SessionDep) -> HTMLResponse:
    return await _controls(request, session, get_context(request))


@router.post("/kill-switch")
async def kill_switch(
    request: Request,
    session: SessionDep,
    state: Annotated[str, Form(pattern="^(on|off)$")],
    csrf: Csrf = "",
) -> RedirectResponse:
    check_csrf(session, csrf)
    result = await operations.set_kill_switch(
        get_context(request), session.principal, state == "on"
    )
    shown = "ON: nothing executes automatically" if result["active"] else "off"
    return await flash_and_back(request, f"Kill switch is {shown}", "/controls")


@router.post("/agent/autonomy")
async def autonomy(
    request: Request,
    session: SessionDep,
    level: Annotated[str, Form(pattern="^(configured|[1-5])$")],
    csrf: Csrf = "",
    reason: Comment = "",
) -> RedirectResponse:
    check_csrf(session, csrf)
    chosen = None if level == "configured" else AutonomyLevel(int(level))
    state = await operations.set_autonomy(
        get_context(request), session.principal, chosen, reason.strip() or None
    )
    return await flash_and_back(
        request,
        f"Effective autonomy is now {state['effective']} {state['effective_name']}",
        "/controls",
    )
