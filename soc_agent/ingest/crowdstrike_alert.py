"""CrowdStrike Falcon Alerts API records (the successor of the retired Detects API).

One record is one item of `resources[]` in a `PostEntitiesAlertsV2`
(`POST /alerts/entities/alerts/v2`) or `GetCombinedAlertsV1` response: flat
snake_case fields (`composite_id`, `created_timestamp`, `severity`, ...) with a
`device` object, `parent_details`/`grandparent_details` and, by `product`, the
endpoint (`epp`), identity (`idp`: `source_account_*`, `target_account_*`,
`*_endpoint_*`), Next-Gen SIEM (`ngsiem`: `source_ips[]`, `host_names[]`,
`users[]`, ...) and mobile variants. The streaming API's PascalCase
`EPPDetectionSummaryEvent` is the `crowdstrike` format, not this one.
`expand()` splits a whole `{meta, resources, errors}` response into records.

Mapping choices:

- id: `composite_id` (globally unique and immutable, so a redelivered or
  re-polled alert gets the same id even after its status changed).
- created_at: `created_timestamp` (when Falcon raised the alert), else
  `timestamp`; `timestamp` (when the behaviour occurred) is kept as the
  `event_time` label. Both are ISO 8601 with up to nanoseconds.
- severity: `severity_name` when it is a known word, else the 1-100 `severity`
  score through `Severity.from_score` (Falcon names its own words on 20/40/60/80
  bands, so a bare score of 60-69 or 80-89 reads one step lower); neither (or
  a score outside 0-100, or an unknown word without a score) is MEDIUM with a
  `severity_raw` label, so an odd severity never hides an alert. `risk_score` is the 0-100 score.
- title: `display_name`, else `name` (the detection pattern name, also the rule
  name); rule id: `correlation_rule_id` (Next-Gen SIEM) else `pattern_id`.
- ATT&CK: only valid ids count (`technique_id`, `tactic_id`, `mitre_attack[]`);
  Falcon's own CST/CSTA ids ("Machine Learning", "Adware/PUP") stay labels.
- entities: the `device` is a host (no role) with its Falcon agent id as the
  `falcon_aid` alias and its `local_ip` as an IP; `user_name` is the actor, with
  `user_principal` as UPN, `logon_domain` (else the machine's domain) as domain
  and `user_id` as SID when it is one (anything else stays an attribute).
  The process, its parent and grandparent are processes; the process's own
  hashes are file hashes (the parents' hashes ride as attributes: `explorer.exe`
  would otherwise tie unrelated alerts). `ioc_type`/`ioc_value`, `ioc_context[]`
  and `network_accesses[]` add IOCs and IPs. Identity alerts add the source
  account (actor) and target account (target) with their sAMAccountName, UPN,
  SID and Entra object id, and the source (source) and target/domain-controller
  (destination) endpoints with their sensor ids and IPs. Next-Gen SIEM lists add
  hosts, IPs and users with source/destination roles; automated leads add the
  hosts of their `threatgraph_indicators[]`. `device.external_ip`
  (a shared NAT address) is a host attribute only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    EntitySet,
    as_list,
    looks_like_ip,
    opt_number,
    opt_str,
    parse_time,
    req_str,
    severity_from_word,
)
from soc_agent.ingest.crowdstrike import IOC_TYPES
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "expand", "matches", "normalize"]

FORMAT = "crowdstrike_alert"
_PRODUCTS = {
    "epp": "Falcon Endpoint Protection",
    "idp": "Falcon Identity Protection",
    "ngsiem": "Falcon Next-Gen SIEM",
    "mobile": "Falcon for Mobile",
    "xdr": "Falcon Insight XDR",
    "overwatch": "Falcon OverWatch",
    "cwpp": "Falcon Cloud Workload Protection",
    "thirdparty": "Falcon third-party",
    "data-protection": "Falcon Data Protection",
}
_SID = re.compile(r"^S-1-\d+(?:-\d+)+$", re.IGNORECASE)


def matches(doc: dict[str, Any]) -> bool:
    composite = doc.get("composite_id")
    return (
        isinstance(composite, str)
        and ":" in composite
        and ("cid" in doc or "product" in doc)
        and ("created_timestamp" in doc or "timestamp" in doc)
    )


def expand(doc: dict[str, Any]) -> list[Any] | None:
    """The alerts of a whole API response (`{meta, resources, errors}`), else None."""
    resources = doc.get("resources")
    if (
        isinstance(doc.get("meta"), dict)
        and isinstance(resources, list)
        and resources
        and isinstance(resources[0], dict)
        and "composite_id" in resources[0]
    ):
        return resources
    return None


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    product = opt_str(doc, "product", f)
    draft = AlertDraft(
        format=f,
        vendor="CrowdStrike",
        product=_PRODUCTS.get((product or "").lower(), "Falcon"),
        original=doc,
        max_entities=max_entities,
    )
    draft.vendor_id = req_str(doc, "composite_id", f)

    name = opt_str(doc, "name", f)
    draft.title = opt_str(doc, "display_name", f) or name
    if draft.title is None:
        raise NormalizationError("missing required field 'name' (or 'display_name')", format=f)
    draft.rule_name = name or draft.title
    draft.description = opt_str(doc, "description", f)
    draft.rule_description = draft.description
    draft.rule_id = opt_str(doc, "correlation_rule_id", f) or opt_str(doc, "pattern_id", f)

    _severity(draft, doc)
    _times(draft, doc)

    technique, tactic = opt_str(doc, "technique", f), opt_str(doc, "tactic", f)
    technique_id, tactic_id = opt_str(doc, "technique_id", f), opt_str(doc, "tactic_id", f)
    draft.techniques.append(technique_id)
    draft.tactic(tactic_id)
    draft.tactic(tactic)
    for where, entry in _objects(doc, "mitre_attack"):
        draft.techniques.append(_item_str(entry, where, "technique_id"))
        draft.tactic(_item_str(entry, where, "tactic_id"))
        draft.tactic(_item_str(entry, where, "tactic"))

    for key in ("device", "parent_details", "grandparent_details", "incident"):
        _require_object(doc, key)
    # Identity accounts first: the bare `user_name` (the source account's
    # sAMAccountName) then folds into the UPN-valued entity, not the reverse.
    _accounts(draft.entities, doc)
    _endpoint(draft.entities, doc)
    _identity_endpoints(draft.entities, doc)
    _siem(draft.entities, doc)

    for key, value in (
        ("product", product),
        ("type", opt_str(doc, "type", f)),
        ("status", opt_str(doc, "status", f)),
        ("scenario", opt_str(doc, "scenario", f)),
        ("objective", opt_str(doc, "objective", f)),
        ("tactic", tactic),
        ("tactic_id", tactic_id),
        ("technique", technique),
        ("technique_id", technique_id),
        ("severity_name", opt_str(doc, "severity_name", f)),
        ("confidence", opt_str(doc, "confidence", f)),
        ("aggregate_id", opt_str(doc, "aggregate_id", f)),
        ("cid", opt_str(doc, "cid", f)),
        ("falcon_host_link", opt_str(doc, "falcon_host_link", f)),
        ("platform", opt_str(doc, "platform", f)),
        ("pattern_disposition", opt_str(doc, "pattern_disposition_description", f)),
        ("incident_id", opt_str(doc, "incident.id", f)),
        ("idp_policy_rule", opt_str(doc, "idp_policy_rule_name", f)),
        ("country", opt_str(doc, "location_country_code", f)),
        ("data_domains", _strings(doc, "data_domains")),
        ("source_products", _strings(doc, "source_products")),
        ("source_vendors", _strings(doc, "source_vendors")),
    ):
        draft.label(key, value)
    return draft.build(received_at)


def _severity(draft: AlertDraft, doc: dict[str, Any]) -> None:
    f = FORMAT
    word = opt_str(doc, "severity_name", f)
    score = opt_number(doc, "severity", f)
    if score is not None and 0 <= score <= 100:
        draft.risk_score = score
    draft.severity = severity_from_word(word)
    if draft.severity is None and draft.risk_score is not None:
        draft.severity = Severity.from_score(draft.risk_score)
    if draft.severity is None:
        draft.severity = Severity.MEDIUM
        raw = word if word is not None else (f"{score:g}" if score is not None else "missing")
        draft.label("severity_raw", raw)


def _times(draft: AlertDraft, doc: dict[str, Any]) -> None:
    f = FORMAT
    event_time = None
    if opt_str(doc, "timestamp", f) is not None:
        event_time = parse_time(doc["timestamp"], unit="iso", fmt=f, path="timestamp")
        draft.label("event_time", event_time.isoformat())
    if opt_str(doc, "created_timestamp", f) is not None:
        draft.created_at = parse_time(
            doc["created_timestamp"], unit="iso", fmt=f, path="created_timestamp"
        )
    else:
        draft.created_at = event_time
    if draft.created_at is None:
        raise NormalizationError("missing required field 'created_timestamp'", format=f)


def _require_object(doc: dict[str, Any], key: str) -> None:
    """A sub-record is an object or absent; anything else is an error naming it."""
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        raise NormalizationError(
            f"field '{key}' must be an object, got {_kind(value)}", format=FORMAT
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__


def _objects(doc: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The items of a list of sub-records with their paths (`key[3]`); null items are
    skipped, any other non-object item is an error."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(as_list(doc.get(key))):
        if item is None:
            continue
        if not isinstance(item, dict):
            raise NormalizationError(
                f"field '{key}[{i}]' must be an object, got {_kind(item)}", format=FORMAT
            )
        out.append((f"{key}[{i}]", item))
    return out


def _item_str(item: dict[str, Any], where: str, key: str) -> str | None:
    """`opt_str` of a list item's field, its error naming `key[3].field`."""
    path = f"{where}.{key}"
    return opt_str({path: item.get(key)}, path, FORMAT)


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    """A list of names (one string counts as one); an object, list or bool item is an error."""
    out: list[str] = []
    for i, item in enumerate(as_list(doc.get(key))):
        if item is None:
            continue
        if isinstance(item, dict | list | bool):
            raise NormalizationError(
                f"field '{key}[{i}]' must be a string, got {_kind(item)}", format=FORMAT
            )
        text = str(item).strip()
        if text:
            out.append(text)
    return out


def _sid(value: str | None) -> str | None:
    return value if value is not None and _SID.match(value) else None


def _accounts(ents: EntitySet, doc: dict[str, Any]) -> None:
    """Identity Protection: the source account acts, the target account is acted on."""
    f = FORMAT
    sam = opt_str(doc, "source_account_sam_account_name", f)
    name = opt_str(doc, "source_account_name", f)
    ents.add_user(
        "actor",
        attributes={"account_name": name} if sam and name and name != sam else None,
        account=sam or name,
        upn=opt_str(doc, "source_account_upn", f),
        domain=opt_str(doc, "source_account_domain", f),
        sid=_sid(opt_str(doc, "source_account_object_sid", f)),
        object_id=opt_str(doc, "source_account_azure_id", f),
    )
    ents.add_user(
        "target",
        account=opt_str(doc, "target_account_name", f),
        sid=_sid(opt_str(doc, "target_account_object_sid", f)),
    )


def _endpoint(ents: EntitySet, doc: dict[str, Any]) -> None:
    """The device, its user, the process tree, its hashes, IOCs and network accesses."""
    f = FORMAT
    domain = opt_str(doc, "device.machine_domain", f)
    local_ip = opt_str(doc, "device.local_ip", f)
    ents.add_host(
        opt_str(doc, "device.hostname", f),
        ids={"falcon_aid": opt_str(doc, "device.device_id", f) or opt_str(doc, "agent_id", f)},
        os=opt_str(doc, "device.platform_name", f),
        os_version=opt_str(doc, "device.os_version", f),
        mac=opt_str(doc, "device.mac_address", f),
        domain=domain,
        local_ip=local_ip,
        external_ip=opt_str(doc, "device.external_ip", f),
    )
    ents.add(EntityType.IP, local_ip)

    user_id = opt_str(doc, "user_id", f)
    sid = _sid(user_id)
    ents.add_user(
        "actor",
        attributes={"user_id": user_id} if user_id is not None and sid is None else None,
        account=opt_str(doc, "user_name", f),
        upn=opt_str(doc, "user_principal", f),
        domain=opt_str(doc, "logon_domain", f) or domain,
        sid=sid,
    )

    file_name, path = opt_str(doc, "filename", f), opt_str(doc, "filepath", f)
    ents.add(
        EntityType.PROCESS,
        file_name,
        pid=opt_str(doc, "local_process_id", f),
        command_line=opt_str(doc, "cmdline", f),
        path=path,
    )
    for algo in ("sha256", "sha1", "md5"):
        ents.add(
            EntityType.FILE_HASH,
            opt_str(doc, algo, f),
            algorithm=algo,
            file_name=file_name,
            path=path,
        )
    for key, role in (("parent_details", "parent"), ("grandparent_details", "grandparent")):
        ents.add(
            EntityType.PROCESS,
            opt_str(doc, f"{key}.filename", f),
            role,
            pid=opt_str(doc, f"{key}.local_process_id", f),
            command_line=opt_str(doc, f"{key}.cmdline", f),
            path=opt_str(doc, f"{key}.filepath", f),
            sha256=opt_str(doc, f"{key}.sha256", f),
            user=opt_str(doc, f"{key}.user_name", f),
        )

    _ioc(ents, opt_str(doc, "ioc_type", f), opt_str(doc, "ioc_value", f))
    for where, ctx in _objects(doc, "ioc_context"):
        _ioc(ents, _item_str(ctx, where, "ioc_type"), _item_str(ctx, where, "ioc_value"))
    for where, access in _objects(doc, "network_accesses"):
        direction = (_item_str(access, where, "connection_direction") or "").lower()
        inbound = direction in ("inbound", "1")
        known = inbound or direction in ("outbound", "0")
        remote, local = ("source", "destination") if inbound else ("destination", "source")
        ents.add(
            EntityType.IP,
            _item_str(access, where, "remote_address"),
            remote if known else None,
            port=_item_str(access, where, "remote_port"),
        )
        ents.add(EntityType.IP, _item_str(access, where, "local_address"), local if known else None)
    # Automated leads name their hosts only in the indicators they group.
    for where, indicator in _objects(doc, "threatgraph_indicators"):
        ents.add_host(
            _item_str(indicator, where, "hostname"),
            ids={"falcon_aid": _item_str(indicator, where, "host_id")},
        )


def _ioc(ents: EntitySet, ioc_type: str | None, value: str | None) -> None:
    if ioc_type is not None and ioc_type.lower() in IOC_TYPES:
        kind, algo = IOC_TYPES[ioc_type.lower()]
        ents.add(kind, value, algorithm=algo)


def _identity_endpoints(ents: EntitySet, doc: dict[str, Any]) -> None:
    """Identity Protection: the endpoint the activity came from and the one it reached."""
    f = FORMAT
    ents.add_host(
        opt_str(doc, "source_endpoint_host_name", f),
        "source",
        ids={"falcon_aid": opt_str(doc, "source_endpoint_sensor_id", f)},
        object_sid=_sid(opt_str(doc, "source_endpoint_account_object_sid", f)),
    )
    for key in (
        "source_endpoint_ip_address",
        "source_endpoint_address_ip4",
        "source_endpoint_address_ip6",
    ):
        ents.add(EntityType.IP, opt_str(doc, key, f), "source")
    ents.add_host(
        opt_str(doc, "target_endpoint_host_name", f),
        "destination",
        ids={"falcon_aid": opt_str(doc, "target_endpoint_sensor_id", f)},
        object_sid=_sid(opt_str(doc, "target_endpoint_account_object_sid", f)),
    )
    ents.add_host(
        opt_str(doc, "target_domain_controller_host_name", f),
        "destination",
        kind="domain_controller",
        object_sid=_sid(opt_str(doc, "target_domain_controller_object_sid", f)),
    )


def _siem(ents: EntitySet, doc: dict[str, Any]) -> None:
    """Next-Gen SIEM correlation detections: the hosts, IPs and users the rule matched."""
    for key, role in (
        ("host_names", None),
        ("source_hosts", "source"),
        ("destination_hosts", "destination"),
    ):
        for name in _strings(doc, key):
            if looks_like_ip(name):
                ents.add(EntityType.IP, name, role)
            else:
                ents.add_host(name, role)
    ents.add(EntityType.IP, _strings(doc, "source_ips"), "source")
    ents.add(EntityType.IP, _strings(doc, "destination_ips"), "destination")
    for where, user in _objects(doc, "users"):
        ents.add_user(
            account=_item_str(user, where, "user_name"),
            sid=_sid(_item_str(user, where, "sid")),
        )
    for name in _strings(doc, "user_names"):
        ents.add_user(account=name)
