"""Wazuh alerts, as the manager writes them to `alerts.json` or as `wazuh-alerts-*` documents.

Shapes: one `alerts.json` line (`timestamp`, `rule`, `agent`, `manager`, `id`, `decoder`,
`data`, ...), the same record as an indexer document's `_source` (the Filebeat pipeline
adds `@timestamp` and `GeoLocation`), or a raw search hit (`{"_index", "_id",
"_source"}`, unwrapped). Wazuh's `id` is `<epoch>.<offset in the alerts file>`, unique
per manager (cluster nodes each write their own file), so the alert id is
`<manager.name>:<id>`: an alert read from `alerts.json` and from the index gets the
same id. `timestamp` carries the manager's offset without a colon (`+0000`,
`+0100`); it is stored in UTC. `@timestamp` is used only when `timestamp` is absent.

Severity: rule levels 0-16 as the shipped mapping (`samples/mappings/wazuh.yaml`)
maps them: 0-2 informational, 3-5 low, 6-9 medium, 10-12 high, 13-15 critical; 16,
which the current ruleset documentation allows, is critical too. A missing level or
one outside 0-16 (or not whole) is MEDIUM with a `severity_raw` label, so an odd
level never hides an alert; a level that is not a number is an error.

Entities:
- host: `agent.name`, with `agent.id` as its `wazuh_agent_id` alias and the FQDN the
  log reports (`predecoder.hostname`, `data.win.system.computer`) when it is the same
  machine; `agent.ip` is an `ip` entity. Role `target`. A log naming another machine
  (syslog relayed by an agent, Windows forwarded events) adds that machine as a
  second `target` host. Agent `000` is the manager itself: it is a host only when the
  log's own hostname says the event is the manager's (its own `/var/log/secure`);
  for relayed syslog the sending machine is the host (and a bare-IP `location`, the
  syslog sender, an `ip`), and for cloud and API events (AWS, Office 365, ...) there
  is no host, so a response never aims at the SIEM server. `000` is never an alias:
  every manager has it (and any agent id is unique per manager only).
- ip: `data.srcip`, `data.src_ip`, `data.win.eventdata.ipAddress`,
  `data.aws.sourceIPAddress` (`source`); `data.dstip`, `data.dest_ip`
  (`destination`); a hostname in `srcip`/`dstip` becomes a host of that role. When no
  decoder field names a source, the first `from <ipv4>` / `rhost=<ipv4>` in the first
  8 KiB of `full_log` does (sshd and PAM lines).
- user: `data.srcuser` (`actor`), `data.dstuser` (`target`), Windows
  `data.win.eventdata.subjectUserName`/`subjectDomainName`/`subjectUserSid` (`actor`)
  and `targetUserName`/`targetDomainName`/`targetUserSid` (`target`), Sysmon
  `data.win.eventdata.user` (`actor`), CloudTrail `data.aws.userIdentity.userName`
  (`actor`), FIM who-data `syscheck.audit.login_user` (else `.user`) (`actor`).
  Windows' `-`, `localhost` and the NULL SID `S-1-0-0` are not names.
- host `data.win.eventdata.workstationName` (`source`, the logon's client).
- file_hash: `syscheck.{sha256,sha1,md5}_after` (`target`, with `path` and `event`;
  the `_before` hashes of a deleted file), Sysmon `hashes` (`actor`).
- process: Sysmon `image` (`actor`) and `parentImage` (`parent`), who-data
  `syscheck.audit.process.name` (`actor`), by file name with the full path attribute.

MITRE: `rule.mitre.id` as techniques (valid ATT&CK ids only), `rule.mitre.tactic`
as tactics; technique names, compliance tags and Wazuh's own fields are labels.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    EntitySet,
    get,
    looks_like_ip,
    opt_number,
    opt_str,
    parse_time,
    req_str,
    type_name,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "matches", "normalize"]

FORMAT = "wazuh"
_MANAGER_AGENT_ID = "000"
_MAX_LIST = 64  # list items read for labels, techniques and tactics
_FULL_LOG_SCAN = 8192
_FULL_LOG_SOURCE = re.compile(r"(?:\bfrom|\brhost=)\s*(\d{1,3}(?:\.\d{1,3}){3})\b")
_NULL_SID = "S-1-0-0"
_NOT_NAMES = {"-", "localhost", "localhost.localdomain"}
_HASH_ALGORITHMS = ("sha256", "sha1", "md5")


def _level_severity(level: int) -> Severity:
    if level <= 2:
        return Severity.INFORMATIONAL
    if level <= 5:
        return Severity.LOW
    if level <= 9:
        return Severity.MEDIUM
    if level <= 12:
        return Severity.HIGH
    return Severity.CRITICAL


def _body(doc: dict[str, Any]) -> Any:
    return doc.get("_source", doc)


def matches(doc: dict[str, Any]) -> bool:
    body = _body(doc)
    if not isinstance(body, dict):
        return False
    rule, agent, manager = body.get("rule"), body.get("agent"), body.get("manager")
    return (
        isinstance(rule, dict)
        and "level" in rule
        and "id" in rule
        and isinstance(agent, dict)
        and "id" in agent
        and isinstance(manager, dict)
        and "name" in manager
    )


def _object(node: Any, path: str, *, required: bool = False) -> dict[str, Any]:
    """The sub-record at `path` ({} when absent and optional); anything else is an error."""
    value = get(node, path)
    if isinstance(value, dict):
        return value
    if value is None:
        if required:
            raise NormalizationError(f"missing required object '{path}'", format=FORMAT)
        return {}
    raise NormalizationError(
        f"field '{path}' must be an object, got {type_name(value)}", format=FORMAT
    )


# Checked parents first, so a string where `data` should be is named as `data`.
_SUB_RECORDS = (
    "agent",
    "manager",
    "cluster",
    "decoder",
    "predecoder",
    "rule.mitre",
    "data",
    "data.win",
    "data.win.system",
    "data.win.eventdata",
    "data.aws",
    "data.aws.userIdentity",
    "syscheck",
    "syscheck.audit",
    "GeoLocation",
)


def _texts(body: dict[str, Any], path: str) -> list[str]:
    """A field holding one string or a list of them (the JSON decoder keeps arrays)."""
    value = get(body, path)
    out: list[str] = []
    for one in value if isinstance(value, list) else [value]:
        if one is None:
            continue
        if isinstance(one, int | float) and not isinstance(one, bool):
            one = str(one)
        if not isinstance(one, str):
            raise NormalizationError(
                f"field '{path}' must be a string, got {type_name(one)}", format=FORMAT
            )
        text = one.strip()
        if text and text not in _NOT_NAMES:
            out.append(text)
    return out


def _first(body: dict[str, Any], path: str) -> str | None:
    found = _texts(body, path)
    return found[0] if found else None


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    body = _body(doc)
    if not isinstance(body, dict):
        raise NormalizationError(
            f"field '_source' must be an object, got {type_name(body)}", format=f
        )
    _object(body, "rule", required=True)
    for path in _SUB_RECORDS:
        _object(body, path)
    draft = AlertDraft(
        format=f, vendor="Wazuh", product="Wazuh", original=doc, max_entities=max_entities
    )

    wazuh_id = req_str(body, "id", f)
    manager = opt_str(body, "manager.name", f)
    draft.vendor_id = f"{manager}:{wazuh_id}" if manager else wazuh_id
    draft.title = req_str(body, "rule.description", f)
    draft.rule_id = opt_str(body, "rule.id", f)
    draft.rule_name = draft.title
    draft.description = opt_str(body, "full_log", f) or opt_str(body, "data.win.system.message", f)
    _severity(draft, body)
    path = "timestamp" if get(body, "timestamp") is not None else "@timestamp"
    if get(body, path) is None:
        raise NormalizationError("missing required field 'timestamp'", format=f)
    draft.created_at = parse_time(get(body, path), unit="auto", fmt=f, path=path)

    draft.techniques += _texts(body, "rule.mitre.id")[:_MAX_LIST]
    for tactic in _texts(body, "rule.mitre.tactic")[:_MAX_LIST]:
        draft.tactic(tactic)

    _hosts(draft.entities, body)
    _network(draft.entities, body)
    _users(draft.entities, body)
    _windows(draft.entities, body)
    _files(draft.entities, body)
    _labels(draft, body)
    if body is not doc:
        draft.label("index", opt_str(doc, "_index", f))
    return draft.build(received_at)


def _severity(draft: AlertDraft, body: dict[str, Any]) -> None:
    level = opt_number(body, "rule.level", FORMAT)
    if level is not None and level.is_integer() and 0 <= level <= 16:
        draft.severity = _level_severity(int(level))
        draft.label("level", int(level))
        return
    draft.severity = Severity.MEDIUM
    draft.label("severity_raw", "missing" if level is None else f"{level:g}")


def _same_machine(reported: str, agent_name: str | None) -> bool:
    if agent_name is None:
        return False
    return reported.split(".", 1)[0].lower() == agent_name.split(".", 1)[0].lower()


def _hosts(ents: EntitySet, body: dict[str, Any]) -> None:
    """The agent's host, and any other machine the log line says the event is from."""
    agent_id = _first(body, "agent.id")
    agent_name = _first(body, "agent.name")
    is_manager = agent_id == _MANAGER_AGENT_ID
    reported = _texts(body, "predecoder.hostname") + _texts(body, "data.win.system.computer")
    same = [name for name in reported if _same_machine(name, agent_name)]
    if not is_manager or same:
        fqdn = next((n for n in same if "." in n and not looks_like_ip(n)), None)
        # Agent ids are unique per manager only: qualified, two deployments' agent 014
        # are two machines.
        manager = _first(body, "manager.name")
        qualified = f"{manager}/{agent_id}" if manager and agent_id else agent_id
        ids = {} if is_manager else {"wazuh_agent_id": qualified}
        ents.add_host(agent_name, "target", fqdn=fqdn, ids=ids)
        ents.add(EntityType.IP, _texts(body, "agent.ip"), "target")
    for name in reported:
        if name in same:
            continue
        if looks_like_ip(name):
            ents.add(EntityType.IP, name, "target")
        else:
            ents.add_host(name, "target")
    location = _first(body, "location")
    if is_manager and location is not None and looks_like_ip(location):
        ents.add(EntityType.IP, location, "target")  # remote syslog: the sender's address


def _ip(value: str) -> str:
    """An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, as Windows logs it) as IPv4."""
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        return value
    mapped = getattr(parsed, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else value


def _ips_or_hosts(ents: EntitySet, values: list[str], role: str) -> None:
    """`srcip`/`dstip` hold a name when sshd resolves the peer (`UseDNS yes`)."""
    for value in values:
        if looks_like_ip(value):
            ents.add(EntityType.IP, value, role)
        else:
            ents.add_host(value, role)


def _network(ents: EntitySet, body: dict[str, Any]) -> None:
    sources: list[str] = []
    for path in (
        "data.srcip",
        "data.src_ip",
        "data.win.eventdata.ipAddress",
        "data.aws.sourceIPAddress",
    ):
        sources += [_ip(value) for value in _texts(body, path)]
    _ips_or_hosts(ents, sources, "source")
    for path in ("data.dstip", "data.dest_ip"):
        _ips_or_hosts(ents, _texts(body, path), "destination")
    if sources:
        return
    full_log = opt_str(body, "full_log", FORMAT)
    if full_log:
        found = _FULL_LOG_SOURCE.search(full_log[:_FULL_LOG_SCAN])
        if found and looks_like_ip(found.group(1)):
            ents.add(EntityType.IP, found.group(1), "source", extracted_from="full_log")


def _sid(body: dict[str, Any], path: str) -> str | None:
    sid = _first(body, path)
    return sid if sid is not None and sid.upper() != _NULL_SID else None


def _users(ents: EntitySet, body: dict[str, Any]) -> None:
    for account in _texts(body, "data.srcuser"):
        ents.add_user("actor", account=account)
    for account in _texts(body, "data.dstuser"):
        ents.add_user("target", account=account)
    event = "data.win.eventdata"
    for side, role in (("subject", "actor"), ("target", "target")):
        ents.add_user(
            role,
            account=_first(body, f"{event}.{side}UserName"),
            domain=_first(body, f"{event}.{side}DomainName"),
            sid=_sid(body, f"{event}.{side}UserSid"),
        )
    ents.add_user("actor", account=_first(body, f"{event}.user"))
    identity = "data.aws.userIdentity"
    ents.add_user(
        "actor",
        account=_first(body, f"{identity}.userName"),
        attributes={
            "arn": _first(body, f"{identity}.arn"),
            "aws_account": _first(body, f"{identity}.accountId"),
            "identity_type": _first(body, f"{identity}.type"),
        },
    )
    # Who-data: the audit login user is the person, whatever sudo made the process.
    for who in ("login_user", "user"):
        who_name = _first(body, f"syscheck.audit.{who}.name")
        if who_name is not None:
            uid = _first(body, f"syscheck.audit.{who}.id")
            ents.add_user("actor", account=who_name, attributes={"uid": uid})
            break


def _file_name(path: str) -> str:
    return re.split(r"[\\/]", path)[-1] or path


def _process(ents: EntitySet, path: str | None, role: str, **attributes: Any) -> None:
    if path is not None:
        ents.add(EntityType.PROCESS, _file_name(path), role, path=path, **attributes)


def _windows(ents: EntitySet, body: dict[str, Any]) -> None:
    event = "data.win.eventdata"
    ents.add_host(_first(body, f"{event}.workstationName"), "source")
    image = _first(body, f"{event}.image")
    _process(
        ents,
        image,
        "actor",
        pid=_first(body, f"{event}.processId"),
        command_line=_first(body, f"{event}.commandLine"),
    )
    _process(
        ents,
        _first(body, f"{event}.parentImage"),
        "parent",
        pid=_first(body, f"{event}.parentProcessId"),
        command_line=_first(body, f"{event}.parentCommandLine"),
    )
    # Sysmon writes `SHA1=...,MD5=...,SHA256=...,IMPHASH=...` (the algorithms configured).
    for pair in ",".join(_texts(body, f"{event}.hashes")).split(",")[:_MAX_LIST]:
        algo, sep, digest = pair.partition("=")
        algorithm = algo.strip().lower()
        if sep and algorithm in _HASH_ALGORITHMS:
            ents.add(EntityType.FILE_HASH, digest.strip(), "actor", algorithm=algorithm, path=image)


def _files(ents: EntitySet, body: dict[str, Any]) -> None:
    path = _first(body, "syscheck.path")
    event = _first(body, "syscheck.event")
    when = "before" if event == "deleted" else "after"
    for algo in _HASH_ALGORITHMS:
        ents.add(
            EntityType.FILE_HASH,
            _texts(body, f"syscheck.{algo}_{when}"),
            "target",
            algorithm=algo,
            path=path,
            event=event,
            owner=_first(body, f"syscheck.uname_{when}"),
        )
    _process(
        ents,
        _first(body, "syscheck.audit.process.name"),
        "actor",
        pid=_first(body, "syscheck.audit.process.id"),
    )


def _joined(body: dict[str, Any], path: str) -> str | None:
    values = _texts(body, path)
    if not values:
        return None
    more = f",...(+{len(values) - _MAX_LIST})" if len(values) > _MAX_LIST else ""
    return ",".join(values[:_MAX_LIST]) + more


_LIST_LABELS = {
    "groups": "rule.groups",
    "mitre_techniques": "rule.mitre.technique",
    "pci_dss": "rule.pci_dss",
    "gdpr": "rule.gdpr",
    "hipaa": "rule.hipaa",
    "nist_800_53": "rule.nist_800_53",
    "tsc": "rule.tsc",
    "gpg13": "rule.gpg13",
    "changed_attributes": "syscheck.changed_attributes",
}
_LABELS = {
    "firedtimes": "rule.firedtimes",
    "frequency": "rule.frequency",
    "wazuh_id": "id",
    "manager": "manager.name",
    "cluster": "cluster.name",
    "cluster_node": "cluster.node",
    "agent_id": "agent.id",
    "agent_name": "agent.name",
    "decoder": "decoder.name",
    "decoder_parent": "decoder.parent",
    "program_name": "predecoder.program_name",
    "location": "location",
    "geo_country": "GeoLocation.country_name",
    "geo_city": "GeoLocation.city_name",
    "file": "syscheck.path",
    "syscheck_event": "syscheck.event",
    "syscheck_mode": "syscheck.mode",
    "win_event_id": "data.win.system.eventID",
    "win_channel": "data.win.system.channel",
    "win_provider": "data.win.system.providerName",
    "logon_type": "data.win.eventdata.logonType",
    "win_status": "data.win.eventdata.status",
    "win_sub_status": "data.win.eventdata.subStatus",
    "integration": "data.integration",
    "aws_source": "data.aws.source",
    "aws_event_name": "data.aws.eventName",
    "aws_event_source": "data.aws.eventSource",
    "aws_region": "data.aws.awsRegion",
    "aws_account_id": "data.aws.aws_account_id",
    "aws_error_code": "data.aws.errorCode",
    "srcport": "data.srcport",
    "dstport": "data.dstport",
}


def _labels(draft: AlertDraft, body: dict[str, Any]) -> None:
    for key, path in _LIST_LABELS.items():
        draft.label(key, _joined(body, path))
    for key, path in _LABELS.items():
        draft.label(key, _first(body, path))
