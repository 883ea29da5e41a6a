"""Everything a request handler needs, created once per server in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import httpx
from starlette.requests import HTTPConnection

from soc_agent.api.credentials import SessionStore, TokenStore
from soc_agent.api.login_guard import LoginGuard
from soc_agent.api.oidc import OidcVerifier
from soc_agent.api.verdicts import VerdictPublisher
from soc_agent.audit.monitor import ChainMonitor
from soc_agent.runtime.components import Components
from soc_agent.settings.api import ApiConfig

__all__ = ["ApiContext", "get_context"]


@dataclass
class ApiContext:
    components: Components
    tokens: TokenStore
    sessions: SessionStore
    oidc: OidcVerifier | None
    http: httpx.AsyncClient
    chain: ChainMonitor
    verdicts: VerdictPublisher | None = None
    login_guard: LoginGuard | None = None

    @property
    def config(self) -> ApiConfig:
        return self.components.settings.api

    def now(self) -> datetime:
        return self.components.clock()


def get_context(conn: HTTPConnection) -> ApiContext:
    ctx: ApiContext = conn.app.state.ctx
    return ctx
