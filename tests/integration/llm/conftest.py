"""A real small language model for these tests (`tests.infra.llm`), shared by the session.

Mark modules `real_model` and `needs("llm")`: without xllamacpp they skip with one
line saying what to install; with `CI=true` they fail instead.
"""

from __future__ import annotations

from tests.infra.fixtures import llm_server

__all__ = ["llm_server"]
