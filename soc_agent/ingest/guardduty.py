"""AWS GuardDuty findings, bare or in an envelope.

The same finding arrives PascalCase (`GetFindings` through the AWS CLI/SDK:
`Id`, `Resource.InstanceDetails`) or camelCase (EventBridge `detail`, S3 export:
`id`, `resource.instanceDetails`). Reads go through a view whose keys start
lower-case, so one code path serves both. Envelopes: EventBridge
(`detail-type: "GuardDuty Finding"`, `detail: {...}`) and the `GetFindings`
response (`{"Findings": [...]}`, split into one record per finding by the
payload layer; an empty one is a dead letter).

Severity keeps AWS's own bands: 9.0+ critical, 7.0-8.9 high, 4.0-6.9 medium,
below low; `risk_score` is the AWS value times ten. The threat purpose becomes a
tactic when it is an ATT&CK tactic name; techniques come from our own table of
finding types (`guardduty_attack`), since GuardDuty names none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from soc_agent.errors import NormalizationError
from soc_agent.ingest._fields import (
    MAX_ENTITIES,
    AlertDraft,
    EntitySet,
    as_list,
    get,
    opt_number,
    opt_str,
    parse_time,
    req_str,
)
from soc_agent.ingest.guardduty_attack import techniques_for
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "expand", "matches", "normalize"]

FORMAT = "guardduty"
_MAX_DEPTH = 40


def _lower_keys(node: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return node
    if isinstance(node, dict):
        return {
            (k[:1].lower() + k[1:] if isinstance(k, str) else k): _lower_keys(v, depth + 1)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_lower_keys(v, depth + 1) for v in node]
    return node


def _findings_list(doc: dict[str, Any]) -> list[Any] | None:
    if len(doc) == 1:
        value = doc.get("findings", doc.get("Findings"))
        if isinstance(value, list):
            return value
    return None


def expand(doc: dict[str, Any]) -> list[Any] | None:
    """The findings of a `GetFindings` response with at least one finding, else None."""
    findings = _findings_list(doc)
    return findings if findings else None


def _is_eventbridge(doc: dict[str, Any]) -> bool:
    return doc.get("detail-type") == "GuardDuty Finding" or doc.get("source") == "aws.guardduty"


def matches(doc: dict[str, Any]) -> bool:
    if _is_eventbridge(doc) or _findings_list(doc) is not None:
        return True
    keys = {k[:1].lower() + k[1:] for k in doc if isinstance(k, str)}
    return {"schemaVersion", "type", "accountId"} <= keys and bool({"arn", "service"} & keys)


def _finding(doc: dict[str, Any]) -> dict[str, Any]:
    if _is_eventbridge(doc):
        detail = doc.get("detail")
        if not isinstance(detail, dict) or not detail:
            raise NormalizationError(
                "EventBridge envelope has no finding: 'detail' is empty or missing", format=FORMAT
            )
        return detail
    findings = _findings_list(doc)
    if findings is not None:
        if not findings:
            raise NormalizationError("empty findings envelope: no finding in it", format=FORMAT)
        if len(findings) > 1 or not isinstance(findings[0], dict):
            raise NormalizationError(
                f"findings envelope holds {len(findings)} entries; parse_payload splits them",
                format=FORMAT,
            )
        return findings[0]
    return doc


# INBOUND: the remote end connected to the instance, so the instance is the destination.
_LOCAL_ROLE = {"INBOUND": "destination", "OUTBOUND": "source"}


def _severity_for(score: float) -> Severity:
    if score >= 9:
        return Severity.CRITICAL
    if score >= 7:
        return Severity.HIGH
    if score >= 4:
        return Severity.MEDIUM
    return Severity.LOW


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    fd = _lower_keys(_finding(doc))
    draft = AlertDraft(
        format=f, vendor="AWS", product="GuardDuty", original=doc, max_entities=max_entities
    )
    draft.vendor_id = req_str(fd, "id", f)
    finding_type = opt_str(fd, "type", f)
    draft.title = opt_str(fd, "title", f) or finding_type
    draft.description = opt_str(fd, "description", f)
    draft.rule_id = draft.rule_name = finding_type
    score = opt_number(fd, "severity", f)
    if score is None:
        raise NormalizationError("missing required field 'severity'", format=f)
    draft.severity = _severity_for(score)
    draft.risk_score = min(max(score * 10, 0.0), 100.0)
    for path in ("createdAt", "updatedAt"):
        if get(fd, path) is not None:
            draft.created_at = parse_time(get(fd, path), unit="auto", fmt=f, path=path)
            break
    if finding_type:
        purpose = finding_type.split(":", 1)[0]
        draft.tactic(purpose)
        draft.label("threat_purpose", purpose)
        draft.techniques += techniques_for(finding_type)

    account, region = opt_str(fd, "accountId", f), opt_str(fd, "region", f)
    role = (opt_str(fd, "service.resourceRole", f) or "target").lower()
    # In a network finding the instance's own addresses are one end of the connection.
    direction = opt_str(fd, "service.action.networkConnectionAction.connectionDirection", f)
    local = _LOCAL_ROLE.get((direction or "").upper(), role)
    _resource(draft.entities, fd.get("resource"), role, account, region, local)
    _action(draft, get(fd, "service.action"), local)
    _runtime(draft.entities, get(fd, "service.runtimeDetails"), role)

    draft.label("account_id", account)
    draft.label("region", region)
    draft.label("arn", opt_str(fd, "arn", f))
    draft.label("resource_type", opt_str(fd, "resource.resourceType", f))
    draft.label("resource_role", role)
    draft.label("updated_at", opt_str(fd, "updatedAt", f))
    draft.label("count", opt_str(fd, "service.count", f))
    draft.label("archived", get(fd, "service.archived"))
    draft.label("feature", opt_str(fd, "service.featureName", f))
    return draft.build(received_at)


def _cloud(
    ents: EntitySet, value: Any, role: str, kind: str, account: str | None, region: str | None
) -> None:
    ents.add(
        EntityType.CLOUD_RESOURCE,
        value,
        role,
        provider="aws",
        resource_type=kind,
        account=account,
        region=region,
    )


def _resource(
    ents: EntitySet,
    res: Any,
    role: str,
    account: str | None,
    region: str | None,
    local_role: str,
) -> None:
    if not isinstance(res, dict):
        return
    instance = res.get("instanceDetails")
    if isinstance(instance, dict):
        instance_id = instance.get("instanceId")
        _cloud(ents, instance_id, role, "AWS::EC2::Instance", account, region)
        for nic in as_list(instance.get("networkInterfaces")):
            if not isinstance(nic, dict):
                continue
            ents.add(EntityType.IP, nic.get("privateIpAddress"), local_role)
            ents.add(EntityType.IP, nic.get("publicIp"), local_role)
            ents.add_host(nic.get("privateDnsName"), role, ids={"aws_instance_id": instance_id})
    key = res.get("accessKeyDetails")
    if isinstance(key, dict):
        ents.add_user(
            "actor",
            account=key.get("userName"),
            aws_principal_id=key.get("principalId"),
            attributes={
                "access_key_id": key.get("accessKeyId"),
                "principal_id": key.get("principalId"),
                "user_type": key.get("userType"),
            },
        )
        # The key itself is what a responder disables or rotates, whoever holds it.
        ents.add(
            EntityType.CLOUD_RESOURCE,
            key.get("accessKeyId"),
            "target",
            provider="aws",
            resource_type="AWS::IAM::AccessKey",
            kind="access_key",
            principal_id=key.get("principalId"),
            user_name=key.get("userName"),
            user_type=key.get("userType"),
            account=account,
        )
    ents.add(EntityType.USER, get(res, "kubernetesDetails.kubernetesUserDetails.username"), "actor")
    eks = res.get("eksClusterDetails")
    if isinstance(eks, dict):
        _cloud(ents, eks.get("arn") or eks.get("name"), role, "AWS::EKS::Cluster", account, region)
    rds = res.get("rdsDbInstanceDetails")
    if isinstance(rds, dict):
        arn = rds.get("dbInstanceArn") or rds.get("dbInstanceIdentifier")
        _cloud(ents, arn, role, "AWS::RDS::DBInstance", account, region)
    ents.add(EntityType.USER, get(res, "rdsDbUserDetails.user"), "actor")
    for bucket in as_list(res.get("s3BucketDetails")):
        if isinstance(bucket, dict):
            arn = bucket.get("arn") or bucket.get("name")
            _cloud(ents, arn, role, "AWS::S3::Bucket", account, region)
    _cloud(ents, get(res, "ecsClusterDetails.arn"), role, "AWS::ECS::Cluster", account, region)
    _cloud(
        ents, get(res, "lambdaDetails.functionArn"), role, "AWS::Lambda::Function", account, region
    )


def _remote_ip(ents: EntitySet, action: Any, role: str) -> None:
    if isinstance(action, dict):
        ents.add(EntityType.IP, get(action, "remoteIpDetails.ipAddressV4"), role)
        ents.add(EntityType.IP, get(action, "remoteIpDetails.ipAddressV6"), role)


def _action(draft: AlertDraft, action: Any, resource_role: str) -> None:
    if not isinstance(action, dict):
        return
    ents = draft.entities
    draft.label("action_type", action.get("actionType"))
    network = action.get("networkConnectionAction")
    if isinstance(network, dict):
        inbound = str(network.get("connectionDirection", "")).upper() == "INBOUND"
        _remote_ip(ents, network, "source" if inbound else "destination")
        ents.add(EntityType.IP, get(network, "localIpDetails.ipAddressV4"), resource_role)
        draft.label("connection_direction", network.get("connectionDirection"))
        draft.label("remote_port", get(network, "remotePortDetails.port"))
    api = action.get("awsApiCallAction")
    if isinstance(api, dict):
        _remote_ip(ents, api, "source")
        ents.add(EntityType.DOMAIN, get(api, "domainDetails.domain"), "source")
        draft.label("api", api.get("api"))
        draft.label("api_service", api.get("serviceName"))
        draft.label("caller_type", api.get("callerType"))
    ents.add(EntityType.DOMAIN, get(action, "dnsRequestAction.domain"), "destination")
    for probe in as_list(get(action, "portProbeAction.portProbeDetails")):
        _remote_ip(ents, probe, "source")
    k8s = action.get("kubernetesApiCallAction")
    if isinstance(k8s, dict):
        _remote_ip(ents, k8s, "source")
        ents.add(EntityType.IP, k8s.get("sourceIPs"), "source")
    _remote_ip(ents, action.get("rdsLoginAttemptAction"), "source")


def _runtime(ents: EntitySet, runtime: Any, role: str) -> None:
    process = get(runtime, "process")
    if not isinstance(process, dict):
        return
    ents.add(
        EntityType.PROCESS,
        process.get("name"),
        role,
        pid=process.get("pid"),
        executable=process.get("executablePath"),
    )
    ents.add(
        EntityType.FILE_HASH,
        process.get("executableSha256"),
        algorithm="sha256",
        path=process.get("executablePath"),
    )
