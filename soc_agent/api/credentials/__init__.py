"""The API's credentials: tokens and web sessions, on either backend.

Laid out like `soc_agent.store`: a protocol module per kind (`tokens_base`,
`sessions_base`), its SQLite and Elasticsearch implementations beside it, and
`factory`, the one place that picks them from the settings. `commands` is what
`soc-agent tokens` calls.
"""

from soc_agent.api.credentials.commands import (
    create_token,
    list_tokens,
    revoke_token,
    token_records,
)
from soc_agent.api.credentials.factory import open_session_store, open_token_store
from soc_agent.api.credentials.sessions_base import Session, SessionStore
from soc_agent.api.credentials.tokens_base import TokenError, TokenRecord, TokenStore

__all__ = [
    "Session",
    "SessionStore",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "create_token",
    "list_tokens",
    "open_session_store",
    "open_token_store",
    "revoke_token",
    "token_records",
]
