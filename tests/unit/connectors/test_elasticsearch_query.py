"""The Elasticsearch SIEM connector's query DSL and answer mapping: exact bodies, no server.

Responses are in the format Elasticsearch documents for `_search`
(`hits.total {value, relation}`, `hits.hits[]._source`, `aggregations`
with `buckets`, `sum_other_doc_count`, `cardinality.value`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from soc_agent_connectors.elasticsearch_query import (
    ENTITY_FIELDS,
    CountByInput,
    SiemSearchOutput,
    build_count_by,
    build_search,
    entity_clause,
    error_summary,
    normalise_ip,
    parse_count_by,
    parse_search,
    time_range,
)
from soc_agent_connectors.elasticsearch_siem import ElasticsearchConfig, ElasticsearchSiem
from soc_agent_connectors.event_store_local import LocalEventStore, SearchInput, SearchOutput

from soc_agent.errors import ConfigError

AROUND = datetime(2026, 11, 19, 9, 30, tzinfo=UTC)
RANGE_9_30_PM_60 = {
    "range": {
        "@timestamp": {
            "gte": "2026-11-19T08:30:00.000Z",
            "lte": "2026-11-19T10:30:00.000Z",
            "format": "strict_date_optional_time",
        }
    }
}
SORT = [{"@timestamp": {"order": "desc", "unmapped_type": "date"}}]


def _search(**kw: Any) -> SearchInput:
    return SearchInput.model_validate({"around": AROUND, **kw})


def _ci(field: str, value: str) -> dict[str, Any]:
    return {"term": {field: {"value": value, "case_insensitive": True}}}


# --- the capability contract ---------------------------------------------------------------


def test_search_takes_the_offline_event_store_input_and_extends_its_output() -> None:
    ours = ElasticsearchSiem.capabilities()["search"]
    theirs = LocalEventStore.capabilities()["search"]
    assert ours.input_model is theirs.input_model is SearchInput
    assert issubclass(ours.output_model, SearchOutput)
    assert (ours.kind, ours.scopes) == (theirs.kind, theirs.scopes) == (theirs.kind, ("siem:read",))
    # every field playbooks read from event_store.search is there, with the same meaning
    assert set(SearchOutput.model_fields) <= set(ours.output_model.model_fields)
    assert ElasticsearchSiem.capabilities()["count_by"].scopes == ("siem:read",)
    assert set(ElasticsearchSiem.capabilities()) == {"search", "count_by"}


# --- entity clauses -----------------------------------------------------------------------

ENTITY_CASES = [
    ("host", "WS-FIN-014", [_ci("host.name", "WS-FIN-014"), _ci("host.hostname", "WS-FIN-014")]),
    (
        "user",
        " alice.nguyen ",
        [_ci("user.name", "alice.nguyen"), _ci("user.email", "alice.nguyen")],
    ),
    (
        "domain",
        "evil.example",
        [
            _ci("destination.domain", "evil.example"),
            _ci("dns.question.name", "evil.example"),
            _ci("url.domain", "evil.example"),
        ],
    ),
    (
        "url",
        "https://evil.example/a?b=1",
        [
            _ci("url.full", "https://evil.example/a?b=1"),
            _ci("url.original", "https://evil.example/a?b=1"),
        ],
    ),
    (
        "file_hash",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        [
            _ci(
                f"file.hash.{algo}",
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            )
            for algo in ("sha256", "sha1", "md5")
        ],
    ),
    (
        "email",
        "ceo@example.com",
        [
            _ci("user.email", "ceo@example.com"),
            _ci("email.from.address", "ceo@example.com"),
            _ci("email.to.address", "ceo@example.com"),
        ],
    ),
    (
        "process",
        "rundll32.exe",
        [_ci("process.name", "rundll32.exe"), _ci("process.executable", "rundll32.exe")],
    ),
    (
        "ip",
        "203.0.113.45",
        [{"term": {f: {"value": "203.0.113.45"}}} for f in ENTITY_FIELDS["ip"]],
    ),
    (
        "ip",
        "10.20.5.77/24",  # a CIDR with host bits: the network it names
        [{"term": {f: {"value": "10.20.5.0/24"}}} for f in ENTITY_FIELDS["ip"]],
    ),
    (
        "ip",
        "2001:DB8:0:0::1",
        [{"term": {f: {"value": "2001:db8::1"}}} for f in ENTITY_FIELDS["ip"]],
    ),
]


@pytest.mark.parametrize(("entity_type", "value", "should"), ENTITY_CASES)
def test_entity_clause_per_entity_type(
    entity_type: str, value: str, should: list[dict[str, Any]]
) -> None:
    clause = entity_clause(entity_type, value, ENTITY_FIELDS[entity_type])
    assert clause == {"bool": {"should": should, "minimum_should_match": 1}}


def test_entity_clause_can_be_case_sensitive_and_fields_overridden() -> None:
    clause = entity_clause("host", "dc01", ["observer.hostname"], case_insensitive=False)
    assert clause == {
        "bool": {
            "should": [{"term": {"observer.hostname": {"value": "dc01"}}}],
            "minimum_should_match": 1,
        }
    }


@pytest.mark.parametrize("bad", ["not-an-ip", "10.20.5.0/33", "10.20.5", "evil.example"])
def test_ip_values_must_be_addresses_or_networks(bad: str) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a CIDR"):
        normalise_ip(bad)


# --- time range and full bodies -------------------------------------------------------------


def test_time_range_is_inclusive_utc_and_accepts_offsets_and_naive_times() -> None:
    paris = timezone(timedelta(hours=1))
    assert time_range(datetime(2026, 11, 19, 9, 30, tzinfo=paris), AROUND) == {
        "range": {
            "@timestamp": {
                "gte": "2026-11-19T08:30:00.000Z",
                "lte": "2026-11-19T09:30:00.000Z",
                "format": "strict_date_optional_time",
            }
        }
    }
    naive = time_range(datetime(2026, 11, 19, 8, 30), datetime(2026, 11, 19, 10, 30))
    assert naive == RANGE_9_30_PM_60


def test_search_body_for_a_host_over_an_hour_either_side() -> None:
    body = build_search(
        _search(entity_type="host", value="srv-dc-01"),
        fields=ENTITY_FIELDS["host"],
        max_hits=500,
    )
    assert body == {
        "query": {
            "bool": {
                "filter": [
                    RANGE_9_30_PM_60,
                    {
                        "bool": {
                            "should": [
                                _ci("host.name", "srv-dc-01"),
                                _ci("host.hostname", "srv-dc-01"),
                            ],
                            "minimum_should_match": 1,
                        }
                    },
                ]
            }
        },
        "sort": SORT,
        "size": 20,
        "track_total_hits": True,
    }


def test_search_body_with_filters_aggregation_and_distinct() -> None:
    """The brute-force playbook's step: failed logons from an IP, by account."""
    body = build_search(
        _search(
            entity_type="ip",
            value="203.0.113.45",
            window_minutes=15,
            category="authentication",
            outcome="failure",
            aggregate_by="user.name",
            limit=5,
        ),
        fields=["source.ip"],
        max_hits=500,
        timestamp_field="event.created",
        track_total_hits=10_000,
    )
    assert body == {
        "query": {
            "bool": {
                "filter": [
                    {
                        "range": {
                            "event.created": {
                                "gte": "2026-11-19T09:15:00.000Z",
                                "lte": "2026-11-19T09:45:00.000Z",
                                "format": "strict_date_optional_time",
                            }
                        }
                    },
                    {
                        "bool": {
                            "should": [{"term": {"source.ip": {"value": "203.0.113.45"}}}],
                            "minimum_should_match": 1,
                        }
                    },
                    {"term": {"event.category": "authentication"}},
                    {"term": {"event.outcome": "failure"}},
                ]
            }
        },
        "sort": [{"event.created": {"order": "desc", "unmapped_type": "date"}}],
        "size": 5,
        "track_total_hits": 10_000,
        "aggs": {
            "by": {"terms": {"field": "user.name", "size": 50}},
            "distinct": {"cardinality": {"field": "user.name", "precision_threshold": 40_000}},
        },
    }


@pytest.mark.parametrize(("limit", "max_hits", "size"), [(20, 500, 20), (500, 100, 100), (0, 5, 0)])
def test_search_size_is_the_limit_bounded_by_max_hits(limit: int, max_hits: int, size: int) -> None:
    body = build_search(
        _search(entity_type="user", value="bob", limit=limit),
        fields=["user.name"],
        max_hits=max_hits,
    )
    assert body["size"] == size


@pytest.mark.parametrize("field", ['user.name" OR 1', "a b", "../x", "*"])
def test_aggregation_fields_must_be_field_names(field: str) -> None:
    with pytest.raises(ValueError, match="not a field name"):
        build_search(
            _search(entity_type="user", value="bob", aggregate_by=field),
            fields=["user.name"],
            max_hits=10,
        )
    with pytest.raises(ValidationError):
        CountByInput(by=field, around=AROUND)


def test_count_by_body_failed_logons_per_user_for_a_source_ip() -> None:
    args = CountByInput(
        by="user.name",
        entity_type="ip",
        value="198.51.100.0/24",
        start=datetime(2026, 11, 19, 0, 0, tzinfo=UTC),
        end=datetime(2026, 11, 19, 6, 0, tzinfo=UTC),
        category="authentication",
        outcome="failure",
        action="logon-failed",
        size=5,
        min_count=3,
    )
    assert build_count_by(args, fields=["source.ip"]) == {
        "query": {
            "bool": {
                "filter": [
                    {
                        "range": {
                            "@timestamp": {
                                "gte": "2026-11-19T00:00:00.000Z",
                                "lte": "2026-11-19T06:00:00.000Z",
                                "format": "strict_date_optional_time",
                            }
                        }
                    },
                    {
                        "bool": {
                            "should": [{"term": {"source.ip": {"value": "198.51.100.0/24"}}}],
                            "minimum_should_match": 1,
                        }
                    },
                    {"term": {"event.category": "authentication"}},
                    {"term": {"event.outcome": "failure"}},
                    {"term": {"event.action": "logon-failed"}},
                ]
            }
        },
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "by": {"terms": {"field": "user.name", "size": 5, "min_doc_count": 3}},
            "distinct": {"cardinality": {"field": "user.name", "precision_threshold": 40_000}},
        },
    }


def test_count_by_without_an_entity_around_a_time() -> None:
    body = build_count_by(CountByInput(by="host.name", around=AROUND))
    assert body["query"] == {"bool": {"filter": [RANGE_9_30_PM_60]}}
    assert body["aggs"]["by"] == {"terms": {"field": "host.name", "size": 10}}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "a time range is required"),
        ({"around": AROUND, "start": AROUND}, "either around"),
        ({"start": AROUND, "end": AROUND}, "start must be before end"),
        ({"start": AROUND, "end": AROUND + timedelta(days=61)}, "at most 60 days"),
        ({"around": AROUND, "entity_type": "ip"}, "entity_type and value go together"),
        ({"around": AROUND, "value": "x"}, "entity_type and value go together"),
    ],
)
def test_count_by_input_is_validated(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CountByInput.model_validate({"by": "user.name", **kw})


# --- mapping answers -------------------------------------------------------------------------

SEARCH_RESPONSE: dict[str, Any] = {
    "took": 3,
    "timed_out": False,
    "_shards": {"total": 2, "successful": 2, "skipped": 0, "failed": 0},
    "hits": {
        "total": {"value": 12, "relation": "eq"},
        "max_score": None,
        "hits": [
            {
                "_index": "logs-windows-2026.11.19",
                "_id": "evt-0042",
                "_score": None,
                "_source": {
                    "@timestamp": "2026-11-19T09:41:07.120Z",
                    "event": {"category": ["authentication"], "outcome": "failure"},
                    "user": {"name": "administrator"},
                    "source": {"ip": "203.0.113.45"},
                },
                "sort": [1795167667120],
            },
            {
                "_index": "logs-windows-2026.11.19",
                "_id": "evt-0040",
                "_score": None,
                "_source": {
                    "@timestamp": "2026-11-19T09:38:55.004Z",
                    "user": {"name": "svc_backup"},
                },
                "sort": [1795167535004],
            },
        ],
    },
    "aggregations": {
        "by": {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [
                {"key": "administrator", "doc_count": 9},
                {"key": "svc_backup", "doc_count": 3},
            ],
        },
        "distinct": {"value": 2},
    },
}


def test_search_answer_maps_to_the_event_store_output() -> None:
    out = parse_search(SEARCH_RESPONSE)
    assert out == SiemSearchOutput(
        total=12,
        events=[hit["_source"] for hit in SEARCH_RESPONSE["hits"]["hits"]],
        buckets={"administrator": 9, "svc_backup": 3},
        distinct=2,
    )
    assert out.total_relation == "eq"
    assert out.index_missing is False
    assert list(out.model_dump(mode="json")) == [
        "total",
        "events",
        "buckets",
        "distinct",
        "total_relation",
        "index_missing",
    ]


def test_a_capped_total_is_a_lower_bound_and_no_aggregations_means_empty() -> None:
    response = {
        "hits": {"total": {"value": 10000, "relation": "gte"}, "hits": []},
    }
    out = parse_search(response, index_missing=True)
    assert (out.total, out.total_relation, out.index_missing) == (10000, "gte", True)
    assert (out.events, out.buckets, out.distinct) == ([], {}, 0)
    # rest_total_hits_as_int answers carry a bare number
    assert parse_search({"hits": {"total": 7, "hits": []}}).total == 7


def test_count_by_answer_keeps_order_other_and_typed_keys() -> None:
    response = {
        "hits": {"total": {"value": 61, "relation": "eq"}, "hits": []},
        "aggregations": {
            "by": {
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": 14,
                "buckets": [
                    {"key": "10.20.5.60", "doc_count": 30},
                    {"key": 3389, "doc_count": 12},
                    {"key": 1, "key_as_string": "true", "doc_count": 5},
                ],
            },
            "distinct": {"value": 9},
        },
    }
    out = parse_count_by(response, "source.ip")
    assert out.model_dump() == {
        "by": "source.ip",
        "total": 61,
        "total_relation": "eq",
        "buckets": {"10.20.5.60": 30, "3389": 12, "true": 5},
        "other": 14,
        "distinct": 9,
        "index_missing": False,
    }
    assert list(out.buckets) == ["10.20.5.60", "3389", "true"]


def test_error_summary_prefers_the_root_cause() -> None:
    body = {
        "error": {
            "root_cause": [
                {
                    "type": "query_shard_exception",
                    "reason": "failed to create query: 'x' is not an IP string literal.",
                }
            ],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
        },
        "status": 400,
    }
    assert error_summary(body) == (
        "query_shard_exception: failed to create query: 'x' is not an IP string literal."
    )
    assert error_summary(
        {"error": {"type": "index_not_found_exception", "reason": "no such index [x]"}}
    ) == ("index_not_found_exception: no such index [x]")
    assert error_summary("<html>bad gateway</html>") == "no error details"


# --- configuration -----------------------------------------------------------------------------


def test_config_defaults_and_field_overrides() -> None:
    cfg = ElasticsearchConfig(hosts=["https://es.example:9200"], fields={"host": ["observer.name"]})
    assert cfg.index == "logs-*,ecs-*"
    assert cfg.fields_for("host") == ("observer.name",)
    assert cfg.fields_for("ip") == ENTITY_FIELDS["ip"]


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        ({"hosts": []}, "connectors.elasticsearch.hosts", "at least 1"),
        ({"hosts": ["es.example:9200"]}, "connectors.elasticsearch.hosts", "absolute http"),
        ({"hosts": ["https://u:p@es.example"]}, "connectors.elasticsearch.hosts", "credentials"),
        (
            {"hosts": ["http://es"], "api_key": "c2VjcmV0OmtleQ=="},
            "connectors.elasticsearch.api_key",
            "env:NAME",
        ),
        (
            {"hosts": ["http://es"], "index": "logs-*, ecs-*"},
            "connectors.elasticsearch.index",
            "comma-separated",
        ),
        ({"hosts": ["http://es"], "username": "soc"}, "connectors.elasticsearch", "go together"),
        (
            {"hosts": ["http://es"], "api_key": "env:K", "username": "u", "password": "env:P"},
            "connectors.elasticsearch",
            "not both",
        ),
        (
            {"hosts": ["http://es"], "max_hits": 100_000},
            "connectors.elasticsearch.max_hits",
            "10000",
        ),
        (
            {"hosts": ["http://es"], "fields": {"host": []}},
            "connectors.elasticsearch.fields",
            "non-empty",
        ),
        (
            {"hosts": ["http://es"], "ca_certs": "/nonexistent/ca.pem"},
            "connectors.elasticsearch.ca_certs",
            "no such file",
        ),
    ],
)
def test_invalid_configuration_names_the_key(raw: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        ElasticsearchSiem.from_settings(raw)
    assert info.value.key == key


def test_configuration_never_shows_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_API_KEY", "c2VjcmV0LWlkOnNlY3JldC1rZXk=")
    cfg = ElasticsearchConfig(hosts=["https://es.example:9200"], api_key="env:ES_API_KEY")
    dumped = cfg.model_dump_json()
    assert "env:ES_API_KEY" in dumped
    assert "c2VjcmV0" not in dumped + repr(cfg)
