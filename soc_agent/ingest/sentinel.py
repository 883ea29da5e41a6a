"""Microsoft Sentinel alerts: `SecurityAlert` rows and the Sentinel REST alert and incident.

Three shapes are read:

- a Log Analytics `SecurityAlert` row (`Type: "SecurityAlert"`, or the columns
  `SystemAlertId` and `AlertSeverity` when a query projected `Type` away). Its
  `Entities`, `ExtendedProperties` and `Techniques`/`SubTechniques` columns are JSON
  held in strings; a string that is not JSON of the right kind is an error naming
  the column (an export that kept them as real JSON is read as well). `Tactics` is
  a comma-separated string; `Techniques` that is not a JSON array is read as one too.
- a REST alert (`kind: "SecurityAlert"`, from `.../incidents/{id}/alerts`):
  `properties.alertDisplayName`, `properties.severity`, `properties.tactics`, ...
  It carries no entities.
- a REST incident (`type: "Microsoft.SecurityInsights/incidents"`). Incidents are
  taken as alerts, because analysts export them and a dead letter would lose them,
  but they are weak evidence: the REST incident names no entities. Its id is
  `sentinel:incident:<name>` so it never collides with its alerts' ids, and the
  `record_kind` label says `incident` so policy can tell it apart.

Ids: `SystemAlertId` (REST `properties.systemAlertId`, else `name`), so a row that is
delivered again, a later status row of the same alert, and the REST view of it all get
the one id `sentinel:<SystemAlertId>`. Time: `TimeGenerated` (REST `timeGenerated`,
incident `createdTimeUtc`), falling back to the start time. Severity: Sentinel's
High/Medium/Low/Informational; any other or missing value is MEDIUM with a
`severity_raw` label, so an odd severity never hides an alert. Rule: the first
`Analytic Rule Ids` entry of `ExtendedProperties` (scheduled and NRT rules), else
`AlertType`; an incident's rule is the last segment of its first related rule id.

Entities (LA rows only): the `Entities` array, with `$ref` back-references resolved
(bounded hops; a cycle or a dangling reference is counted as dropped, never fatal).
account -> user (Name, NTDomain, UPNSuffix, AadUserId, Sid: value and aliases by
`models.names`); host -> host (HostName, DnsDomain as FQDN, MdatpDeviceId, AzureID and
OMSAgentID as device ids; IpInterfaces -> ip); ip -> ip; file -> its FileHashes as
file_hash with the file's name and directory; filehash -> file_hash; process ->
process (ImageFile name, else the command line's program), its ParentProcess as
`parent`, its Account as `actor`, its image's hashes; url -> url; mailbox -> email
(and a user when it names a Upn); mail-message -> email `sender`/`recipient`, ip
`source`, urls; dns -> domain (HostIpAddress `source`, resolved IpAddress ips);
azure-resource and cloud-application -> cloud_resource; malware -> labels. Other
types are counted in the `entities_unmapped` label. Sentinel gives no entity roles,
so top-level entities have none.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    as_list,
    get,
    opt_number,
    opt_str,
    parse_time,
    severity_from_word,
    short,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "matches", "normalize"]

FORMAT = "sentinel"
_INCIDENT_TYPE = "microsoft.securityinsights/incidents"
_MAX_HOPS = 8  # $ref chain length followed before giving up (cycles stop sooner)
_MAX_DEPTH = 8  # nesting walked when indexing `$id`s


def matches(doc: dict[str, Any]) -> bool:
    if doc.get("Type") == "SecurityAlert" or ("SystemAlertId" in doc and "AlertSeverity" in doc):
        return True
    kind, rtype = doc.get("kind"), doc.get("type")
    if isinstance(kind, str) and kind.lower() == "securityalert" and "properties" in doc:
        return True
    return isinstance(rtype, str) and rtype.lower() == _INCIDENT_TYPE and "properties" in doc


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    draft = AlertDraft(
        format=FORMAT,
        vendor="Microsoft",
        product="Microsoft Sentinel",
        original=doc,
        max_entities=max_entities,
    )
    if "properties" in doc and not ("SystemAlertId" in doc or doc.get("Type") == "SecurityAlert"):
        props = doc.get("properties")
        if not isinstance(props, dict):
            raise NormalizationError(
                f"field 'properties' must be an object, got {short(props)}", format=FORMAT
            )
        rtype = doc.get("type")
        if isinstance(rtype, str) and rtype.lower() == _INCIDENT_TYPE:
            _incident(draft, doc, props)
        else:
            _rest_alert(draft, doc, props)
    else:
        _row(draft, doc)
    return draft.build(received_at)


# --- shared -------------------------------------------------------------------------------


def _severity(draft: AlertDraft, doc: Any, path: str) -> None:
    word = opt_str(doc, path, FORMAT)
    draft.severity = severity_from_word(word)
    if draft.severity is None:
        draft.severity = Severity.MEDIUM
        draft.label("severity_raw", word or "missing")


def _time(draft: AlertDraft, doc: Any, paths: tuple[str, ...]) -> None:
    for path in paths:
        value = get(doc, path)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        draft.created_at = parse_time(value, unit="iso", fmt=FORMAT, path=path)
        return
    raise NormalizationError(f"missing required field '{paths[0]}'", format=FORMAT)


def _title(draft: AlertDraft, doc: Any, paths: tuple[str, ...]) -> None:
    for path in paths:
        draft.title = draft.title or opt_str(doc, path, FORMAT)
    if draft.title is None:
        raise NormalizationError(f"missing required field '{paths[0]}'", format=FORMAT)


def _json(doc: Any, path: str, want: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """A JSON-in-a-string column: None when empty, an error naming it when malformed."""
    value = get(doc, path)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise NormalizationError(
                f"field '{path}' is not valid JSON: {getattr(exc, 'msg', exc)}", format=FORMAT
            ) from exc
        except RecursionError as exc:
            raise NormalizationError(
                f"field '{path}' is JSON nested too deeply to read", format=FORMAT
            ) from exc
    if value is None:
        return None
    if not isinstance(value, want):
        kind = "array" if want is list else "object"
        raise NormalizationError(
            f"field '{path}' must be a JSON {kind}, got {short(value)}", format=FORMAT
        )
    return value


def _names(doc: Any, path: str, *, json_array: bool) -> list[str]:
    """A list of names given as a list, a JSON array string, or a comma-separated string."""
    value = get(doc, path)
    if isinstance(value, str):
        text = value.strip()
        if json_array and text.startswith("["):
            value = _json(doc, path, list)
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if value is None:
        return []
    if not isinstance(value, list):
        raise NormalizationError(
            f"field '{path}' must be a list of names, got {short(value)}", format=FORMAT
        )
    return [v.strip() for v in value if isinstance(v, str) and v.strip()]


def _labels(draft: AlertDraft, doc: Any, pairs: tuple[tuple[str, str], ...]) -> None:
    for key, path in pairs:
        draft.label(key, opt_str(doc, path, FORMAT))


# --- Log Analytics SecurityAlert row ---------------------------------------------------------


def _row(draft: AlertDraft, doc: dict[str, Any]) -> None:
    f = FORMAT
    draft.vendor_id = opt_str(doc, "SystemAlertId", f)
    if draft.vendor_id is None:
        raise NormalizationError("missing required field 'SystemAlertId'", format=f)
    draft.vendor = opt_str(doc, "VendorName", f) or draft.vendor
    draft.product = opt_str(doc, "ProductName", f) or draft.product
    _title(draft, doc, ("DisplayName", "AlertName"))
    draft.description = opt_str(doc, "Description", f)
    _severity(draft, doc, "AlertSeverity")
    _time(draft, doc, ("TimeGenerated", "StartTime", "ProcessingEndTime"))

    extended = _json(doc, "ExtendedProperties", dict) or {}
    # Keys with spaces, read through a one-key view so errors name the full path.
    ids_path, name_path = (
        "ExtendedProperties.Analytic Rule Ids",
        "ExtendedProperties.Analytic Rule Name",
    )
    rule_ids = _names({ids_path: extended.get("Analytic Rule Ids")}, ids_path, json_array=True)
    alert_type = opt_str(doc, "AlertType", f)
    draft.rule_id = rule_ids[0] if rule_ids else alert_type
    draft.rule_name = opt_str({name_path: extended.get("Analytic Rule Name")}, name_path, f)
    draft.rule_name = draft.rule_name or opt_str(doc, "AlertName", f)

    tactics = _names(doc, "Tactics", json_array=False)
    for tactic in tactics:
        draft.tactic(tactic)
    draft.techniques += _names(doc, "Techniques", json_array=True)
    draft.techniques += _names(doc, "SubTechniques", json_array=True)
    entities = _json(doc, "Entities", list)
    if entities:
        _entities(draft, entities)

    draft.label("record_kind", "alert")
    draft.label("tactics", tactics)
    draft.label("alert_type", alert_type)
    draft.label("analytic_rule_ids", rule_ids)
    confidence = opt_number(doc, "ConfidenceScore", f)
    draft.label("confidence_score", f"{confidence:g}" if confidence is not None else None)
    incident = doc.get("IsIncident")
    if isinstance(incident, bool) or incident in (0, 1):
        draft.label("is_incident", str(bool(incident)).lower())
    _labels(
        draft,
        doc,
        (
            ("provider_name", "ProviderName"),
            ("product_component_name", "ProductComponentName"),
            ("status", "Status"),
            ("confidence_level", "ConfidenceLevel"),
            ("compromised_entity", "CompromisedEntity"),
            ("vendor_original_id", "VendorOriginalId"),
            ("alert_link", "AlertLink"),
            ("resource_id", "ResourceId"),
            ("start_time", "StartTime"),
            ("end_time", "EndTime"),
            ("tenant_id", "TenantId"),
            ("workspace_subscription_id", "WorkspaceSubscriptionId"),
            ("workspace_resource_group", "WorkspaceResourceGroup"),
        ),
    )


# --- REST shapes -----------------------------------------------------------------------------


def _rest_alert(draft: AlertDraft, doc: dict[str, Any], props: dict[str, Any]) -> None:
    f = FORMAT
    draft.vendor_id = opt_str(props, "systemAlertId", f) or opt_str(doc, "name", f)
    if draft.vendor_id is None:
        raise NormalizationError("missing required field 'properties.systemAlertId'", format=f)
    draft.vendor = opt_str(props, "vendorName", f) or draft.vendor
    draft.product = opt_str(props, "productName", f) or draft.product
    wrapped = {"properties": props}
    _title(draft, wrapped, ("properties.alertDisplayName", "properties.friendlyName"))
    draft.description = opt_str(props, "description", f)
    _severity(draft, wrapped, "properties.severity")
    _time(
        draft,
        wrapped,
        ("properties.timeGenerated", "properties.startTimeUtc", "properties.processingEndTime"),
    )
    draft.rule_id = opt_str(props, "alertType", f)
    tactics = _names(wrapped, "properties.tactics", json_array=False)
    intent = opt_str(props, "intent", f)
    for tactic in [*tactics, intent]:
        draft.tactic(tactic)
    draft.techniques += _names(wrapped, "properties.techniques", json_array=True)
    draft.techniques += _names(wrapped, "properties.subTechniques", json_array=True)

    draft.label("record_kind", "alert")
    draft.label("tactics", tactics)
    draft.label("intent", intent)
    draft.label("alert_type", draft.rule_id)
    confidence = opt_number(props, "confidenceScore", f)
    draft.label("confidence_score", f"{confidence:g}" if confidence is not None else None)
    _labels(
        draft,
        props,
        (
            ("product_component_name", "productComponentName"),
            ("status", "status"),
            ("confidence_level", "confidenceLevel"),
            ("compromised_entity", "compromisedEntity"),
            ("vendor_original_id", "providerAlertId"),
            ("alert_link", "alertLink"),
            ("start_time", "startTimeUtc"),
            ("end_time", "endTimeUtc"),
        ),
    )


def _incident(draft: AlertDraft, doc: dict[str, Any], props: dict[str, Any]) -> None:
    f = FORMAT
    name = opt_str(doc, "name", f)
    if name is None:
        raise NormalizationError("missing required field 'name'", format=f)
    draft.vendor_id = f"incident:{name}"
    draft.product = opt_str(props, "providerName", f) or draft.product
    wrapped = {"properties": props}
    _title(draft, wrapped, ("properties.title",))
    draft.description = opt_str(props, "description", f)
    _severity(draft, wrapped, "properties.severity")
    _time(draft, wrapped, ("properties.createdTimeUtc", "properties.firstActivityTimeUtc"))
    rules = _names(wrapped, "properties.relatedAnalyticRuleIds", json_array=False)
    rule_guids = [rule.rstrip("/").rsplit("/", 1)[-1] for rule in rules]
    draft.rule_id = rule_guids[0] if rule_guids else None
    extra = props.get("additionalData")
    extra = extra if isinstance(extra, dict) else {}
    wrapped_extra = {"additionalData": extra}
    tactics = _names(wrapped_extra, "additionalData.tactics", json_array=False)
    for tactic in tactics:
        draft.tactic(tactic)
    draft.techniques += _names(wrapped_extra, "additionalData.techniques", json_array=False)

    draft.label("record_kind", "incident")
    draft.label("tactics", tactics)
    draft.label("analytic_rule_ids", rule_guids)
    alerts = opt_number(extra, "alertsCount", f)
    draft.label("alerts_count", f"{alerts:g}" if alerts is not None else None)
    draft.label(
        "alert_product_names",
        _names(wrapped_extra, "additionalData.alertProductNames", json_array=False),
    )
    tags = [get(tag, "labelName") for tag in as_list(props.get("labels")) if isinstance(tag, dict)]
    draft.label("incident_labels", [t for t in tags if isinstance(t, str)])
    owner = props.get("owner")
    if isinstance(owner, dict):
        draft.label("owner", opt_str(owner, "userPrincipalName", f) or opt_str(owner, "email", f))
    _labels(
        draft,
        props,
        (
            ("incident_number", "incidentNumber"),
            ("status", "status"),
            ("classification", "classification"),
            ("classification_reason", "classificationReason"),
            ("provider_name", "providerName"),
            ("provider_incident_id", "providerIncidentId"),
            ("incident_url", "incidentUrl"),
            ("first_activity_time", "firstActivityTimeUtc"),
            ("last_activity_time", "lastActivityTimeUtc"),
        ),
    )


# --- Entities ----------------------------------------------------------------------------------


def _ref_key(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return str(value).strip() or None
    return None


class _Graph:
    """Every object carrying an `$id` in the Entities array, nested ones included."""

    def __init__(self, items: list[Any]) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        stack: list[tuple[Any, int]] = [(item, 0) for item in reversed(items)]
        while stack:
            node, depth = stack.pop()
            if depth > _MAX_DEPTH:
                continue
            if isinstance(node, dict):
                key = _ref_key(node.get("$id"))
                if key is not None:
                    self.by_id.setdefault(key, node)
                children: list[Any] = list(node.values())
            elif isinstance(node, list):
                children = node
            else:
                continue
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))

    def resolve(self, node: Any) -> dict[str, Any] | None:
        """The object a node is or refers to; None for a dangling, cyclic or long chain."""
        seen: set[str] = set()
        for _ in range(_MAX_HOPS):
            if not isinstance(node, dict):
                return None
            if "$ref" not in node:
                return node
            key = _ref_key(node.get("$ref"))
            if key is None or key in seen:
                return None
            seen.add(key)
            node = self.by_id.get(key)
        return None


class _Reader:
    """Reads the Sentinel entity objects of one alert into its EntitySet."""

    def __init__(self, draft: AlertDraft, graph: _Graph) -> None:
        self.draft = draft
        self.ents = draft.entities
        self.graph = graph
        self.unmapped: Counter[str] = Counter()
        self.seen: set[int] = set()  # id() of every object read, so `$ref`s add no repeats

    def text(self, node: dict[str, Any], key: str, where: str) -> str | None:
        path = f"{where}.{key}"
        return opt_str({path: node.get(key)}, path, FORMAT)

    def entity(self, raw: Any, where: str, role: str | None = None, *, top: bool = False) -> None:
        node = self.graph.resolve(raw)
        if node is None:
            self.ents.dropped += 1
            return
        if top and id(node) in self.seen:
            return  # a top-level `$ref` to an object read already where it was nested
        self.seen.add(id(node))
        kind = (self.text(node, "Type", where) or "untyped").lower()
        reader = _READERS.get(kind)
        if reader is None:
            self.unmapped[kind] += 1
            return
        reader(self, node, where, role)

    def nested(self, node: dict[str, Any], key: str) -> dict[str, Any] | None:
        found = self.graph.resolve(node.get(key)) if key in node else None
        if found is not None:
            self.seen.add(id(found))
        return found

    def account(self, node: dict[str, Any], where: str, role: str | None) -> None:
        name = self.text(node, "Name", where)
        suffix = self.text(node, "UPNSuffix", where)
        self.ents.add_user(
            role,
            account=name,
            domain=self.text(node, "NTDomain", where),
            upn=f"{name}@{suffix}" if name and suffix and "@" not in name else None,
            object_id=self.text(node, "AadUserId", where),
            sid=self.text(node, "Sid", where),
            attributes={
                "dns_domain": self.text(node, "DnsDomain", where),
                "aad_tenant_id": self.text(node, "AadTenantId", where),
                "object_guid": self.text(node, "ObjectGuid", where),
            },
        )

    def host(self, node: dict[str, Any], where: str, role: str | None) -> None:
        name = self.text(node, "HostName", where) or self.text(node, "NetBiosName", where)
        domain = self.text(node, "DnsDomain", where)
        self.ents.add_host(
            name,
            role,
            fqdn=f"{name}.{domain}" if name and domain and "." not in name else None,
            ids={
                "mde_device_id": self.text(node, "MdatpDeviceId", where),
                "azure_resource_id": self.text(node, "AzureID", where),
                "oms_agent_id": self.text(node, "OMSAgentID", where),
            },
            nt_domain=self.text(node, "NTDomain", where),
            os=self.text(node, "OSFamily", where),
            os_version=self.text(node, "OSVersion", where),
        )
        for index, ip in enumerate(as_list(node.get("IpInterfaces"))):
            self.entity(ip, f"{where}.IpInterfaces[{index}]", role)

    def ip(self, node: dict[str, Any], where: str, role: str | None) -> None:
        location = node.get("Location")
        geo = location if isinstance(location, dict) else {}
        self.ents.add(
            EntityType.IP,
            self.text(node, "Address", where),
            role,
            address_scope=self.text(node, "AddressScope", where),
            country=self.text(geo, "CountryCode", f"{where}.Location"),
            asn=self.text(geo, "Asn", f"{where}.Location"),
        )

    def hashes(self, file: dict[str, Any], where: str, role: str | None) -> None:
        name, directory = self.text(file, "Name", where), self.text(file, "Directory", where)
        for index, raw in enumerate(as_list(file.get("FileHashes"))):
            node = self.graph.resolve(raw)
            if node is not None:
                self.seen.add(id(node))
                self.filehash(node, f"{where}.FileHashes[{index}]", role, name, directory)

    def file(self, node: dict[str, Any], where: str, role: str | None) -> None:
        self.hashes(node, where, role)

    def filehash(
        self,
        node: dict[str, Any],
        where: str,
        role: str | None,
        file_name: str | None = None,
        path: str | None = None,
    ) -> None:
        algorithm = self.text(node, "Algorithm", where)
        self.ents.add(
            EntityType.FILE_HASH,
            self.text(node, "Value", where),
            role,
            algorithm=algorithm.lower() if algorithm else None,
            file_name=file_name,
            path=path,
        )

    def process(self, node: dict[str, Any], where: str, role: str | None) -> None:
        image = self.nested(node, "ImageFile")
        command = self.text(node, "CommandLine", where)
        name = self.text(image, "Name", f"{where}.ImageFile") if image else None
        self.ents.add(
            EntityType.PROCESS,
            name or _program(command),
            role,
            pid=self.text(node, "ProcessId", where),
            command_line=command,
            path=self.text(image, "Directory", f"{where}.ImageFile") if image else None,
            created=self.text(node, "CreationTimeUtc", where),
            elevation=self.text(node, "ElevationToken", where),
        )
        if image:
            self.hashes(image, f"{where}.ImageFile", role)
        if role == "parent":
            return  # a parent's own parent and account say nothing about this alert's actor
        parent = self.nested(node, "ParentProcess")
        if parent is not None:
            self.process(parent, f"{where}.ParentProcess", "parent")
        account = self.nested(node, "Account")
        if account is not None:
            self.account(account, f"{where}.Account", "actor")

    def url(self, node: dict[str, Any], where: str, role: str | None) -> None:
        self.ents.add(EntityType.URL, self.text(node, "Url", where), role)

    def mailbox(self, node: dict[str, Any], where: str, role: str | None) -> None:
        address = self.text(node, "MailboxPrimaryAddress", where)
        self.ents.add(
            EntityType.EMAIL, address, role, display_name=self.text(node, "DisplayName", where)
        )
        upn = self.text(node, "Upn", where)
        if upn is not None:
            self.ents.add_user(
                role, upn=upn, email=address, object_id=self.text(node, "AadId", where)
            )

    def mail_message(self, node: dict[str, Any], where: str, role: str | None) -> None:
        message = {
            "subject": self.text(node, "Subject", where),
            "internet_message_id": self.text(node, "InternetMessageId", where),
            "network_message_id": self.text(node, "NetworkMessageId", where),
        }
        self.ents.add(EntityType.EMAIL, self.text(node, "Sender", where), "sender", **message)
        self.ents.add(EntityType.EMAIL, self.text(node, "Recipient", where), "recipient", **message)
        self.ents.add(EntityType.IP, self.text(node, "SenderIP", where), "source")
        for index, url in enumerate(as_list(node.get("Urls"))):
            path = f"{where}.Urls[{index}]"
            self.ents.add(EntityType.URL, opt_str({path: url}, path, FORMAT), role)

    def dns(self, node: dict[str, Any], where: str, role: str | None) -> None:
        self.ents.add(EntityType.DOMAIN, self.text(node, "DomainName", where), role)
        if "HostIpAddress" in node:
            self.entity(node["HostIpAddress"], f"{where}.HostIpAddress", "source")
        for index, ip in enumerate(as_list(node.get("IpAddress"))):
            self.entity(ip, f"{where}.IpAddress[{index}]", role)

    def azure_resource(self, node: dict[str, Any], where: str, role: str | None) -> None:
        self.ents.add(
            EntityType.CLOUD_RESOURCE,
            self.text(node, "ResourceId", where),
            role,
            provider="azure",
            resource_type=self.text(node, "ResourceType", where),
            subscription_id=self.text(node, "SubscriptionId", where),
        )

    def cloud_application(self, node: dict[str, Any], where: str, role: str | None) -> None:
        app_id = self.text(node, "AppId", where) or self.text(node, "SaasId", where)
        self.ents.add(
            EntityType.CLOUD_RESOURCE,
            self.text(node, "Name", where) or app_id,
            role,
            app_id=app_id,
            instance_name=self.text(node, "InstanceName", where),
        )

    def malware(self, node: dict[str, Any], where: str, role: str | None) -> None:
        if "malware_name" not in self.draft.labels:
            self.draft.label("malware_name", self.text(node, "Name", where))
            self.draft.label("malware_category", self.text(node, "Category", where))


_READERS: dict[str, Callable[[_Reader, dict[str, Any], str, str | None], None]] = {
    "account": _Reader.account,
    "host": _Reader.host,
    "ip": _Reader.ip,
    "file": _Reader.file,
    "filehash": _Reader.filehash,
    "process": _Reader.process,
    "url": _Reader.url,
    "mailbox": _Reader.mailbox,
    "mail-message": _Reader.mail_message,
    "dns": _Reader.dns,
    "azure-resource": _Reader.azure_resource,
    "cloud-application": _Reader.cloud_application,
    "malware": _Reader.malware,
}

_PATH_SEP = re.compile(r"[\\/]")


def _program(command: str | None) -> str | None:
    """The program a command line runs: `"C:\\x\\a.exe" -k` -> `a.exe`."""
    if not command:
        return None
    text = command.strip()
    if text.startswith('"'):
        end = text.find('"', 1)
        first = text[1:end] if end > 0 else text[1:]
    else:
        first = text.split(None, 1)[0]
    return _PATH_SEP.split(first)[-1] or None


def _entities(draft: AlertDraft, items: list[Any]) -> None:
    graph = _Graph(items)
    reader = _Reader(draft, graph)
    for index, raw in enumerate(items):
        where = f"Entities[{index}]"
        if not isinstance(raw, dict):
            raise NormalizationError(
                f"field '{where}' must be an entity object, got {short(raw)}", format=FORMAT
            )
        reader.entity(raw, where, top=True)
    if reader.unmapped:
        by_count = sorted(reader.unmapped.items(), key=lambda kv: (-kv[1], kv[0]))
        draft.label("entities_unmapped", ",".join(f"{k}={n}" for k, n in by_count))
