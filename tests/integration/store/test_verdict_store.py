"""Analyst verdicts on both stores: the latest closing counts, history by rule and entity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from soc_agent.models import ActionJudgement, ActionLabel, Approver, IncidentVerdict, Role, Verdict
from soc_agent.store import SQLiteStore
from soc_agent.store.elasticsearch import ElasticsearchStore

AnyStore = SQLiteStore | ElasticsearchStore
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ALICE = Approver.of("token", "alice", Role.ANALYST)
BUILD_RULE = "elastic:encoded-powershell"
BUILD_HOST = "host:build-01"


def verdict(
    n: int,
    kind: Verdict,
    *,
    incident: str | None = None,
    days_ago: float = 1,
    rules: tuple[str, ...] = (BUILD_RULE,),
    entities: tuple[str, ...] = (BUILD_HOST, "host:build-01.acme.example"),
) -> IncidentVerdict:
    return IncidentVerdict(
        id=f"verdict-{n:04d}",
        incident_id=incident or f"inc-{n:04d}",
        verdict=kind,
        reason="nightly build script",
        closed_by=ALICE,
        closed_at=T0 - timedelta(days=days_ago),
        rules=list(rules),
        entities=list(entities),
        alert_ids=[f"elastic:{n}"],
    )


async def test_a_verdict_round_trips_and_the_latest_closing_is_the_incidents(
    store: AnyStore,
) -> None:
    first = verdict(1, Verdict.FALSE_POSITIVE, incident="inc-a", days_ago=3)
    second = verdict(2, Verdict.TRUE_POSITIVE, incident="inc-a", days_ago=2)
    assert await store.save_verdict(first) is True
    assert await store.save_verdict(second) is True
    # A repeated write changes nothing and says so: a redelivered closing is not new.
    assert await store.save_verdict(first) is False
    assert await store.incident_verdict("inc-a") == second
    assert await store.get_verdict(first.id) == first  # superseded, still kept
    assert await store.get_verdict("verdict-none") is None
    assert await store.incident_verdict("inc-none") is None


async def test_history_counts_the_latest_verdict_per_incident_by_rule_entity_and_window(
    store: AnyStore,
) -> None:
    for n in range(6):
        await store.save_verdict(verdict(n, Verdict.FALSE_POSITIVE, days_ago=1 + n))
    await store.save_verdict(verdict(10, Verdict.TRUE_POSITIVE, days_ago=2))
    # Re-closed: incident 0's false positive became a true positive.
    await store.save_verdict(verdict(11, Verdict.TRUE_POSITIVE, incident="inc-0000", days_ago=0.5))
    await store.save_verdict(verdict(20, Verdict.FALSE_POSITIVE, days_ago=40))  # too old
    await store.save_verdict(
        verdict(21, Verdict.FALSE_POSITIVE, days_ago=3, rules=("elastic:other",))
    )
    await store.save_verdict(
        verdict(22, Verdict.FALSE_POSITIVE, days_ago=3, entities=("host:ws-9",))
    )

    found = await store.verdict_history(
        rule=BUILD_RULE, entity=BUILD_HOST, since=T0 - timedelta(days=30)
    )
    by_incident = {v.incident_id: v.verdict for v in found}
    assert by_incident == {
        "inc-0000": Verdict.TRUE_POSITIVE,
        **{f"inc-{n:04d}": Verdict.FALSE_POSITIVE for n in range(1, 6)},
        "inc-0010": Verdict.TRUE_POSITIVE,
    }
    # Any name of the entity finds it; the entity alone spans every rule.
    by_fqdn = await store.verdict_history(
        rule=None, entity="host:build-01.acme.example", since=T0 - timedelta(days=30)
    )
    assert {v.incident_id for v in by_fqdn} == set(by_incident) | {"inc-0021"}
    newest = await store.verdict_history(rule=None, entity=BUILD_HOST, since=T0 - timedelta(days=1))
    assert [v.id for v in newest] == ["verdict-0011"]


async def test_verdicts_are_listed_newest_first(store: AnyStore) -> None:
    for n in range(3):
        await store.save_verdict(verdict(n, Verdict.BENIGN_TRUE_POSITIVE, days_ago=n))
    listed = await store.list_verdicts(limit=2)
    assert [v.id for v in listed] == ["verdict-0000", "verdict-0001"]


async def test_of_two_closings_in_one_instant_the_one_written_last_counts(
    store: AnyStore,
) -> None:
    first = verdict(1, Verdict.FALSE_POSITIVE, incident="inc-a", days_ago=1)
    second = verdict(2, Verdict.TRUE_POSITIVE, incident="inc-a", days_ago=1)
    await store.save_verdict(second.model_copy(update={"id": "verdict-zzzz"}))
    await store.save_verdict(first.model_copy(update={"id": "verdict-aaaa"}))
    latest = await store.incident_verdict("inc-a")
    assert latest is not None and latest.id == "verdict-aaaa"
    history = await store.verdict_history(
        rule=BUILD_RULE, entity=None, since=T0 - timedelta(days=2)
    )
    assert [v.id for v in history] == ["verdict-aaaa"]


async def test_one_query_finds_the_verdicts_naming_any_of_an_incidents_entities(
    store: AnyStore,
) -> None:
    await store.save_verdict(verdict(1, Verdict.FALSE_POSITIVE, entities=("host:a",)))
    await store.save_verdict(verdict(2, Verdict.TRUE_POSITIVE, entities=("user:b", "host:z")))
    await store.save_verdict(verdict(3, Verdict.FALSE_POSITIVE, entities=("host:c",)))
    await store.save_verdict(verdict(4, Verdict.FALSE_POSITIVE, days_ago=60, entities=("host:a",)))
    found = await store.verdicts_naming(["host:a", "user:b"], T0 - timedelta(days=30))
    assert sorted(v.id for v in found) == ["verdict-0001", "verdict-0002"]
    assert await store.verdicts_naming([], T0 - timedelta(days=30)) == []


def label(n: int, judgement: ActionJudgement, *, incident: str, minutes: int) -> ActionLabel:
    return ActionLabel.of(
        incident_id=incident,
        action_id=f"act-{n}",
        action="block_ip",
        target=f"ip:203.0.113.{n}",
        judgement=judgement,
        analyst="token:alice",
        comment="a CDN address" if judgement is ActionJudgement.REJECTED else None,
        at=T0 + timedelta(minutes=minutes),
    )


async def test_action_labels_are_kept_per_incident_and_listed_newest_first(
    store: AnyStore,
) -> None:
    approved = label(1, ActionJudgement.APPROVED, incident="inc-a", minutes=1)
    undone = label(1, ActionJudgement.ROLLED_BACK, incident="inc-a", minutes=5)
    rejected = label(2, ActionJudgement.REJECTED, incident="inc-b", minutes=3)
    for one in (undone, approved, rejected):
        assert await store.save_action_label(one) is True
    assert await store.save_action_label(approved) is False  # the same act, recorded again
    assert await store.action_labels("inc-a") == [approved, undone]  # in the order they were made
    assert await store.action_labels("inc-none") == []
    assert await store.list_action_labels(limit=2) == [undone, rejected]
    assert await store.list_action_labels(limit=2, offset=2) == [approved]


async def test_a_saved_verdict_is_searchable_at_once_without_a_refresh_per_search(
    slow_es_store: ElasticsearchStore,
) -> None:
    # Searches of verdicts (one per decision reading history) refresh nothing: the write
    # does, so a 30 s refresh interval must not hide a verdict closed a moment ago.
    slow = slow_es_store
    closed = verdict(1, Verdict.FALSE_POSITIVE, incident="inc-a")
    await slow.save_verdict(closed)
    assert await slow.verdicts_naming([BUILD_HOST], T0 - timedelta(days=30)) == [closed]
    assert await slow.incident_verdict("inc-a") == closed
