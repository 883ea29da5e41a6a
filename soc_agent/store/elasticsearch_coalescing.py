"""An Elasticsearch client that sends the `_bulk`s and `_mget`s issued together as one.

A worker decides several alerts at once, and the store, the audit chain and
the leases share one client: several of them often ask for a `_bulk` (or an
`_mget`) in the same turn of the event loop. `CoalescingElasticsearch` holds
each such call until that turn ends and sends all of them as one request,
then hands each caller the items of its own operations, in its own order, as
if it had sent them alone. A call alone in its turn goes out unchanged.

Nothing about a caller's result changes:

- `_bulk` items are independent (each succeeds or fails alone) and come back
  in request order; each caller's `errors` is computed from its own items.
- `_mget` is real-time by default and reads each document alone (a document
  of an absent index is reported as a per-document error, in either form of
  the call); each caller's `docs` are its own.
- A merged request that fails as a whole is sent again per caller, so one
  caller's bad request cannot fail another's.

A caller cancelled while its request is in flight stops waiting; the request
goes on for the others (callers that must know what a cancelled write did
shield it, as the leases do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from elastic_transport import ObjectApiResponse
from elasticsearch import ApiError, AsyncElasticsearch

__all__ = ["CoalescingElasticsearch"]

_ACTIONS = ("index", "create", "update", "delete")
_MGET_OPTIONS = frozenset({"index", "ids", "docs", "source"})


class _Call:
    """One caller's part of a merged request."""

    __slots__ = ("args", "done", "parts", "size")

    def __init__(self, parts: list[Any], size: int, args: dict[str, Any]) -> None:
        self.parts = parts  # bulk: operation lines; mget: docs
        self.size = size  # the items of the answer that are this call's
        self.args = args  # what the caller passed, to send it alone
        self.done: asyncio.Future[ObjectApiResponse[Any]] = (
            asyncio.get_running_loop().create_future()
        )


class _Batch:
    """Calls of one kind waiting for the end of the loop's turn."""

    def __init__(self, send: Callable[[list[_Call]], Any]) -> None:
        self._send = send
        self.calls: list[_Call] = []

    def add(self, call: _Call) -> None:
        if not self.calls:
            asyncio.get_running_loop().call_soon(self._flush)
        self.calls.append(call)

    def _flush(self) -> None:
        calls, self.calls = self.calls, []
        task = asyncio.ensure_future(self._run(calls))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _run(self, calls: list[_Call]) -> None:
        try:
            await self._send(calls)
        except BaseException as exc:  # no caller may wait for ever
            _fail(calls, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            raise


_RUNNING: set[asyncio.Future[Any]] = set()  # flushes in flight, kept from the collector


class CoalescingElasticsearch(AsyncElasticsearch):
    """`AsyncElasticsearch` whose `bulk` and `mget` calls of one loop turn share a request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bulks = _Batch(self._send_bulks)
        self._mgets = _Batch(self._send_mgets)
        self.coalesced = 0  # requests saved

    async def bulk(self, *, operations: Sequence[Any] | None = None, **kwargs: Any) -> Any:
        lines = list(operations or ())
        actions = None if kwargs or not lines else _actions(lines)
        if actions is None:
            return await super().bulk(operations=operations, **kwargs)
        call = _Call(lines, actions, {"operations": lines})
        self._bulks.add(call)
        return await asyncio.shield(call.done)

    async def mget(self, **kwargs: Any) -> Any:
        docs = _docs(kwargs) if set(kwargs) <= _MGET_OPTIONS else []
        if not docs:
            return await super().mget(**kwargs)
        call = _Call(docs, len(docs), kwargs)
        self._mgets.add(call)
        return await asyncio.shield(call.done)

    async def _send_bulks(self, calls: list[_Call]) -> None:
        lines = [line for call in calls for line in call.parts]
        await self._send(calls, super().bulk, {"operations": lines}, "items")

    async def _send_mgets(self, calls: list[_Call]) -> None:
        docs = [doc for call in calls for doc in call.parts]
        await self._send(calls, super().mget, {"docs": docs}, "docs")

    async def _send(
        self,
        calls: list[_Call],
        send: Callable[..., Awaitable[Any]],
        merged: dict[str, Any],
        key: str,
    ) -> None:
        """One request for every call (each alone if the node refuses it as a whole),
        each caller answered with its slice of the answer's `key` list."""
        if len(calls) == 1:
            await _settle(calls[0], send(**calls[0].args))
            return
        try:
            resp = await send(**merged)
        except ApiError:
            await asyncio.gather(*(_settle(c, send(**c.args)) for c in calls))
            return
        except Exception as exc:
            _fail(calls, exc)
            return
        self.coalesced += len(calls) - 1
        items = list(resp[key])
        start = 0
        for call in calls:
            mine = items[start : start + call.size]
            start += call.size
            body: dict[str, Any] = {key: mine}
            if key == "items":  # a bulk's answer says whether any of its items failed
                body["took"] = resp["took"]
                body["errors"] = any("error" in next(iter(i.values())) for i in mine)
            _answer(call, ObjectApiResponse(body=body, meta=resp.meta))


def _docs(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The documents an `mget` call asks for, each naming its index."""
    if "docs" in kwargs:
        if "index" in kwargs or "ids" in kwargs or "source" in kwargs:
            return []  # a mixed form: sent as it is
        return [dict(doc) for doc in kwargs["docs"]]
    index, ids = kwargs.get("index"), kwargs.get("ids")
    if not isinstance(index, str) or not ids:
        return []
    extra = {"_source": kwargs["source"]} if "source" in kwargs else {}
    return [{"_index": index, "_id": doc_id, **extra} for doc_id in ids]


def _actions(lines: list[Any]) -> int | None:
    """How many actions (items of the answer) `_bulk` lines hold: every action but a
    delete is followed by its source line. None when they are not that shape (sent
    alone, for the node to judge)."""
    count, i = 0, 0
    while i < len(lines):
        line = lines[i]
        action = next(iter(line), None) if isinstance(line, Mapping) and len(line) == 1 else None
        if action not in _ACTIONS or (action != "delete" and i + 1 >= len(lines)):
            return None
        count += 1
        i += 1 if action == "delete" else 2
    return count


async def _settle(call: _Call, request: Any) -> None:
    try:
        _answer(call, await request)
    except Exception as exc:
        _fail([call], exc)


def _answer(call: _Call, resp: ObjectApiResponse[Any]) -> None:
    if not call.done.done():
        call.done.set_result(resp)


def _fail(calls: list[_Call], exc: Exception) -> None:
    for call in calls:
        if not call.done.done():
            call.done.set_exception(exc)
            call.done.exception()  # a caller that was cancelled never retrieves it
