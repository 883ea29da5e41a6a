"""The OCI image that the Helm chart deploys, built by image/build.sh and run by podman.

`build()` returns an OCI image layout, built from Debian packages and the
project's wheel (no container registry) and kept in the cache under a hash of
everything that goes into it: the project's sources, the packaging, the
chart's appVersion and the build scripts. A second run on an unchanged tree
reuses it; any change rebuilds it (about two minutes on two cores).

`Podman` runs the image the way the chart's pod spec does: as the image's
non-root user, the root filesystem read-only, every capability dropped, no
privilege escalation, no network, and a writable volume for the store. It
keeps its own storage in a temporary directory, so nothing is left in the
machine's image store.

    layout = build()                                  # <cache>/image/<hash>/oci
    with Podman.session(tmp) as podman:
        image = podman.load(layout, tag)
        podman.run(image, "run", volumes={data: "/var/lib/soc-agent"})

or `python -m tests.infra.image` to build (or find) the image and print its path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra._common import InfraError, InfraUnavailable, cache_dir, cache_lock

__all__ = [
    "BUILD_SCRIPT",
    "CHART",
    "INSTALL_HINT",
    "Podman",
    "app_version",
    "blob",
    "build",
    "check",
    "image_config",
    "inputs_hash",
]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "image" / "build.sh"
CHART = ROOT / "helm" / "soc-agent"
# What goes into the image: a change to any of these rebuilds it. README.md is the
# wheel's long description only, so editing it does not.
_INPUTS = ("pyproject.toml", "soc_agent", "connectors", "playbooks", "samples", "packs", "image")
_SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_TOOLS = ("mmdebstrap", "umoci", "podman", "runc")
INSTALL_HINT = (
    "the image tests need mmdebstrap, umoci, podman and runc: `image/build.sh --tools` as "
    "root installs them (apt-get install mmdebstrap umoci podman runc)"
)
# Kept: the current build and the one before it (a branch switch back and forth).
_KEEP = 2


def check() -> None:
    """Raise InfraUnavailable (saying what to install) when a tool is missing and
    `image/build.sh --tools` cannot install it (not root, or no apt-get)."""
    if all(shutil.which(tool) for tool in _TOOLS):
        return
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--tools"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    missing = [tool for tool in _TOOLS if not shutil.which(tool)]
    if result.returncode != 0 or missing:
        said = (result.stderr or result.stdout).strip().splitlines()
        reason = said[-1] if said else f"missing: {' '.join(missing)}"
        raise InfraUnavailable(f"{INSTALL_HINT}; {reason}")


def app_version() -> str:
    """The chart's appVersion: the tag the chart deploys by default."""
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?\s*$', (CHART / "Chart.yaml").read_text(), re.M)
    if not match:
        raise InfraError(f"no appVersion in {CHART / 'Chart.yaml'}")
    return match.group(1)


def inputs_hash() -> str:
    """A digest of every file that goes into the image, and of the tag it gets."""
    digest = hashlib.sha256(app_version().encode())
    for top in _INPUTS:
        base = ROOT / top
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in paths:
            relative = path.relative_to(ROOT)
            if _SKIP_PARTS & set(relative.parts) or path.suffix == ".pyc":
                continue
            if any(part.endswith(".egg-info") for part in relative.parts):
                continue
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(*, python: str | None = None) -> Path:
    """The OCI image layout of this tree: from the cache, or built by image/build.sh."""
    check()
    key = inputs_hash()
    images = cache_dir() / "image"
    images.mkdir(parents=True, exist_ok=True)
    target = images / key
    with cache_lock("image"):
        if (target / "oci" / "index.json").is_file():
            return target / "oci"
        staging = images / f".{key}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOC_AGENT_")}
        env["PYTHON"] = python or sys.executable
        try:
            result = subprocess.run(
                ["bash", str(BUILD_SCRIPT), "--out", str(staging), "--tag", app_version()],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise InfraError("image/build.sh did not finish in 30 minutes") from exc
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise InfraError(f"image/build.sh failed (exit {result.returncode}):\n{tail}")
        # Only the layout is kept: the archive is the same blobs again.
        (staging / f"soc-agent-{app_version()}.oci.tar").unlink(missing_ok=True)
        staging.rename(target)
        _prune(images, keep=target)
    return target / "oci"


def _prune(images: Path, keep: Path) -> None:
    """Drop all but the newest builds (each is about 100 MB) and the staging directories
    of builds that were killed (called under the lock, so none is still running)."""
    for staging in images.glob(".*"):
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
    builds = sorted(
        (p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in [b for b in builds if b != keep][_KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def blob(layout: Path, digest: str) -> Path:
    """The file of a blob (manifest, config or layer) in an OCI layout."""
    algorithm, _, value = digest.partition(":")
    return layout / "blobs" / algorithm / value


def image_config(layout: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, config) of the image tagged `tag` in an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    (descriptor,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    manifest: dict[str, Any] = json.loads(blob(layout, descriptor["digest"]).read_text())
    config: dict[str, Any] = json.loads(blob(layout, manifest["config"]["digest"]).read_text())
    return manifest, config


@dataclass
class Podman:
    """podman with storage of its own under `base`, running containers locked down."""

    base: Path
    # podman refuses a runroot path over 50 characters, which a test's temporary
    # directory can exceed (pytest-xdist adds `popen-gw0/`): a short one under /tmp.
    runroot: Path

    # Podman raises RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 by default, which fails
    # where root lacks CAP_SYS_RESOURCE ("crun: setrlimit `RLIMIT_NOFILE`: Operation not
    # permitted"); a container this small needs far fewer anyway.
    ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")

    @classmethod
    @contextlib.contextmanager
    def session(cls, base: Path) -> Iterator[Podman]:
        short = "/tmp" if os.path.isdir("/tmp") else None  # whatever $TMPDIR's length
        podman = cls(base, Path(tempfile.mkdtemp(prefix="podman-run-", dir=short)))
        try:
            yield podman
        finally:
            podman._podman("system", "reset", "--force", check=False)
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(podman.runroot, ignore_errors=True)

    def _podman(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        command = [
            "podman",
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.runroot),
            "--tmpdir",
            str(self.base / "tmp"),
            *args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise InfraError(
                f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr}"
            )
        return result

    def load(self, layout: Path, tag: str) -> str:
        """Copy the image from its OCI layout into this storage; its image id."""
        # podman names an image pulled from an OCI layout after the layout's path, and
        # refuses a path that is no valid image name (the cache's `.cache`): a link then.
        link = self.base / "layout"
        link.unlink(missing_ok=True)
        link.symlink_to(layout)
        return self._podman("pull", "--quiet", f"oci:{link}:{tag}").stdout.split()[-1]

    def run(
        self,
        image: str,
        *args: str,
        volumes: Mapping[Path, str] | None = None,
        entrypoint: str | None = None,
        extra: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run `image` as the chart runs it; the completed process (not checked)."""
        options = [
            "run",
            "--rm",
            "--read-only",
            "--network=none",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            *self.ULIMITS,
        ]
        # Bookworm's crun refuses hosts with cgroup v1 controllers ("cgroups in hybrid mode
        # not supported, drop all controllers from cgroupv2"); runc runs on either.
        if shutil.which("runc"):
            options.append("--runtime=runc")
        for host, inside in (volumes or {}).items():
            # :U gives the volume to the container's user, as fsGroup does in the pod.
            options += ["--volume", f"{host}:{inside}:U"]
        if entrypoint is not None:
            options += ["--entrypoint", entrypoint]
        return self._podman(*options, *extra, image, *args, check=False)


if __name__ == "__main__":
    print(build())
