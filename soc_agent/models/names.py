"""Who an entity is: the canonical value and aliases of users and hosts, by a fixed rule.

One person appears as `mokafor` (sAMAccountName) in domain `CORP`, as
`m.okafor@corp.example.com` (UPN), as an Entra object id and as a SID; one
machine as `ws-0042`, `ws-0042.corp.example.com` and an EDR device id. Every
normalizer hands the names it found to `user_names` or `host_names`, which pick
the entity's value and keep every name as an alias by kind:

- **user** value: the UPN when the record names one, else the account name
  (a `DOMAIN\\name` account is split into `sam` and `nt_account`), else the
  email address, else the object id, else the SID. Any `name@domain` account
  name is taken as a UPN. Only domain SIDs (`S-1-5-21-...`) are kept: a
  well-known SID such as LocalSystem's is the same on every machine.
- **host** value: the name the record reports (lower-case). A dotted name is
  also the `fqdn` alias and its first label the `hostname` alias; device ids
  (`mde_device_id`, `falcon_aid`, ...) are aliases too. IP addresses seen on a
  host stay attributes: they change hands.

Correlation matches two entities of one type when any of their names is equal,
and a containment connector asks for the kind it needs (`ALIAS_PREFERENCE`).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["USER_ALIAS_KINDS", "host_names", "split_account", "user_names"]

USER_ALIAS_KINDS = ("upn", "sam", "nt_account", "email", "object_id", "sid")
# Only a domain or machine account SID names one person: well-known SIDs (S-1-5-18,
# LocalSystem) are the same on every machine and would join unrelated alerts.
_PERSONAL_SID = re.compile(r"^S-1-5-21(?:-\d+){3,4}$", re.IGNORECASE)


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text or None


def split_account(name: str) -> tuple[str | None, str]:
    """`CORP\\mokafor` -> (`CORP`, `mokafor`); a name without a backslash has no domain."""
    domain, sep, account = name.rpartition("\\")
    if sep and domain.strip() and account.strip():
        return domain.strip(), account.strip()
    return None, name


def user_names(
    *,
    account: Any = None,
    upn: Any = None,
    domain: Any = None,
    email: Any = None,
    object_id: Any = None,
    sid: Any = None,
    **more: Any,
) -> tuple[str | None, dict[str, str]]:
    """The user's value and aliases from whatever names a record gives (module docstring).

    `more` holds vendor ids (`okta_id=...`) kept as aliases of that kind. Returns
    `(None, {})` when nothing names the user.
    """
    aliases: dict[str, str] = {}
    upn_text, account_text = _text(upn), _text(account)
    domain_text = _text(domain)
    sam: str | None = None
    if account_text is not None:
        split_domain, name = split_account(account_text)
        domain_text = split_domain or domain_text
        if "@" in name and upn_text is None:
            upn_text = name
        elif "@" not in name:
            sam = name
    if upn_text is not None:
        aliases["upn"] = upn_text
    if sam is not None:
        aliases["sam"] = sam
        if domain_text is not None and "\\" not in domain_text:
            aliases["nt_account"] = f"{domain_text}\\{sam}"
    sid_text = _text(sid)
    if sid_text is not None and not _PERSONAL_SID.match(sid_text):
        sid_text = None
    for kind, raw in (("email", email), ("object_id", object_id), ("sid", sid_text), *more.items()):
        text = _text(raw)
        if text is not None:
            aliases.setdefault(kind, text)
    for kind in ("upn", "sam", "email", "object_id", "sid"):
        if kind in aliases:
            return aliases[kind], aliases
    return None, {}


def host_names(
    name: Any = None, *, fqdn: Any = None, **device_ids: Any
) -> tuple[str | None, dict[str, str]]:
    """The host's value and aliases: the reported name, its FQDN and short name, device ids."""
    aliases: dict[str, str] = {}
    name_text, fqdn_text = _text(name), _text(fqdn)
    dotted = name_text is not None and "." in name_text.strip(".")
    if dotted and fqdn_text is None and not str(name_text).replace(".", "").isdigit():
        fqdn_text = name_text  # a dotted name that is not an IPv4 address
    if fqdn_text is not None:
        fqdn_text = fqdn_text.rstrip(".")
        aliases["fqdn"] = fqdn_text
        short = fqdn_text.split(".", 1)[0]
        if short and (name_text is None or short.lower() != name_text.lower()):
            aliases["hostname"] = short
    for kind, raw in device_ids.items():
        text = _text(raw)
        if text is not None:
            aliases[kind] = text
    value = name_text or fqdn_text
    if value is None:
        return None, {}
    return value, aliases
