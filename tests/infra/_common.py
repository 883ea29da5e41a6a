"""Plumbing shared by the Maven-built test servers.

Finding a JDK and Maven, resolving pinned artifacts into a cache, free
loopback ports, and a server process that is always cleaned up: it runs in
its own process group, is stopped at interpreter exit if the caller forgot,
and its temporary directory goes with it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar
from xml.sax.saxutils import escape

__all__ = [
    "CACHE_ENV",
    "JAVA_HOME_ENV",
    "MAVEN_ENV",
    "RUN_AS_ENV",
    "InfraError",
    "InfraUnavailable",
    "Jdk",
    "RunAs",
    "ServerProcess",
    "cache_dir",
    "cache_lock",
    "find_jdk",
    "find_maven",
    "free_port",
    "give_to",
    "link_tree",
    "make_run_dir",
    "maven_copy_dependencies",
    "run_as",
    "wait_for",
]

CACHE_ENV = "SOC_AGENT_INFRA_CACHE"
JAVA_HOME_ENV = "SOC_AGENT_INFRA_JAVA_HOME"
MAVEN_ENV = "SOC_AGENT_INFRA_MVN"
RUN_AS_ENV = "SOC_AGENT_INFRA_USER"

# Pinned so that a resolution is reproducible whatever Maven's default binding is.
_DEPENDENCY_PLUGIN = "3.8.1"

T = TypeVar("T")


class InfraUnavailable(RuntimeError):
    """A JDK or Maven is missing here; the message is one line saying what to install."""


class InfraError(RuntimeError):
    """A server could not be built or started; the message carries the evidence."""


def cache_dir() -> Path:
    """`$SOC_AGENT_INFRA_CACHE`, else `~/.cache/soc-agent-infra`: Maven's repository, layouts."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        base = Path(configured).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "soc-agent-infra"
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Serialise building one layout across processes (a test run and a developer's command)."""
    lock_path = cache_dir() / f".{name}.lock"
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- Java -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jdk:
    """A Java installation: its home and feature version (17, 21, 25, ...)."""

    home: Path
    version: int

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"

    @property
    def javac(self) -> Path | None:
        javac = self.home / "bin" / "javac"
        return javac if javac.is_file() else None


def _feature_version(text: str) -> int | None:
    match = re.match(r"(\d+)(?:\.(\d+))?", text.strip().strip('"'))
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292"
        return int(match.group(2))
    return major


def _jdk_version(home: Path) -> int | None:
    java = home / "bin" / "java"
    if not java.is_file():
        return None
    release = home / "release"
    if release.is_file():
        for line in release.read_text(errors="replace").splitlines():
            if line.startswith("JAVA_VERSION="):
                return _feature_version(line.split("=", 1)[1])
    try:
        probe = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', probe.stderr)
    return _feature_version(match.group(1)) if match else None


def _jdk_candidates() -> Iterator[Path]:
    for variable in (JAVA_HOME_ENV, "JAVA_HOME"):
        value = os.environ.get(variable)
        if value:
            yield Path(value)
    on_path = shutil.which("java")
    if on_path:
        yield Path(os.path.realpath(on_path)).parent.parent
    for pattern_root, pattern in (
        (Path("/usr/lib/jvm"), "*"),
        (Path("/usr/lib64/jvm"), "*"),
        (Path("/opt"), "*"),
        (Path("/opt/java"), "*"),
        (Path("/Library/Java/JavaVirtualMachines"), "*/Contents/Home"),
    ):
        if pattern_root.is_dir():
            yield from sorted(pattern_root.glob(pattern))


def find_jdk(
    minimum: int, *, maximum: int | None = None, need_javac: bool = False, hint: str
) -> Jdk:
    """The newest JDK in [minimum, maximum] (an explicit `$SOC_AGENT_INFRA_JAVA_HOME` wins).

    Raises `InfraUnavailable` with `hint` (what to install) when there is none.
    """
    explicit = os.environ.get(JAVA_HOME_ENV)
    seen: set[Path] = set()
    found: list[Jdk] = []
    for candidate in _jdk_candidates():
        try:
            home = candidate.resolve()
        except OSError:
            continue
        if home in seen or not home.is_dir():
            continue
        seen.add(home)
        version = _jdk_version(home)
        if version is None or version < minimum:
            continue
        jdk = Jdk(home, version)
        if need_javac and jdk.javac is None:
            continue
        if explicit and home == Path(explicit).resolve():
            return jdk
        found.append(jdk)
    if not found:
        raise InfraUnavailable(hint)
    in_range = [j for j in found if maximum is None or j.version <= maximum]
    return max(in_range or found, key=lambda j: j.version)


# --- Maven ------------------------------------------------------------------------------


def find_maven(hint: str) -> str:
    mvn = shutil.which(os.environ.get(MAVEN_ENV) or "mvn")
    if not mvn:
        raise InfraUnavailable(hint)
    return mvn


def _pom(project: str, coordinates: Sequence[str]) -> str:
    deps = []
    for coordinate in coordinates:
        group, artifact, version = coordinate.split(":")
        deps.append(
            "    <dependency>"
            f"<groupId>{escape(group)}</groupId><artifactId>{escape(artifact)}</artifactId>"
            f"<version>{escape(version)}</version></dependency>"
        )
    dependencies = "\n".join(deps)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by soc-agent's tests/infra: resolves pinned artifacts, builds nothing. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>soc-agent.infra</groupId>
  <artifactId>{escape(project)}</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{_DEPENDENCY_PLUGIN}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def maven_copy_dependencies(
    mvn: str, project: str, coordinates: Sequence[str], output: Path
) -> list[Path]:
    """Resolve `coordinates` (group:artifact:version) with their runtime dependencies into `output`.

    Maven's local repository is the cache's own (`<cache>/m2`), so the cache is
    self-contained and its size is what a first run downloads.
    """
    work = cache_dir() / "poms" / project
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(_pom(project, coordinates))
    output.mkdir(parents=True, exist_ok=True)
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={cache_dir() / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output}",
        "-DincludeScope=runtime",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"Maven timed out resolving {', '.join(coordinates)}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise InfraError(
            f"Maven could not resolve {', '.join(coordinates)} "
            f"(exit {result.returncode}): {' '.join(command)}\n{tail}"
        )
    return sorted(output.glob("*.jar"))


# --- files, ports, users ----------------------------------------------------------------


def link_tree(source: Path, target: Path) -> None:
    """Mirror `source` into `target` with hard links (copies across file systems).

    Hard links keep the cache's files read-only for the server and cost nothing;
    they also let an unprivileged server user read jars kept under root's home.
    """
    for directory, _dirnames, filenames in os.walk(source):
        relative = Path(directory).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            src = Path(directory) / filename
            dst = target / relative / filename
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a server runs as when the caller is root."""

    name: str
    uid: int
    gid: int


def run_as() -> RunAs | None:
    """None for an ordinary user; for root, `$SOC_AGENT_INFRA_USER` or `nobody`.

    Elasticsearch refuses to run as root, and a test server has no business
    holding root anyway (CI runs as root).
    """
    if os.geteuid() != 0:
        return None
    name = os.environ.get(RUN_AS_ENV, "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise InfraError(
            f"running as root, the test servers drop to user {name!r}, which does not exist; "
            f"set {RUN_AS_ENV} to an unprivileged account"
        ) from exc
    return RunAs(name, entry.pw_uid, entry.pw_gid)


def give_to(user: RunAs | None, *paths: Path) -> None:
    """Make `paths` (directories the server writes) owned by the server's user."""
    if user is None:
        return
    for path in paths:
        os.chown(path, user.uid, user.gid)
        for directory, dirnames, filenames in os.walk(path):
            for name in [*dirnames, *filenames]:
                os.chown(Path(directory) / name, user.uid, user.gid, follow_symlinks=False)


# --- processes --------------------------------------------------------------------------

# Runs a server as its child and ends it when its own stdin closes, i.e. when the test
# process is gone however it died (even SIGKILL, where atexit never runs). Elasticsearch
# watches its stdin itself; Kafka does not, so it runs under this.
_WATCHDOG = """\
import signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
# SIGTERM reaches the whole group; outlive the server so stop() sees its real exit.
signal.signal(signal.SIGTERM, lambda *_: None)
def watch():
    sys.stdin.buffer.read()
    child.terminate()
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
threading.Thread(target=watch, daemon=True).start()
sys.exit(child.wait())
"""

_LIVE: set[ServerProcess] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for process in live:
        process.stop()


atexit.register(_stop_all_at_exit)


class ServerProcess:
    """A server JVM in its own process group, its output in a log file.

    `stop()` is idempotent: a polite request first (`polite`), then SIGTERM to
    the group, then SIGKILL; it is also called at interpreter exit.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        user: RunAs | None = None,
        stdin_data: bytes | None = None,
        echo: bool = False,
        watchdog: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        if watchdog:
            self.argv = [sys.executable, "-c", _WATCHDOG, *self.argv]
            stdin_data = stdin_data or b""
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        if echo:
            stdout: int | IO[bytes] | None = None
        else:
            self._log = log_path.open("ab")
            stdout = self._log
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            start_new_session=True,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=[] if user else None,
        )
        if stdin_data is not None and self.process.stdin is not None:
            # The pipe stays open: it is the parent-alive signal (Elasticsearch, the watchdog).
            self.process.stdin.write(stdin_data)
            self.process.stdin.flush()
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> int | None:
        """SIGKILL the whole group at once, as a crash would; then clean up."""
        if self.alive():
            self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(30)
        return self.stop()

    def stop(self, polite: Callable[[], None] | None = None, timeout: float = 30.0) -> int | None:
        """Stop the server and everything in its process group; returns the exit code."""
        try:
            if self.alive():
                if polite is not None:
                    with contextlib.suppress(OSError):
                        polite()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout)
                if self.alive():
                    self._signal_group(signal.SIGTERM)
                    try:
                        self.process.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self._signal_group(signal.SIGKILL)
                        self.process.wait(10)
            # Signals go to the group only while its leader is unreaped, so the group id
            # can never belong to another process by then.
            return self.process.returncode
        finally:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            if self._log is not None:
                self._log.close()
            with _LIVE_LOCK:
                _LIVE.discard(self)


def wait_for(
    probe: Callable[[], T | None],
    *,
    process: ServerProcess,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> T:
    """Poll `probe` until it returns a value; fail fast if the server exits, with its log."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if not process.alive():
            raise InfraError(
                f"{process.name} exited with code {process.process.returncode} before {what}; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise InfraError(
                f"{process.name} not {what} after {timeout:.0f}s; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        time.sleep(interval)


def make_run_dir(prefix: str) -> Path:
    """A fresh temporary directory the server user can traverse."""
    run = Path(tempfile.mkdtemp(prefix=prefix))
    run.chmod(0o755)
    return run
