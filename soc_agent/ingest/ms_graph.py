"""Microsoft Graph security alerts (alerts_v2: Defender XDR, Sentinel, ...).

Entities come from `evidence[]`, keyed by `@odata.type`; the evidence `roles`
(attacker, compromised, source, destination, ...) give the entity role.
`unknown` severity maps to MEDIUM so an unknown severity never hides an alert.
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
    opt_str,
    parse_time,
    req_str,
    severity_from_word,
)
from soc_agent.models import Alert, EntityType, Severity

__all__ = ["FORMAT", "matches", "normalize"]

FORMAT = "ms_graph"
_PREFIX = "#microsoft.graph.security."
_ROLES = {
    "attacker": "attacker",
    "commandandcontrol": "attacker",
    "compromised": "target",
    "attacked": "target",
    "source": "source",
    "destination": "destination",
    "policyviolator": "actor",
}


def matches(doc: dict[str, Any]) -> bool:
    odata = doc.get("@odata.type")
    if isinstance(odata, str) and odata.lower() == "#microsoft.graph.security.alert":
        return True
    return (
        "id" in doc
        and "createdDateTime" in doc
        and ("providerAlertId" in doc or "serviceSource" in doc or "detectionSource" in doc)
    )


def normalize(
    doc: dict[str, Any], *, received_at: datetime | None = None, max_entities: int = MAX_ENTITIES
) -> Alert:
    f = FORMAT
    draft = AlertDraft(
        format=f,
        vendor="Microsoft",
        product=opt_str(doc, "serviceSource", f) or "Microsoft Graph Security",
        original=doc,
        max_entities=max_entities,
    )
    draft.vendor_id = req_str(doc, "id", f)
    draft.title = opt_str(doc, "title", f)
    draft.description = opt_str(doc, "description", f)
    draft.rule_id = opt_str(doc, "detectorId", f)
    draft.rule_name = draft.title
    word = opt_str(doc, "severity", f)
    draft.severity = severity_from_word(word)
    if draft.severity is None:
        if word is not None and word.lower() not in ("unknown", "unknownfuturevalue"):
            raise NormalizationError(
                f"field 'severity' must be informational|low|medium|high|unknown, got {word!r}",
                format=f,
            )
        draft.severity = Severity.MEDIUM
        draft.label("severity_raw", word or "missing")
    draft.created_at = parse_time(
        get(doc, "createdDateTime"), unit="iso", fmt=f, path="createdDateTime"
    )
    draft.techniques += [t for t in as_list(doc.get("mitreTechniques")) if isinstance(t, str)]
    category = opt_str(doc, "category", f)
    draft.tactic(category)
    # Every evidence record is read: past the entity cap its entities are only counted.
    for evidence in as_list(doc.get("evidence")):
        if isinstance(evidence, dict):
            _evidence(draft.entities, evidence)

    for key in (
        "providerAlertId",
        "incidentId",
        "status",
        "classification",
        "determination",
        "serviceSource",
        "detectionSource",
        "tenantId",
        "alertWebUrl",
        "threatFamilyName",
        "actorDisplayName",
    ):
        draft.label(key, opt_str(doc, key, f))
    draft.label("category", category)
    return draft.build(received_at)


def _role(evidence: dict[str, Any]) -> str | None:
    for raw in as_list(evidence.get("roles")):
        if isinstance(raw, str) and raw.lower() in _ROLES:
            return _ROLES[raw.lower()]
    return None


def _user(ents: EntitySet, account: Any, role: str | None) -> None:
    if not isinstance(account, dict):
        return
    # Every name is kept (models.names): correlation matches on any, and Entra
    # containment gets the UPN or object id it needs.
    upn = account.get("userPrincipalName")
    ents.add_user(
        role,
        account=account.get("accountName"),
        upn=upn,
        domain=account.get("domainName"),
        object_id=account.get("azureAdUserId"),
        sid=account.get("userSid"),
        attributes={
            "upn": upn,
            "sid": account.get("userSid"),
            "azure_ad_user_id": account.get("azureAdUserId"),
        },
    )


def _file(ents: EntitySet, details: Any, role: str | None) -> None:
    if not isinstance(details, dict):
        return
    for algo in ("sha256", "sha1", "md5"):
        ents.add(
            EntityType.FILE_HASH,
            details.get(algo),
            role,
            algorithm=algo,
            file_name=details.get("fileName"),
            path=details.get("filePath"),
        )


def _evidence(ents: EntitySet, ev: dict[str, Any]) -> None:
    odata = ev.get("@odata.type")
    kind = odata[len(_PREFIX) :] if isinstance(odata, str) and odata.startswith(_PREFIX) else ""
    role = _role(ev)
    if kind != "analyzedMessageEvidence":
        # Mail-related evidence other than the message itself (mail clusters, URLs seen in
        # mail) names the sending server too.
        ents.add(EntityType.IP, ev.get("senderIp"), "source")
    if kind == "deviceEvidence":
        ents.add_host(
            ev.get("deviceDnsName") or ev.get("hostName"),
            role,
            ids={
                "mde_device_id": ev.get("mdeDeviceId"),
                "entra_device_id": ev.get("azureAdDeviceId"),
            },
            mde_device_id=ev.get("mdeDeviceId"),
            azure_ad_device_id=ev.get("azureAdDeviceId"),
            os=ev.get("osPlatform"),
        )
        for user in as_list(ev.get("loggedOnUsers")):
            if isinstance(user, dict):
                ents.add_user(account=user.get("accountName"), domain=user.get("domainName"))
    elif kind == "userEvidence":
        _user(ents, ev.get("userAccount"), role)
    elif kind == "ipEvidence":
        ents.add(EntityType.IP, ev.get("ipAddress"), role, country=ev.get("countryLetterCode"))
    elif kind == "urlEvidence":
        ents.add(EntityType.URL, ev.get("url"), role)
    elif kind == "fileEvidence":
        _file(ents, ev.get("fileDetails"), role)
    elif kind == "processEvidence":
        image = ev.get("imageFile")
        ents.add(
            EntityType.PROCESS,
            get(image, "fileName"),
            role,
            pid=ev.get("processId"),
            command_line=ev.get("processCommandLine"),
            path=get(image, "filePath"),
        )
        _file(ents, image, role)
        _user(ents, ev.get("userAccount"), "actor")
    elif kind == "mailboxEvidence":
        ents.add(EntityType.EMAIL, ev.get("primaryAddress"), role)
        _user(ents, ev.get("userAccount"), role)
    elif kind == "analyzedMessageEvidence":
        message = {
            "subject": ev.get("subject"),
            "message_id": ev.get("internetMessageId"),
            "network_message_id": ev.get("networkMessageId"),
        }
        ents.add(EntityType.IP, ev.get("senderIp"), "source")
        # P1 is the envelope (MAIL FROM) sender, P2 the From: header one; both are senders.
        ents.add(EntityType.EMAIL, get(ev, "p1Sender.emailAddress"), "sender", **message)
        ents.add(EntityType.EMAIL, get(ev, "p2Sender.emailAddress"), "sender", **message)
        ents.add(EntityType.EMAIL, ev.get("recipientEmailAddress"), "recipient", **message)
        ents.add(EntityType.URL, ev.get("urls"), role)
    elif kind in ("azureResourceEvidence", "amazonResourceEvidence", "googleCloudResourceEvidence"):
        ents.add(
            EntityType.CLOUD_RESOURCE,
            ev.get("resourceId") or ev.get("amazonResourceId") or ev.get("fullResourceName"),
            role,
            resource_type=ev.get("resourceType"),
        )
    elif kind == "cloudApplicationEvidence":
        ents.add(EntityType.CLOUD_RESOURCE, ev.get("displayName"), role, app_id=ev.get("appId"))
