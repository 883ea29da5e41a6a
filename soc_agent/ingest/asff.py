"""AWS Security Hub findings in the AWS Security Finding Format (ASFF), bare or in an envelope.

Shapes read: one finding (`SchemaVersion` "2018-10-08", `Id`, `ProductArn`,
`AwsAccountId`, ...); the EventBridge event (`source: aws.securityhub`,
`detail-type` "Security Hub Findings - Imported" or "... - Custom Action",
`detail.findings: [finding]`, which AWS documents as one finding per event); and
the `GetFindings` / `BatchImportFindings` body (`{"Findings": [...]}`, with or
without `NextToken`). `expand()` gives the payload layer the findings of a
`Findings` list, and of an EventBridge event holding more than one, so each
becomes its own record; `normalize()` refuses an unsplit multi-finding envelope.
The Security Hub v2 "Findings Imported V2" event carries OCSF, not ASFF, and is
left to other formats.

Mapping choices:

- Id: Security Hub names a finding by (`ProductArn`, `Id`). An `Id` that is an
  ARN names its product already and is the alert's source id alone; any other
  `Id` (third-party products) is prefixed with the `ProductArn`, so two products'
  ids cannot collide. Security Hub keeps `Id` across updates and bumps
  `UpdatedAt`: an update is the same alert (a redelivery), not a new one, because
  every workflow, note or count change, ours included, is re-sent as an
  "Imported" event. `UpdatedAt` is kept as a label.
- Time: `CreatedAt` (else `UpdatedAt`), ISO 8601, stored in UTC.
- Severity: `Severity.Label` (INFORMATIONAL..CRITICAL); else `Severity.Normalized`
  by AWS's own bands (0 informational, 1-39 low, 40-69 medium, 70-89 high,
  90-100 critical); else `FindingProviderFields.Severity.Label`; else MEDIUM with a
  `severity_raw` label, so an odd severity never hides an alert. `risk_score` is
  `Normalized` when it is within 0-100.
- ATT&CK: ASFF names no technique ids. A `Types` (and `FindingProviderFields.Types`)
  entry in the `TTPs` namespace gives its category as a tactic when the category
  is an ATT&CK tactic name (`TTPs/Initial Access/...` -> Initial Access); AWS
  aligns the TTPs categories with the ATT&CK matrix. Other namespaces (`Effects`,
  `Unusual Behaviors`, ...) give none. A GuardDuty finding forwarded by Security
  Hub embeds its GuardDuty type in `Types` (`TTPs/Initial
  Access/UnauthorizedAccess:EC2-SSHBruteForce`); that type is rebuilt
  (`UnauthorizedAccess:EC2/SSHBruteForce`) and becomes the rule, and its
  techniques and threat purpose come from the same table as the `guardduty`
  format's. `ProductFields` and `UserDefinedFields` are never read for ATT&CK
  ids (AWS documents no such keys); user-defined fields become
  `user_defined.<name>` labels (the first 20).
- Entities, by `Resources[].Type`, role from `ResourceRole` (else GuardDuty's
  `aws/guardduty/service/resourceRole` product field, else target):
  `AwsEc2Instance` -> host named by its instance id (alias `aws_instance_id`),
  its `IpV4Addresses`/`IpV6Addresses` -> ip; `AwsIamAccessKey` -> user (actor,
  `PrincipalName`, alias `aws_principal_id`, access key id as attribute) and the
  key as a cloud_resource (target); `AwsIamUser` -> user (`UserName`, alias
  `aws_user_id`); every other type -> cloud_resource valued by the resource `Id`.
  `Network` (retired, still sent): `Source*` -> source, `Destination*` ->
  destination ip/domain. `Action`: the remote IP of an INBOUND network
  connection, an API call and a port probe is the source, of an OUTBOUND
  connection the destination; a DNS request's domain is the destination; a
  probed local IP is the target. GuardDuty findings that carry no `Action` give
  the same IPs in their flattened product fields
  (`aws/guardduty/service/action/.../remoteIpDetails/ipAddressV4`), read alike.
  `Process` -> process; `ThreatIntelIndicators` -> ip/domain/url/email/file_hash/
  process by `Type`; `Threats[].FilePaths[].Hash` -> file_hash (algorithm by length).
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
    opt_number,
    opt_str,
    parse_time,
    req_str,
    severity_from_word,
    tactic_name,
)
from soc_agent.ingest.guardduty_attack import techniques_for
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "SCHEMA_VERSION", "expand", "matches", "normalize"]

FORMAT = "asff"
SCHEMA_VERSION = "2018-10-08"
_SOURCE = "aws.securityhub"
_DETAIL_TYPES = ("Security Hub Findings - Imported", "Security Hub Findings - Custom Action")
_LABELS = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_INSTANCE_ID = re.compile(r"(?:^|:instance/)(i-[0-9a-f]{8,17})$")
_ACCESS_KEY_PREFIX = "AWS::IAM::AccessKey:"
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_GD_FIELDS = "aws/guardduty/service/"
_MAX_USER_FIELDS = 20
_INDICATORS: dict[str, tuple[EntityType, str | None]] = {
    "IPV4_ADDRESS": (EntityType.IP, None),
    "IPV6_ADDRESS": (EntityType.IP, None),
    "DOMAIN": (EntityType.DOMAIN, None),
    "URL": (EntityType.URL, None),
    "EMAIL_ADDRESS": (EntityType.EMAIL, None),
    "HASH_MD5": (EntityType.FILE_HASH, "md5"),
    "HASH_SHA1": (EntityType.FILE_HASH, "sha1"),
    "HASH_SHA256": (EntityType.FILE_HASH, "sha256"),
    "HASH_SHA512": (EntityType.FILE_HASH, "sha512"),
    "PROCESS": (EntityType.PROCESS, None),
}


# --- shape ---------------------------------------------------------------------------


def _is_finding(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("SchemaVersion") == SCHEMA_VERSION
        and "ProductArn" in doc
        and "AwsAccountId" in doc
    )


def _is_eventbridge(doc: dict[str, Any]) -> bool:
    return doc.get("source") == _SOURCE and doc.get("detail-type") in _DETAIL_TYPES


def _findings_body(doc: dict[str, Any]) -> list[Any] | None:
    """The `Findings` of a GetFindings/BatchImportFindings body whose first entry is ASFF."""
    findings = doc.get("Findings")
    if not isinstance(findings, list) or not set(doc) <= {"Findings", "NextToken"}:
        return None
    return findings if findings and _is_finding(findings[0]) else None


def matches(doc: dict[str, Any]) -> bool:
    return _is_finding(doc) or _is_eventbridge(doc) or _findings_body(doc) is not None


def expand(doc: dict[str, Any]) -> list[Any] | None:
    """The findings of a `Findings` body, or of an EventBridge event holding more than
    one, for the payload layer to normalise one by one; None for anything else."""
    body = _findings_body(doc)
    if body is not None:
        return body
    if _is_eventbridge(doc):
        findings = doc["detail"].get("findings") if isinstance(doc.get("detail"), dict) else None
        if isinstance(findings, list) and len(findings) > 1:
            return findings
    return None


def _finding(doc: dict[str, Any]) -> dict[str, Any]:
    f = FORMAT
    if _is_eventbridge(doc):
        detail = doc.get("detail")
        findings = detail.get("findings") if isinstance(detail, dict) else None
        if not isinstance(findings, list) or not findings:
            raise NormalizationError(
                "EventBridge envelope has no finding: 'detail.findings' is empty or missing",
                format=f,
            )
        if len(findings) > 1:
            raise NormalizationError(
                f"EventBridge envelope holds {len(findings)} findings; parse_payload splits them",
                format=f,
            )
        if not isinstance(findings[0], dict):
            raise NormalizationError("field 'detail.findings[0]' must be an object", format=f)
        return findings[0]
    body = _findings_body(doc)
    if body is not None:
        if len(body) > 1:
            raise NormalizationError(
                f"findings envelope holds {len(body)} entries; parse_payload splits them", format=f
            )
        finding: dict[str, Any] = body[0]
        return finding
    return doc


# --- typed reads ---------------------------------------------------------------------


def _obj(node: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise NormalizationError(f"field '{where}' must be an object", format=FORMAT)
    return value


def _objs(node: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = node.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NormalizationError(f"field '{where}' must be an array", format=FORMAT)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise NormalizationError(f"field '{where}[{i}]' must be an object", format=FORMAT)
    return value


def _strs(node: dict[str, Any], key: str, where: str) -> list[str]:
    value = node.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NormalizationError(f"field '{where}' must be an array", format=FORMAT)
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise NormalizationError(f"field '{where}[{i}]' must be a string", format=FORMAT)
        if item.strip():
            out.append(item.strip())
    return out


def _str(node: dict[str, Any], key: str, where: str) -> str | None:
    """A scalar as a stripped string (as `opt_str`), named `where` in the error; ASFF keys
    may hold `/` or `.` (ProductFields), so the key is read as is, not as a dotted path."""
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise NormalizationError(f"field '{where}' must be a string, got bool", format=FORMAT)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "value"
    raise NormalizationError(f"field '{where}' must be a string, got {kind}", format=FORMAT)


def _time_label(draft: AlertDraft, fd: dict[str, Any], key: str, label: str) -> None:
    if fd.get(key) is not None:
        draft.label(label, parse_time(fd[key], unit="iso", fmt=FORMAT, path=key).isoformat())


# --- severity, types ------------------------------------------------------------------


def _from_normalized(score: float) -> Severity:
    if score >= 90:
        return Severity.CRITICAL
    if score >= 70:
        return Severity.HIGH
    if score >= 40:
        return Severity.MEDIUM
    if score >= 1:
        return Severity.LOW
    return Severity.INFORMATIONAL


def _severity(draft: AlertDraft, fd: dict[str, Any]) -> None:
    """Label, else Normalized, else the provider's Label, else MEDIUM; an odd or missing
    value is kept as `severity_raw`."""
    severity = _obj(fd, "Severity", "Severity") or {}
    provider = _obj(fd, "FindingProviderFields", "FindingProviderFields") or {}
    provided = _obj(provider, "Severity", "FindingProviderFields.Severity") or {}
    label = _str(severity, "Label", "Severity.Label")
    normalized = opt_number(fd, "Severity.Normalized", FORMAT) if "Normalized" in severity else None
    fallback = _str(provided, "Label", "FindingProviderFields.Severity.Label")
    known = label is not None and label.upper() in _LABELS
    in_range = normalized is not None and 0 <= normalized <= 100
    draft.label("severity_original", _str(severity, "Original", "Severity.Original"))
    if known:
        draft.severity = severity_from_word(label)
    elif normalized is not None and in_range:
        draft.severity = _from_normalized(normalized)
    elif fallback is not None and fallback.upper() in _LABELS:
        draft.severity = severity_from_word(fallback)
    else:
        draft.severity = Severity.MEDIUM
        draft.label("severity_raw", label or normalized or fallback or "missing")
    if label is not None and not known:
        draft.label("severity_raw", label)
    if in_range:
        draft.risk_score = normalized
    elif normalized is not None:
        draft.label("severity_normalized_raw", normalized)


def _guardduty_type(finding_type: str) -> str | None:
    """`TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce` ->
    `UnauthorizedAccess:EC2/SSHBruteForce`; `TTPs/PenTest:IAMUser/KaliLinux` ->
    `PenTest:IAMUser/KaliLinux` (GuardDuty's ASFF type table)."""
    parts = finding_type.split("/")
    for i, part in enumerate(parts):
        if ":" not in part:
            continue
        rest = parts[i + 1 :]
        if rest:
            return "/".join([part, *rest])
        purpose, _, tail = part.partition(":")
        resource, dash, family = tail.partition("-")
        return f"{purpose}:{resource}/{family}" if dash and purpose and resource else part
    return None


def _types(draft: AlertDraft, fd: dict[str, Any], guardduty: bool) -> str | None:
    """Tactics from TTPs categories; the rebuilt GuardDuty type when the product is GuardDuty."""
    provider = _obj(fd, "FindingProviderFields", "FindingProviderFields") or {}
    types = _strs(fd, "Types", "Types")
    types += [t for t in _strs(provider, "Types", "FindingProviderFields.Types") if t not in types]
    draft.label("types", types[:10])
    gd_type: str | None = None
    for finding_type in types:
        namespace, _, rest = finding_type.partition("/")
        category = rest.split("/", 1)[0]
        if namespace.strip() == "TTPs" and ":" not in category:
            draft.tactic(tactic_name(category.strip()))
        if guardduty and gd_type is None:
            gd_type = _guardduty_type(finding_type)
    return gd_type


# --- normalize -----------------------------------------------------------------------


def _product(fd: dict[str, Any], product_arn: str) -> tuple[str, str, str | None]:
    """(vendor, product, product id) from CompanyName/ProductName, else the ProductArn."""
    fields = _obj(fd, "ProductFields", "ProductFields") or {}
    _, _, path = product_arn.partition(":product/")
    company_id, _, product_id = path.partition("/")
    company = _str(fd, "CompanyName", "CompanyName") or _str(
        fields, "aws/securityhub/CompanyName", "ProductFields.aws/securityhub/CompanyName"
    )
    product = _str(fd, "ProductName", "ProductName") or _str(
        fields, "aws/securityhub/ProductName", "ProductFields.aws/securityhub/ProductName"
    )
    vendor = "AWS" if company_id == "aws" else company or company_id or "unknown"
    return vendor, product or product_id or "Security Hub", product_id or None


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    fd = _finding(doc)
    finding_id = req_str(fd, "Id", f)
    product_arn = req_str(fd, "ProductArn", f)
    vendor, product, product_id = _product(fd, product_arn)
    draft = AlertDraft(
        format=f, vendor=vendor, product=product, original=doc, max_entities=max_entities
    )
    if finding_id.startswith("arn:"):
        draft.vendor_id = finding_id
    else:
        draft.vendor_id = f"{product_arn}/{finding_id}"
        draft.label("finding_id", finding_id)
    draft.title = req_str(fd, "Title", f)
    draft.description = opt_str(fd, "Description", f)
    generator = opt_str(fd, "GeneratorId", f)
    draft.rule_id = generator
    created = "CreatedAt" if fd.get("CreatedAt") is not None else "UpdatedAt"
    if fd.get(created) is None:
        raise NormalizationError("missing required field 'CreatedAt'", format=f)
    draft.created_at = parse_time(fd.get(created), unit="iso", fmt=f, path=created)
    _severity(draft, fd)

    guardduty = product_id == "guardduty" and product_arn.split(":")[2:3] == ["securityhub"]
    gd_type = _types(draft, fd, guardduty)
    fields = _obj(fd, "ProductFields", "ProductFields") or {}
    if gd_type:
        draft.rule_id = draft.rule_name = gd_type
        purpose = gd_type.split(":", 1)[0]
        draft.tactic(purpose)
        draft.techniques += techniques_for(gd_type)
        draft.label("guardduty_type", gd_type)
        draft.label("threat_purpose", purpose)
    gd_role = _str(fields, _GD_FIELDS + "resourceRole", "ProductFields.resourceRole")

    account = opt_str(fd, "AwsAccountId", f)
    region = opt_str(fd, "Region", f)
    ents = draft.entities
    for i, resource in enumerate(_objs(fd, "Resources", "Resources")):
        _resource(ents, resource, f"Resources[{i}]", gd_role, account)
    _network(draft, _obj(fd, "Network", "Network"))
    _action(draft, _obj(fd, "Action", "Action"))
    if guardduty:
        _guardduty_fields(draft, fields, gd_role)
    _process(ents, _obj(fd, "Process", "Process"))
    _indicators(ents, _objs(fd, "ThreatIntelIndicators", "ThreatIntelIndicators"))
    _threats(draft, _objs(fd, "Threats", "Threats"))
    _malware(draft, _objs(fd, "Malware", "Malware"))

    draft.label("product_arn", product_arn)
    draft.label("generator_id", generator)
    draft.label("account_id", account)
    draft.label("account_name", opt_str(fd, "AwsAccountName", f))
    draft.label("region", region)
    _time_label(draft, fd, "UpdatedAt", "updated_at")
    _time_label(draft, fd, "FirstObservedAt", "first_observed_at")
    _time_label(draft, fd, "LastObservedAt", "last_observed_at")
    workflow = _obj(fd, "Workflow", "Workflow") or {}
    draft.label("workflow_status", _str(workflow, "Status", "Workflow.Status"))
    draft.label("record_state", opt_str(fd, "RecordState", f))
    draft.label("verification_state", opt_str(fd, "VerificationState", f))
    draft.label("confidence", opt_str(fd, "Confidence", f))
    draft.label("criticality", opt_str(fd, "Criticality", f))
    draft.label("source_url", opt_str(fd, "SourceUrl", f))
    if fd.get("Sample") is True:
        draft.label("sample", "true")
    compliance = _obj(fd, "Compliance", "Compliance") or {}
    draft.label("compliance_status", _str(compliance, "Status", "Compliance.Status"))
    draft.label(
        "security_control_id",
        _str(compliance, "SecurityControlId", "Compliance.SecurityControlId"),
    )
    draft.label("guardduty_count", _str(fields, _GD_FIELDS + "count", "ProductFields.count"))
    _user_fields(draft, _obj(fd, "UserDefinedFields", "UserDefinedFields"))
    return draft.build(received_at)


# --- entities ------------------------------------------------------------------------


def _cloud(ents: EntitySet, value: Any, role: str, kind: str | None, **attributes: Any) -> None:
    ents.add(
        EntityType.CLOUD_RESOURCE, value, role, provider="aws", resource_type=kind, **attributes
    )


def _resource(
    ents: EntitySet, res: dict[str, Any], where: str, gd_role: str | None, account: str | None
) -> None:
    kind = _str(res, "Type", f"{where}.Type")
    rid = _str(res, "Id", f"{where}.Id")
    region = _str(res, "Region", f"{where}.Region")
    role = (_str(res, "ResourceRole", f"{where}.ResourceRole") or gd_role or "target").lower()
    details = _obj(res, "Details", f"{where}.Details") or {}
    if kind == "AwsEc2Instance":
        ec2 = _obj(details, "AwsEc2Instance", f"{where}.Details.AwsEc2Instance") or {}
        _ec2(ents, ec2, f"{where}.Details.AwsEc2Instance", rid, role, region, account)
    elif kind == "AwsIamAccessKey":
        key = _obj(details, "AwsIamAccessKey", f"{where}.Details.AwsIamAccessKey") or {}
        _access_key(ents, key, f"{where}.Details.AwsIamAccessKey", rid, account)
    elif kind == "AwsIamUser":
        user = _obj(details, "AwsIamUser", f"{where}.Details.AwsIamUser") or {}
        name = _str(user, "UserName", f"{where}.Details.AwsIamUser.UserName")
        if name is None:
            _cloud(ents, rid, role, kind, region=region, account=account)
            return
        ents.add_user(
            role,
            account=name,
            aws_user_id=_str(user, "UserId", f"{where}.Details.AwsIamUser.UserId"),
            attributes={"arn": rid, "aws_account": account},
        )
    else:
        _cloud(ents, rid, role, kind, region=region, account=account)


def _ec2(
    ents: EntitySet,
    ec2: dict[str, Any],
    where: str,
    rid: str | None,
    role: str,
    region: str | None,
    account: str | None,
) -> None:
    ips = _strs(ec2, "IpV4Addresses", f"{where}.IpV4Addresses")
    ips += _strs(ec2, "IpV6Addresses", f"{where}.IpV6Addresses")
    found = _INSTANCE_ID.search(rid or "")
    if found is None:  # not an instance id we can name a host by: keep the resource itself
        _cloud(ents, rid, role, "AwsEc2Instance", region=region, account=account)
        instance = None
    else:
        instance = found.group(1)
        ents.add_host(
            instance,
            role,
            ids={"aws_instance_id": instance},
            arn=rid,
            region=region,
            aws_account=account,
            instance_type=_str(ec2, "Type", f"{where}.Type"),
            image_id=_str(ec2, "ImageId", f"{where}.ImageId"),
            vpc_id=_str(ec2, "VpcId", f"{where}.VpcId"),
            subnet_id=_str(ec2, "SubnetId", f"{where}.SubnetId"),
            ips=",".join(ips) or None,
        )
    for ip in ips:
        ents.add(EntityType.IP, ip, role, instance_id=instance)


def _access_key(
    ents: EntitySet, key: dict[str, Any], where: str, rid: str | None, account: str | None
) -> None:
    key_id = _str(key, "AccessKeyId", f"{where}.AccessKeyId")
    if key_id is None and rid is not None and rid.startswith(_ACCESS_KEY_PREFIX):
        key_id = rid[len(_ACCESS_KEY_PREFIX) :] or None  # GuardDuty's resource Id form
    # `UserName` is the deprecated spelling of `PrincipalName`.
    name = _str(key, "PrincipalName", f"{where}.PrincipalName") or _str(
        key, "UserName", f"{where}.UserName"
    )
    principal_id = _str(key, "PrincipalId", f"{where}.PrincipalId")
    principal_type = _str(key, "PrincipalType", f"{where}.PrincipalType")
    key_account = _str(key, "AccountId", f"{where}.AccountId") or account
    # The principal made the calls (as the guardduty format's accessKeyDetails user);
    # the key itself is what a responder disables or rotates.
    ents.add_user(
        "actor",
        account=name,
        aws_principal_id=principal_id,
        attributes={
            "access_key_id": key_id,
            "principal_type": principal_type,
            "aws_account": key_account,
        },
    )
    _cloud(
        ents,
        key_id or rid,
        "target",
        "AwsIamAccessKey",
        principal_id=principal_id,
        user_name=name,
        principal_type=principal_type,
        status=_str(key, "Status", f"{where}.Status"),
        account=key_account,
    )


def _network(draft: AlertDraft, net: dict[str, Any] | None) -> None:
    if net is None:
        return
    ents = draft.entities
    for side, role in (("Source", "source"), ("Destination", "destination")):
        for key in (f"{side}IpV4", f"{side}IpV6"):
            ents.add(EntityType.IP, _str(net, key, f"Network.{key}"), role)
        ents.add(EntityType.DOMAIN, _str(net, f"{side}Domain", f"Network.{side}Domain"), role)
        draft.label(f"{role}_port", _str(net, f"{side}Port", f"Network.{side}Port"))
    draft.label("network_direction", _str(net, "Direction", "Network.Direction"))
    draft.label("network_protocol", _str(net, "Protocol", "Network.Protocol"))


def _remote_ip(ents: EntitySet, node: dict[str, Any], where: str, role: str) -> None:
    remote = _obj(node, "RemoteIpDetails", f"{where}.RemoteIpDetails")
    if remote is None:
        return
    country = _obj(remote, "Country", f"{where}.RemoteIpDetails.Country") or {}
    org = _obj(remote, "Organization", f"{where}.RemoteIpDetails.Organization") or {}
    ents.add(
        EntityType.IP,
        _str(remote, "IpAddressV4", f"{where}.RemoteIpDetails.IpAddressV4"),
        role,
        country=_str(country, "CountryName", f"{where}.RemoteIpDetails.Country.CountryName"),
        asn_org=_str(org, "AsnOrg", f"{where}.RemoteIpDetails.Organization.AsnOrg"),
    )


def _action(draft: AlertDraft, action: dict[str, Any] | None) -> None:
    if action is None:
        return
    ents = draft.entities
    draft.label("action_type", _str(action, "ActionType", "Action.ActionType"))
    where = "Action.NetworkConnectionAction"
    network = _obj(action, "NetworkConnectionAction", where)
    if network is not None:
        direction = _str(network, "ConnectionDirection", f"{where}.ConnectionDirection")
        outbound = (direction or "").upper() == "OUTBOUND"
        _remote_ip(ents, network, where, "destination" if outbound else "source")
        draft.label("connection_direction", direction)
        port = _obj(network, "RemotePortDetails", f"{where}.RemotePortDetails") or {}
        draft.label("remote_port", _str(port, "Port", f"{where}.RemotePortDetails.Port"))
        draft.label("protocol", _str(network, "Protocol", f"{where}.Protocol"))
    where = "Action.AwsApiCallAction"
    api = _obj(action, "AwsApiCallAction", where)
    if api is not None:
        _remote_ip(ents, api, where, "source")
        domain = _obj(api, "DomainDetails", f"{where}.DomainDetails") or {}
        ents.add(
            EntityType.DOMAIN, _str(domain, "Domain", f"{where}.DomainDetails.Domain"), "source"
        )
        draft.label("api", _str(api, "Api", f"{where}.Api"))
        draft.label("api_service", _str(api, "ServiceName", f"{where}.ServiceName"))
        draft.label("caller_type", _str(api, "CallerType", f"{where}.CallerType"))
    dns = _obj(action, "DnsRequestAction", "Action.DnsRequestAction") or {}
    ents.add(
        EntityType.DOMAIN, _str(dns, "Domain", "Action.DnsRequestAction.Domain"), "destination"
    )
    where = "Action.PortProbeAction"
    probe = _obj(action, "PortProbeAction", where) or {}
    for i, detail in enumerate(_objs(probe, "PortProbeDetails", f"{where}.PortProbeDetails")):
        at = f"{where}.PortProbeDetails[{i}]"
        _remote_ip(ents, detail, at, "source")
        local = _obj(detail, "LocalIpDetails", f"{at}.LocalIpDetails") or {}
        ents.add(
            EntityType.IP, _str(local, "IpAddressV4", f"{at}.LocalIpDetails.IpAddressV4"), "target"
        )


def _guardduty_fields(draft: AlertDraft, fields: dict[str, Any], gd_role: str | None) -> None:
    """GuardDuty's flattened `service` fields (`aws/guardduty/service/...`): the remote and
    local IPs of a finding that carries no `Action` object."""
    prefix = _GD_FIELDS + "action/"
    direction = _str(
        fields,
        prefix + "networkConnectionAction/connectionDirection",
        "ProductFields.connectionDirection",
    )
    draft.label("resource_role", gd_role)
    draft.label("action_type", _str(fields, prefix + "actionType", "ProductFields.actionType"))
    draft.label("connection_direction", direction)
    for key in fields:
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        if key.endswith("remoteIpDetails/ipAddressV4"):
            outbound = "networkConnectionAction" in key and (direction or "").upper() == "OUTBOUND"
            role = "destination" if outbound else "source"
            draft.entities.add(EntityType.IP, _str(fields, key, f"ProductFields.{key}"), role)
        elif key.endswith("localIpDetails/ipAddressV4"):
            value = _str(fields, key, f"ProductFields.{key}")
            draft.entities.add(EntityType.IP, value, (gd_role or "target").lower())


def _process(ents: EntitySet, proc: dict[str, Any] | None) -> None:
    if proc is None:
        return
    path = _str(proc, "Path", "Process.Path")
    name = _str(proc, "Name", "Process.Name") or (
        path.replace("\\", "/").rsplit("/", 1)[-1] if path else None
    )
    ents.add(
        EntityType.PROCESS,
        name,
        None,
        pid=_str(proc, "Pid", "Process.Pid"),
        parent_pid=_str(proc, "ParentPid", "Process.ParentPid"),
        path=path,
    )


def _indicators(ents: EntitySet, indicators: list[dict[str, Any]]) -> None:
    for i, indicator in enumerate(indicators):
        where = f"ThreatIntelIndicators[{i}]"
        kind = (_str(indicator, "Type", f"{where}.Type") or "").upper()
        value = _str(indicator, "Value", f"{where}.Value")
        if kind not in _INDICATORS:
            continue  # MUTEX, or a type ASFF does not define
        entity_type, algorithm = _INDICATORS[kind]
        attributes = {
            "threat_intel_category": _str(indicator, "Category", f"{where}.Category"),
            "threat_intel_source": _str(indicator, "Source", f"{where}.Source"),
        }
        if algorithm is not None:
            attributes["algorithm"] = algorithm
        ents.add(entity_type, value, None, **attributes)


def _threats(draft: AlertDraft, threats: list[dict[str, Any]]) -> None:
    names: list[str] = []
    for i, threat in enumerate(threats):
        where = f"Threats[{i}]"
        name = _str(threat, "Name", f"{where}.Name")
        if name and name not in names:
            names.append(name)
        for j, entry in enumerate(_objs(threat, "FilePaths", f"{where}.FilePaths")):
            at = f"{where}.FilePaths[{j}]"
            digest = _str(entry, "Hash", f"{at}.Hash")
            if digest is None:
                continue
            algorithm = _HASH_LENGTHS.get(len(digest)) if _HEX.match(digest) else None
            if algorithm is None:
                # Not a hex digest of a known length (ASFF's own example holds "sha256").
                draft.entities.dropped += 1
                continue
            draft.entities.add(
                EntityType.FILE_HASH,
                digest,
                None,
                algorithm=algorithm,
                path=_str(entry, "FilePath", f"{at}.FilePath"),
                file_name=_str(entry, "FileName", f"{at}.FileName"),
                resource_id=_str(entry, "ResourceId", f"{at}.ResourceId"),
                threat=name,
            )
    draft.label("threats", names[:10])


def _malware(draft: AlertDraft, malware: list[dict[str, Any]]) -> None:
    names: list[str] = []
    kinds: list[str] = []
    for i, item in enumerate(malware):
        name = _str(item, "Name", f"Malware[{i}].Name")
        kind = _str(item, "Type", f"Malware[{i}].Type")
        if name and name not in names:
            names.append(name)
        if kind and kind not in kinds:
            kinds.append(kind)
    draft.label("malware", names[:10])
    draft.label("malware_type", kinds[:10])


def _user_fields(draft: AlertDraft, fields: dict[str, Any] | None) -> None:
    """UserDefinedFields (a string map analysts set) as `user_defined.<name>` labels."""
    if fields is None:
        return
    for key in list(fields)[:_MAX_USER_FIELDS]:
        draft.label(f"user_defined.{key}", _str(fields, key, f"UserDefinedFields.{key}"))
