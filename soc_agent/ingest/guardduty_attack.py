"""GuardDuty finding types to MITRE ATT&CK techniques: our mapping, not AWS's.

GuardDuty findings carry no ATT&CK ids; their `Type`
(`ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact`)
says what was seen. This table lists only types whose behaviour one technique
describes well; a type not in it maps to no technique rather than to a guess
from its threat purpose alone (`Impact:*` covers resource hijacking, port
sweeps and data deletion alike). The first matching pattern wins.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

__all__ = ["GUARDDUTY_TECHNIQUES", "techniques_for"]

# (finding type pattern, techniques); patterns are fnmatch globs, compared case-insensitively.
GUARDDUTY_TECHNIQUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Instance-role credentials taken from the metadata service and used elsewhere.
    ("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration*", ("T1552.005", "T1078.004")),
    ("UnauthorizedAccess:EC2/MetadataDNSRebind", ("T1552.005",)),
    # Valid cloud credentials used from a malicious, Tor or otherwise unexpected origin.
    ("UnauthorizedAccess:IAMUser/MaliciousIPCaller*", ("T1078.004",)),
    ("UnauthorizedAccess:IAMUser/TorIPCaller", ("T1078.004",)),
    ("UnauthorizedAccess:IAMUser/ConsoleLoginSuccess*", ("T1078.004",)),
    ("Policy:IAMUser/RootCredentialUsage", ("T1078.004",)),
    ("UnauthorizedAccess:EC2/SSHBruteForce", ("T1110",)),
    ("UnauthorizedAccess:EC2/RDPBruteForce", ("T1110",)),
    ("Impact:EC2/WinRMBruteForce", ("T1110",)),
    ("CredentialAccess:RDS/AnomalousBehavior.*BruteForce", ("T1110",)),
    ("UnauthorizedAccess:EC2/TorClient", ("T1090.003",)),
    ("UnauthorizedAccess:EC2/TorRelay", ("T1090.003",)),
    # Scanning of the account's resources from outside, and scanning by an instance.
    ("Recon:EC2/PortProbe*", ("T1595",)),
    ("Recon:EC2/Portscan", ("T1046",)),
    ("Impact:EC2/PortSweep", ("T1046",)),
    ("Recon:IAMUser/*", ("T1580",)),
    ("Discovery:S3/*", ("T1580",)),
    ("Discovery:IAMUser/*", ("T1580",)),
    ("Discovery:Kubernetes/*", ("T1613",)),
    ("Backdoor:EC2/C&CActivity*", ("T1071",)),
    ("Backdoor:EC2/DenialOfService*", ("T1498",)),
    ("Trojan:EC2/DNSDataExfiltration", ("T1048",)),
    ("CryptoCurrency:*", ("T1496",)),
    ("Impact:*/BitcoinDomainRequest*", ("T1496",)),
    ("Impact:Runtime/CryptoMinerExecuted", ("T1496",)),
    ("Exfiltration:S3/*", ("T1530",)),
    ("Impact:S3/AnomalousBehavior.Delete", ("T1485",)),
    ("Persistence:IAMUser/*", ("T1098",)),
    ("Stealth:IAMUser/CloudTrailLoggingDisabled", ("T1562.008",)),
    ("Stealth:S3/ServerAccessLoggingDisabled", ("T1562.008",)),
    ("PrivilegeEscalation:Runtime/DockerSocketAccessed", ("T1611",)),
    ("PrivilegeEscalation:Runtime/ContainerMountsHostDirectory", ("T1611",)),
)

_PATTERNS = tuple((pattern.lower(), tids) for pattern, tids in GUARDDUTY_TECHNIQUES)


def techniques_for(finding_type: str | None) -> list[str]:
    """ATT&CK technique ids for a GuardDuty finding type; empty when the table has none."""
    if not finding_type:
        return []
    key = finding_type.strip().lower()
    for pattern, tids in _PATTERNS:
        if fnmatchcase(key, pattern):
            return list(tids)
    return []
