"""The OCI image the Helm chart deploys: built from Debian packages and the wheel, then run.

image/build.sh makes it (tests/infra/image.py caches it under a hash of its
inputs); podman runs it as the chart's pod spec does: uid 10001, read-only
root filesystem, no capabilities, no privilege escalation, no network, and a
writable volume at /var/lib/soc-agent. The demo run inside it must decide
exactly what the same tree decides on the host.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import helm_python as helm
import pytest
import yaml

from tests.infra import image as image_infra
from tests.infra._common import InfraError, InfraUnavailable

pytestmark = pytest.mark.slow

UID = 10001
DATA = "/var/lib/soc-agent"
SUMMARY = re.compile(r"^(\d+) alert\(s\), (\d+) dead letter\(s\)(?:; (.*))?$", re.M)

# Runs inside the image as its entrypoint's Python: who it is, what it may write.
_PROBE = r"""
import errno, importlib.util, json, os, pwd
def write(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
    except OSError as exc:
        return errno.errorcode[exc.errno]
    os.unlink(path)
    return "written"
lines = open("/proc/self/status").read().splitlines()
status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
image_data = sorted(os.listdir("/var/lib/soc-agent"))
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "user": pwd.getpwuid(os.getuid()).pw_name, "cwd": os.getcwd(),
    "root_read_only": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
    "cap_eff": int(status["CapEff"], 16), "no_new_privs": status["NoNewPrivs"].strip(),
    "image_data": image_data,
    "writes": {p: write(p) for p in ("/probe", "/etc/probe", "/opt/soc-agent/probe",
        "/usr/lib/python3.11/probe", "/var/lib/soc-agent/probe", "/tmp/probe")},
    "demo_files": {n: os.stat("/demo/" + n).st_uid for n in os.listdir("/demo")},
    "pip": importlib.util.find_spec("pip") is not None,
}))
"""


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def layout() -> Path:
    """The image's OCI layout, built by image/build.sh (or reused from the cache)."""
    try:
        return image_infra.build()
    except InfraUnavailable as exc:
        _unavailable(str(exc))
    except InfraError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def podman(
    layout: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[image_infra.Podman, str]]:
    """podman with the image loaded into storage of its own, and the image id."""
    with image_infra.Podman.session(tmp_path_factory.mktemp("podman")) as runner:
        try:
            image = runner.load(layout, image_infra.app_version())
        except InfraError as exc:
            _unavailable(f"podman cannot load the image here: {exc}")
        yield runner, image


@pytest.fixture(scope="module")
def demo(
    podman: tuple[image_infra.Podman, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`soc-agent run` with no arguments in the image, its store on a host directory."""
    runner, image = podman
    data = tmp_path_factory.mktemp("data")
    return runner.run(image, "run", volumes={data: DATA}), data


def _summary(out: str) -> str:
    match = SUMMARY.search(out)
    assert match, f"no summary line in:\n{out}"
    return match.group(0)


def test_the_demo_run_in_the_image_decides_what_the_host_decides(
    demo: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    ran, data = demo
    assert ran.returncode == 0, ran.stderr
    inside = _summary(ran.stdout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
    host = subprocess.run(
        [sys.executable, "-m", "soc_agent", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert inside == _summary(host.stdout)
    match = SUMMARY.search(inside)
    assert match
    alerts, dead_letters = int(match.group(1)), int(match.group(2))
    counts = {name: int(n) for n, name in re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", match.group(3))}
    assert alerts > 0 and dead_letters > 0  # the shipped malformed records are dead-lettered
    assert counts["executed"] > 0 and counts["proposed"] > 0
    # The shipped samples come from the installed wheel, not from a source tree.
    assert "/opt/soc-agent/lib/python3.11/site-packages/soc_agent_samples/alerts/" in ran.stdout
    assert f"store: {DATA}/soc-agent.db" in ran.stdout
    # Everything it wrote is on the volume: the store and the files beside it.
    written = {p.name for p in data.iterdir()}
    assert {
        "soc-agent.db",
        "soc-agent.db.audit-key",
        "soc-agent.containment.jsonl",
        "soc-agent.notifications.jsonl",
    } <= written


def test_the_audit_chain_it_wrote_verifies_in_the_image(
    demo: tuple[subprocess.CompletedProcess[str], Path], podman: tuple[image_infra.Podman, str]
) -> None:
    ran, data = demo
    assert ran.returncode == 0, ran.stderr
    runner, image = podman
    verified = runner.run(image, "audit", "verify", volumes={data: DATA})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit chain intact:")
    listed = runner.run(image, "proposals", "list", volumes={data: DATA})
    assert listed.returncode == 0, listed.stderr
    assert "pending" in listed.stdout and "isolate_host" in listed.stdout


def test_it_runs_as_the_unprivileged_user_on_a_read_only_root(
    demo: tuple[subprocess.CompletedProcess[str], Path], podman: tuple[image_infra.Podman, str]
) -> None:
    ran, data = demo
    assert ran.returncode == 0, ran.stderr
    runner, image = podman
    # No volume at /var/lib/soc-agent: the image's own (empty) directory is what a
    # runtime without one copies up, so nothing may be baked into it.
    probe = runner.run(
        image,
        "-c",
        _PROBE,
        entrypoint="/opt/soc-agent/bin/python",
        extra=["--volume", f"{data}:/demo:ro"],
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert (seen["uid"], seen["gid"], seen["groups"]) == (UID, UID, [UID])
    assert seen["user"] == "soc-agent" and seen["cwd"] == DATA
    assert seen["root_read_only"] is True
    assert seen["cap_eff"] == 0 and seen["no_new_privs"] == "1"
    assert seen["image_data"] == []  # no store, audit key or credentials in the image
    for path in ("/probe", "/etc/probe", "/opt/soc-agent/probe", "/usr/lib/python3.11/probe"):
        assert seen["writes"][path] in {"EROFS", "EACCES"}, (path, seen["writes"])
    assert seen["writes"][f"{DATA}/probe"] == "written"
    assert seen["writes"]["/tmp/probe"] == "written"
    # The demo run's files were created by the image's user, not by root.
    assert seen["demo_files"] and set(seen["demo_files"].values()) == {UID}
    assert seen["pip"] is False  # installed from wheels; no installer left to run


def test_the_image_config_matches_the_chart(layout: Path) -> None:
    tag = image_infra.app_version()
    manifest, config = image_infra.image_config(layout, tag)
    settings = config["config"]
    assert settings["User"] == f"{UID}:{UID}"
    assert settings["Entrypoint"] == ["/opt/soc-agent/bin/soc-agent"]
    assert settings["Cmd"] == ["run"]
    assert settings["WorkingDir"] == DATA
    env = dict(item.split("=", 1) for item in settings["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["SOC_AGENT_STORE"] == f"{DATA}/soc-agent.db"
    assert env["PATH"].startswith("/opt/soc-agent/bin:")
    assert set(settings["Volumes"]) == {DATA, "/tmp"}
    assert settings["Labels"]["org.opencontainers.image.version"] == tag
    assert manifest["annotations"]["org.opencontainers.image.version"] == tag

    values = yaml.safe_load((image_infra.CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/soc-agent/soc-agent"
    assert values["image"]["tag"] in ("", tag)
    rendered = helm.Chart.load(image_infra.CHART).render(
        {"secretEnv": [{"name": "SOC_AGENT_AUDIT_KEY", "secretKeyRef": {"name": "s", "key": "k"}}]},
        name="soc",
        namespace="security",
    )
    deployments = [
        doc
        for text in rendered.values()
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "Deployment"
    ]
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "worker",
        "api",
        "stream",
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == f"ghcr.io/soc-agent/soc-agent:{tag}"
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (UID,) * 3
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        # Every path the image writes is a writable volume in the pod.
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert set(settings["Volumes"]) <= writable
        chart_env = {e["name"]: e.get("value") for e in container["env"]}
        assert str(Path(chart_env["SOC_AGENT_STORE"]).parent) in writable


def test_the_image_is_small_and_holds_nothing_privileged(layout: Path) -> None:
    manifest, _ = image_infra.image_config(layout, image_infra.app_version())
    (layer,) = manifest["layers"]
    assert layer["size"] < 120 * 2**20, f"the image grew to {layer['size'] / 2**20:.0f} MiB"
    setid: list[str] = []
    not_root: dict[str, int] = {}
    writable: list[str] = []
    names: list[str] = []
    with tarfile.open(image_infra.blob(layout, layer["digest"]), "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            names.append(name)
            if member.isfile() and member.mode & (stat.S_ISUID | stat.S_ISGID):
                setid.append(name)
            if member.uid != 0:
                not_root[name] = member.uid
            if member.mode & stat.S_IWOTH and not member.issym():
                writable.append(name)
    assert setid == []
    # Only the data directory belongs to the unprivileged user: it cannot change the code.
    assert not_root == {"var/lib/soc-agent": UID}
    assert sorted(writable) == ["run/lock", "tmp", "var/tmp"]  # all three sticky
    assert not [n for n in names if n.startswith("dev/")]  # the runtime provides /dev
    leftovers = [
        n
        for n in names
        if n.endswith((".whl", ".audit-key", ".db", ".deb"))
        or n.startswith(("root/.cache", "tmp/", "var/lib/apt", "var/cache/apt"))
        or "/site-packages/pip/" in n
    ]
    assert leftovers == []
    assert "opt/soc-agent/bin/soc-agent" in names
    # No package manager, and of Perl only the Essential perl-base (no usrmerge's Perl).
    assert not [n for n in names if n.startswith(("usr/bin/apt", "usr/share/perl/"))]
