"""Rendering for the web UI: templates and their filters, the session dependency, CSRF
checks and flash messages. Every page shows who is logged in and the kill switch.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from soc_agent.api import operations
from soc_agent.api.auth import SESSION_COOKIE
from soc_agent.api.auth import authenticate_session as _session_of
from soc_agent.api.context import get_context
from soc_agent.api.credentials import Session
from soc_agent.api.errors import ApiError, Forbidden
from soc_agent.text_controls import replace_controls

__all__ = [
    "Comment",
    "Csrf",
    "LoginRequired",
    "SessionDep",
    "check_csrf",
    "cookie_secure",
    "flash_and_back",
    "render",
    "render_error",
    "require_session",
    "templates",
]

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _shown(value: Any) -> Any:
    """Every value a template prints: control and bidi characters become visible `[U+XXXX]`
    (plain text, so it is as safe in an attribute as in an element)."""
    if value is None or isinstance(value, int | float):
        return value
    # Anything else prints as str(value), whose text an alert may choose (an exception's
    # message, an enum's value): it is shown through the same replacement.
    html = hasattr(value, "__html__")
    text = str(value.__html__() if html else value)
    marked = replace_controls(text, lambda ch: f"[U+{ord(ch):04X}]")
    # Already-safe HTML stays safe: only text characters were replaced, by plain text.
    return Markup(marked) if html else marked  # noqa: S704


templates.env.finalize = _shown


def _ts(value: str | datetime | None) -> str:
    """A UTC timestamp as analysts read it: 2026-11-20 09:00:00Z."""
    if value is None or value == "":
        return ""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "\n…"


def _pager(params: Any, offset: int) -> str:
    query = {k: v for k, v in dict(params).items() if k != "offset"}
    return urlencode({**query, "offset": max(0, offset)})


_MAX_SHOWN = 4000
templates.env.filters.update(ts=_ts, pretty=_pretty, pager=_pager)


class LoginRequired(Exception):
    """Raised by `_session` for a request without a live session: the app redirects."""


async def require_session(request: Request) -> Session:
    ctx = get_context(request)
    session = await _session_of(ctx, request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired
    return session


SessionDep = Annotated[Session, Depends(require_session)]
Csrf = Annotated[str, Form(max_length=200)]
Comment = Annotated[str, Form(max_length=2000)]


def check_csrf(session: Session, token: str) -> None:
    if not hmac.compare_digest(session.csrf.encode(), token.encode()):
        raise Forbidden("the form's CSRF token is missing or does not match your session")


def cookie_secure(request: Request) -> bool:
    configured = get_context(request).config.cookie_secure
    return configured if configured is not None else request.url.scheme == "https"


async def render(
    request: Request, session: Session | None, name: str, http_status: int = 200, **data: Any
) -> HTMLResponse:
    ctx = get_context(request)
    flash = None
    if session is not None and (cookie := request.cookies.get(SESSION_COOKIE)):
        flash = await ctx.sessions.pop_flash(cookie)
    context = {
        "me": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "kill_switch": await operations.kill_switch_state(ctx),
        "flash": flash,
        **data,
    }
    return templates.TemplateResponse(request, name, context, status_code=http_status)


async def render_error(request: Request, error: ApiError) -> HTMLResponse:
    """The web UI's answer to an ApiError: a page with the same status and message."""
    session = await _session_of(get_context(request), request.cookies.get(SESSION_COOKIE))
    return await render(request, session, "error.html", http_status=error.status, error=error)


async def flash_and_back(request: Request, message: str, to: str) -> RedirectResponse:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await get_context(request).sessions.set_flash(cookie, message)
    return RedirectResponse(to, status_code=303)
