"""The ASGI application: JSON API under /api/v1, the web UI, OpenAPI at /openapi.json.

`create_app(settings)` opens every long-lived component in the lifespan (the
same wiring as `soc-agent run`), so the API reads and writes the same store.
A background task expires overdue proposals: an expired containment is
escalated, never executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from soc_agent.api import routes_control, routes_proposals, routes_records, web
from soc_agent.api.context import ApiContext
from soc_agent.api.credentials import open_session_store, open_token_store
from soc_agent.api.errors import ApiError
from soc_agent.api.login_guard import LoginGuard
from soc_agent.api.oidc import OidcVerifier
from soc_agent.api.security import SecurityHeaders
from soc_agent.api.verdicts import VerdictPublisher
from soc_agent.audit.monitor import ChainMonitor
from soc_agent.errors import SocAgentError
from soc_agent.pipeline.proposals import ProposalService
from soc_agent.runtime.components import open_components
from soc_agent.settings import Settings

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("soc-agent")
    except PackageNotFoundError:
        return "0"


async def _expire_overdue(proposals: ProposalService, interval: float) -> None:
    """Expire overdue proposals and resume approved ones a crash cut off, every interval."""
    while True:
        try:
            expired = await proposals.expire_due()
            resumed = await proposals.resume_approved()
            if expired or resumed:
                log.info("expired %d, resumed %d proposal(s)", len(expired), len(resumed))
        except SocAgentError as exc:
            log.warning("proposal maintenance failed: %s", exc)
        await asyncio.sleep(interval)


def create_app(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_components(settings, clock=clock) as components,
            # Credentials live on the same backend as the state, so with Elasticsearch
            # every replica sees every token, revocation and session at once.
            open_token_store(components.backend) as tokens,
            open_session_store(components.backend) as sessions,
            httpx.AsyncClient(follow_redirects=False) as http,
        ):
            oidc = OidcVerifier(settings.api.oidc, http) if settings.api.oidc else None
            verdicts = VerdictPublisher(settings.kafka) if settings.api.publish_approvals else None
            if verdicts is not None:
                await verdicts.start()
            guard = LoginGuard(
                max_failures=settings.api.login_max_failures,
                window=timedelta(seconds=settings.api.login_window_seconds),
                clock=components.clock,
            )
            chain = ChainMonitor(
                components.audit, full_every_seconds=settings.api.audit_full_verify_seconds
            )
            app.state.ctx = ApiContext(
                components, tokens, sessions, oidc, http, chain, verdicts, guard
            )
            sweeper = asyncio.create_task(
                _expire_overdue(components.proposals, settings.api.expiry_sweep_seconds)
            )
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                if verdicts is not None:
                    await verdicts.stop()

    app = FastAPI(
        title="soc-agent analyst API",
        version=_version(),
        description="Review proposed containments, inspect evidence, operate the agent. "
        "Authenticate with `Authorization: Bearer <API token or OIDC access token>`.",
        openapi_url="/openapi.json",
        docs_url=None,  # the interactive docs load scripts from a CDN; the CSP forbids it
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if request.url.path.startswith("/api/"):
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)
        return await web.render_error(request, exc)

    @app.exception_handler(web.LoginRequired)
    async def login_required(request: Request, exc: web.LoginRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return await web.render_error(request, _NOT_LOGGED_IN)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """Ready when the store and the audit chain answer (Kubernetes readiness probe).

        It needs no login, so it says nothing of what the agent holds."""
        ctx: ApiContext = request.app.state.ctx
        try:
            await ctx.components.store.get_flag("kill_switch")
            await ctx.components.audit.head()
        except SocAgentError as exc:
            log.warning("not ready: %s", exc)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    app.include_router(routes_proposals.router)
    app.include_router(routes_records.router)
    app.include_router(routes_control.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app


class _NotLoggedIn(ApiError):
    status = 401


_NOT_LOGGED_IN = _NotLoggedIn("you are not logged in (or your session ended); log in again")


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the API and UI until interrupted (uvicorn; X-Forwarded-Proto honoured from
    loopback proxies so cookies get the Secure flag behind a TLS-terminating proxy)."""
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        server_header=False,
        access_log=False,
    )
