"""The audit hash chain: canonical form, entry hashes, sealing and verification.

Entry `n` stores `prev_hash` (the hash of entry `n-1`, or `GENESIS` for the
first) and `hash`, computed over its canonical form (which includes `seq` and
`prev_hash`). Changing, deleting, inserting or reordering entries therefore
breaks the chain at the first affected entry. Truncating the tail cannot be
seen from the chain alone; pass an anchor (`expected_count`, `expected_head`)
recorded elsewhere to catch it. With an HMAC key, someone who can write the
database but does not hold the key cannot rebuild a consistent chain.

A chain is keyed from its first `audit.keyed` entry on (see `keying`): entries
before it may be plain SHA-256 (a chain begun before keys were the default),
entries from it on must carry the key's HMAC. Verifying without the key stops
at the marker, loudly; verifying with the key rejects plain entries that no
marker follows, since anyone could have written them.

Pure: no I/O. Storage backends (SQLite here, Elasticsearch later) share it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from soc_agent.models import AuditEvent

__all__ = [
    "GENESIS",
    "KEYED_ACTION",
    "VerifyResult",
    "canonical",
    "canonical_details",
    "compute_hash",
    "format_at",
    "key_id",
    "seal",
    "verify_events",
]

GENESIS = "0" * 64
KEYED_ACTION = "audit.keyed"
"""The entry from which a chain is HMAC-sealed (see `keying`)."""


def key_id(key: bytes) -> str:
    """A short public name for a key: lets a verifier say "wrong key" without revealing it."""
    return hashlib.sha256(b"soc-agent audit key id\x00" + key).hexdigest()[:16]


def format_at(at: datetime) -> str:
    """The event time as hashed and stored: UTC, microseconds, `Z` suffix.

    A naive datetime is taken to be UTC.
    """
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_details(event: AuditEvent) -> dict[str, Any]:
    """`details` as JSON sees it (datetimes as ISO strings, tuples as lists, ...)."""
    dumped: dict[str, Any] = event.model_dump(mode="json", include={"details"})["details"]
    return dumped


def canonical(event: AuditEvent) -> bytes:
    """Canonical JSON of the hashed fields: sorted keys, no whitespace, UTF-8.

    `details` are taken in pydantic's JSON form (so NaN and infinity become
    null, as they would be stored). Raises ValueError if `details` holds
    something JSON cannot represent.
    """
    details = canonical_details(event)
    return _canonical(event, event.seq, event.at, details, event.prev_hash, event.chain)


def _canonical(
    event: AuditEvent,
    seq: int | None,
    at: datetime,
    details: Any,
    prev_hash: str | None,
    chain: str | None,
) -> bytes:
    """`canonical` of the event with these fields in place of its own."""
    doc: dict[str, Any] = {
        "seq": seq,
        "at": format_at(at),
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "reason": event.reason,
        "outcome": event.outcome,
        "evidence_ref": event.evidence_ref,
        "details": details,
        "prev_hash": prev_hash,
    }
    if chain is not None:  # an entry cannot be moved to another chain unseen
        doc["chain"] = chain
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def compute_hash(event: AuditEvent, *, key: bytes | None = None) -> str:
    """SHA-256 hex of the canonical form, or HMAC-SHA256 with `key`."""
    return _digest(canonical(event), key)


def _digest(data: bytes, key: bytes | None) -> str:
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def seal(
    event: AuditEvent,
    *,
    seq: int,
    prev_hash: str,
    key: bytes | None = None,
    chain: str | None = None,
) -> AuditEvent:
    """The event as entry `seq` of `chain` after `prev_hash`: time in UTC, details as JSON,
    hash set (a `chain` the caller set on the event is replaced by the log's)."""
    aware = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=UTC)
    at = aware.astimezone(UTC)
    details = canonical_details(event)  # once: the hash and the entry take the same form
    digest = _digest(_canonical(event, seq, at, details, prev_hash, chain), key)
    return event.model_copy(
        update={
            "seq": seq,
            "chain": chain,
            "prev_hash": prev_hash,
            "hash": digest,
            "at": at,
            "details": details,
        }
    )


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verification.

    `count` and `head` describe the verified prefix: on success the whole
    chain (`head` is the last entry's hash, `GENESIS` when empty); on failure
    the entries before `first_bad_seq`. `problem` is a sentence for humans.
    """

    ok: bool
    count: int
    head: str
    first_bad_seq: int | None
    problem: str | None
    keyed: bool = False
    """Whether the last verified entry was checked with the key (False for an empty chain)."""
    parts: tuple[tuple[str, VerifyResult], ...] = ()
    """For a log of several chains, each chain's own result (`""`: the shared chain)."""

    def summary(self) -> dict[str, Any]:
        """The result as the CLI's `--json` and the API show it."""
        return {
            "ok": self.ok,
            "count": self.count,
            "head": self.head,
            "keyed": self.keyed,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            # Elasticsearch: the shared chain ("") and each worker's own, each verified alone.
            "chains": {
                name: {"count": r.count, "head": r.head, "keyed": r.keyed} for name, r in self.parts
            },
        }


def verify_events(
    events: Iterable[AuditEvent],
    *,
    key: bytes | None = None,
    expected_head: str | None = None,
    expected_count: int | None = None,
    anchors: Mapping[int, str] | None = None,
    since: VerifyResult | None = None,
) -> VerifyResult:
    """Check a chain given in storage order; stop at the first bad entry.

    `since` is an earlier successful verification: `events` then starts at the
    entry after it, and only what was appended since is checked (entries it
    covered are not re-read: a full verification is still needed, now and then,
    to catch an old entry rewritten in place).

    The anchor is a checkpoint taken earlier: `expected_count` is how many
    entries the chain had then and `expected_head` the hash of its last entry
    (entry `expected_count`). The chain may have grown since; it must still
    contain the checkpoint unchanged. With only `expected_head`, some entry
    must carry that hash. `anchors` are more checkpoints (`seq` to hash), e.g.
    heads published over time: each must be in the chain unchanged.
    """
    if expected_count is not None and expected_count < 0:
        raise ValueError("expected_count must be >= 0")
    if since is not None and not since.ok:
        raise ValueError("an incremental verification starts from a successful one")
    pending = dict(anchors or {})
    if expected_count is not None and expected_head is not None:
        pending[expected_count] = expected_head
    count, head = (since.count, since.head) if since is not None else (0, GENESIS)
    anchor_seen = expected_head is None or (expected_head == GENESIS and not expected_count)
    last_keyed = since is not None and since.keyed
    sealed_seen = last_keyed
    unsealed_from: int | None = None  # first plain entry (with a key) that no marker covers yet

    def fail(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, count, head, seq, problem, last_keyed)

    for event in events:
        want = count + 1
        seq = event.seq
        if seq is None:
            return fail(want, f"entry {want} has no sequence number")
        if seq != want:
            if seq > want:
                span = "" if seq == want + 1 else f" (through entry {seq - 1})"
                return fail(
                    want,
                    f"entry {want} is missing{span}: the chain goes from entry {count} to "
                    f"entry {seq} (entries deleted or reordered)",
                )
            return fail(
                want,
                f"entry {want} expected but entry {seq} found: entries are out of order "
                "or repeated",
            )
        if event.hash is None or event.prev_hash is None:
            return fail(seq, f"entry {seq} lacks its prev_hash or hash")
        # Link first: an inserted or moved entry may hash correctly on its own.
        if event.prev_hash != head:
            before = f"entry {count}" if count else "the genesis value"
            return fail(
                seq,
                f"entry {seq} does not link to {before}: an entry was inserted, deleted, "
                "reordered or rewritten before it, or its prev_hash was altered",
            )
        if event.action == KEYED_ACTION:
            named = event.details.get("key_id")
            if key is None:
                return fail(
                    seq,
                    f"the chain is keyed from entry {seq} (key id {named}): it cannot be "
                    "verified without the audit key (audit_key, or the key file beside "
                    "the store)",
                )
            if named != key_id(key):
                return fail(
                    seq,
                    f"entry {seq} keys the chain with key id {named}, but the key given has "
                    f"id {key_id(key)}: wrong key",
                )
            sealed_seen, unsealed_from = True, None
        try:
            keyed = key is not None and hmac.compare_digest(
                compute_hash(event, key=key), event.hash
            )
            plain = not keyed and hmac.compare_digest(compute_hash(event), event.hash)
        except ValueError as exc:
            return fail(seq, f"entry {seq} cannot be canonicalised: {exc}")
        # Once an entry is sealed with the key, a plain one after it is a forgery.
        if not keyed and (sealed_seen or not plain):
            return fail(
                seq,
                f"entry {seq} was modified: its stored hash does not match its content "
                "(or the chain is being verified with the wrong key, or without its key)",
            )
        if plain and key is not None and unsealed_from is None:
            unsealed_from = seq
        last_keyed = keyed
        sealed_seen = sealed_seen or keyed
        count, head = seq, event.hash
        if count in pending and pending.pop(count) != head:
            return fail(
                seq,
                f"entry {seq} is an anchored head but its hash {head[:16]}... differs "
                "from the anchor: the chain was rewritten",
            )
        at_anchor = count == expected_count if expected_count is not None else head == expected_head
        anchor_seen = anchor_seen or at_anchor

    if unsealed_from is not None:
        return VerifyResult(
            False,
            count,
            head,
            unsealed_from,
            f"entries {unsealed_from} to {count} are not sealed with the audit key and no "
            "keyed entry follows them: they were written or rebuilt without the key",
            False,
        )
    if expected_count is not None and count < expected_count:
        pending.setdefault(expected_count, "")
    if pending:
        missing = max(pending)
        return VerifyResult(
            False,
            count,
            head,
            count + 1,
            f"the chain ends at entry {count} but an anchor records {missing} "
            "entries: "
            f"entry {count + 1} onwards was removed (tail truncated)",
            last_keyed,
        )
    if not anchor_seen:
        return VerifyResult(
            False,
            count,
            head,
            None,
            f"no entry has the anchored head hash {expected_head}: "
            "the chain was truncated or rewritten",
            last_keyed,
        )
    return VerifyResult(True, count, head, None, None, last_keyed)
