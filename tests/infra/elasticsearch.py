"""A real single-node Elasticsearch for tests, built from Maven Central artifacts.

Elastic publishes the server (`org.elasticsearch:elasticsearch`), its
HTTP/transport module (`org.elasticsearch.plugin:transport-netty4`) and the
entitlement bridge on Maven Central, but not the distribution's launcher
(`server-cli`), the small entitlement agent, nor the ANSI console loader.
This module plays the launcher's part, following the server's own bootstrap:

* `lib/` holds the server and its runtime dependencies (the module path);
  `lib/entitlement-bridge/` the bridge patched into `java.base`;
  `lib/entitlement-agent/` the agent, compiled here from its ten-line source
  (it only calls `EntitlementInitialization.initialize`); `lib/tools/ansi-console/`
  a console loader that, like the distribution's, finds no terminal;
* `modules/transport-netty4/` holds the module jar, Netty, and the
  `plugin-descriptor.properties` and `entitlement-policy.yaml` that the jar
  carries under `META-INF/es-plugins/transport-netty4/`;
* the node settings travel to the server over stdin as a serialised
  `ServerArgs`, exactly as `server-cli` sends them; the open stdin is also
  the server's parent-alive signal, so the node exits if this process dies.

There is no x-pack in these artifacts, so there is no security to switch off:
plain HTTP on loopback. Nor are the other distribution modules on Central:
no `rest-root` (`GET /` answers 405), painless, `reindex`
(`_update_by_query`, `_delete_by_query`), ingest processors, `mapper-extras`.
Usage::

    node = start()          # resolves into the cache on first use
    ...                     # node.url -> "http://127.0.0.1:PORT"
    node.stop()

or `python -m tests.infra.elasticsearch [--port N]` to run one in the foreground.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra._common import (
    InfraError,
    Jdk,
    ServerProcess,
    cache_dir,
    cache_lock,
    find_jdk,
    find_maven,
    free_port,
    give_to,
    link_tree,
    make_run_dir,
    maven_copy_dependencies,
    run_as,
    wait_for,
)

__all__ = [
    "ES_VERSION",
    "INSTALL_HINT",
    "RunningNode",
    "check",
    "find_java",
    "resolve",
    "start",
]

ES_VERSION = "9.5.3"
SERVER_ARTIFACT = f"org.elasticsearch:elasticsearch:{ES_VERSION}"
NETTY_ARTIFACT = f"org.elasticsearch.plugin:transport-netty4:{ES_VERSION}"
BRIDGE_ARTIFACT = f"org.elasticsearch:elasticsearch-entitlement-bridge:{ES_VERSION}"
# Elasticsearch 9 needs Java 21+; 9.5 bundles JDK 25, the newest it is tested with.
MIN_JAVA, MAX_JAVA = 21, 25

INSTALL_HINT = (
    "Elasticsearch tests need a JDK 21+ (with javac) and Maven: install e.g. Temurin 21/25 "
    "and `apt-get install maven` (or set SOC_AGENT_INFRA_JAVA_HOME, or point "
    "SOC_AGENT_TEST_ELASTICSEARCH_URL at a running node)"
)

_SERVER_SHUTDOWN_MARKER = b"\x1b"  # BootstrapInfo.SERVER_SHUTDOWN_MARKER, read from stdin

_AGENT_SOURCE = """\
package org.elasticsearch.entitlement.agent;

import java.lang.instrument.Instrumentation;

/** The distribution's entitlement agent: hands the Instrumentation to the entitlement library. */
public final class EntitlementAgent {
    private static final String DEFAULT =
        "org.elasticsearch.entitlement.initialization.EntitlementInitialization";

    public static void agentmain(String agentArgs, Instrumentation inst) throws Exception {
        String name = agentArgs == null || agentArgs.isEmpty() ? DEFAULT : agentArgs;
        Class.forName(name).getMethod("initialize", Instrumentation.class).invoke(null, inst);
    }
}
"""

# ConsoleLoader loads this class from lib/tools/ansi-console. The distribution's one (jansi)
# returns no console when output is redirected, which it always is here: so does this one.
_CONSOLE_SOURCE = """\
package org.elasticsearch.io.ansi;

import java.util.function.Supplier;

/** No ANSI console: the server's output goes to a log file, never to a terminal. */
public final class AnsiConsoleLoader implements Supplier<Object> {
    @Override
    public Object get() {
        return null;
    }
}
"""

_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
# Quiet the chattiest start-up loggers; warnings still show.
logger.plugins.name = org.elasticsearch.plugins
logger.plugins.level = warn
"""


def find_java() -> Jdk:
    """A JDK that can run and (for the agent) compile for this Elasticsearch."""
    return find_jdk(MIN_JAVA, maximum=MAX_JAVA, need_javac=True, hint=INSTALL_HINT)


def check() -> None:
    """Raise `InfraUnavailable` if this machine cannot build and run a node; starts nothing."""
    find_java()
    if not (cache_dir() / f"elasticsearch-{ES_VERSION}" / ".complete").is_file():
        find_maven(INSTALL_HINT)


# --- building the layout ------------------------------------------------------------------


def _jar(path: Path, classes: Path, package: str, manifest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\r\n{manifest}\r\n")
        for file in sorted((classes / package).rglob("*.class")):
            archive.write(file, file.relative_to(classes).as_posix())


def _build_launcher_pieces(jdk: Jdk, lib: Path, work: Path) -> None:
    """Compile the two small distribution pieces that Maven Central does not carry."""
    javac = jdk.javac
    assert javac is not None
    sources = []
    for package, name, text in (
        ("org/elasticsearch/entitlement/agent", "EntitlementAgent", _AGENT_SOURCE),
        ("org/elasticsearch/io/ansi", "AnsiConsoleLoader", _CONSOLE_SOURCE),
    ):
        source = work / "src" / package / f"{name}.java"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(text)
        sources.append(str(source))
    classes = work / "classes"
    result = subprocess.run(
        [str(javac), "--release", str(MIN_JAVA), "-d", str(classes), *sources],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise InfraError(f"javac failed building the launcher pieces:\n{result.stderr}")
    _jar(
        lib / "entitlement-agent" / f"elasticsearch-entitlement-agent-{ES_VERSION}.jar",
        classes,
        "org/elasticsearch/entitlement/agent",
        "Agent-Class: org.elasticsearch.entitlement.agent.EntitlementAgent\r\n"
        "Can-Retransform-Classes: true\r\nCan-Redefine-Classes: true\r\n",
    )
    _jar(
        lib / "tools" / "ansi-console" / f"elasticsearch-ansi-console-{ES_VERSION}.jar",
        classes,
        "org/elasticsearch/io/ansi",
        "",
    )


def _add_system_zstd(lib: Path) -> None:
    """Give the server's native access the zstd library it loads from `lib/platform/`.

    The distribution bundles libzstd; Maven Central does not carry it, but every
    Debian-like system has one (apt itself depends on it). Without it the node still
    runs, with native access off: no root check, no system call filter, no zstd codec.
    """
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine().lower()
    )
    if sys.platform != "linux" or arch is None:
        return
    patterns = (
        "/usr/lib/*-linux-gnu/libzstd.so.1",
        "/lib/*-linux-gnu/libzstd.so.1",
        "/usr/lib64/libzstd.so.1",
        "/usr/lib/libzstd.so.1",
    )
    for pattern in patterns:
        for candidate in sorted(glob.glob(pattern)):
            target = lib / "platform" / f"linux-{arch}" / "libzstd.so"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(candidate, target)  # follows the soname link
            return


def _extract_module_descriptor(module_jar: Path, module: str, target: Path) -> None:
    prefix = f"META-INF/es-plugins/{module}/"
    with zipfile.ZipFile(module_jar) as archive:
        names = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/")]
        for name in names:
            (target / name[len(prefix) :]).write_bytes(archive.read(name))
    if not (target / "plugin-descriptor.properties").is_file():
        raise InfraError(f"{module_jar.name} carries no {prefix}plugin-descriptor.properties")


def resolve(jdk: Jdk | None = None) -> Path:
    """The Elasticsearch home in the cache, `<cache>/elasticsearch-<version>`, built once."""
    home = cache_dir() / f"elasticsearch-{ES_VERSION}"
    if (home / ".complete").is_file():
        return home
    jdk = jdk or find_java()
    mvn = find_maven(INSTALL_HINT)
    with cache_lock(f"elasticsearch-{ES_VERSION}"):
        if (home / ".complete").is_file():
            return home
        staging = home.with_name(home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        lib = staging / "lib"
        server_jars = maven_copy_dependencies(mvn, "es-server", [SERVER_ARTIFACT], lib)
        module_dir = staging / "modules" / "transport-netty4"
        maven_copy_dependencies(mvn, "es-transport-netty4", [NETTY_ARTIFACT], module_dir)
        # The module's layer only needs what the server's boot layer lacks.
        for name in {p.name for p in server_jars}:
            (module_dir / name).unlink(missing_ok=True)
        _extract_module_descriptor(
            module_dir / f"transport-netty4-{ES_VERSION}.jar", "transport-netty4", module_dir
        )
        maven_copy_dependencies(mvn, "es-entitlement-bridge", [BRIDGE_ARTIFACT], staging / "bridge")
        bridge_dir = lib / "entitlement-bridge"
        bridge_dir.mkdir()
        (staging / "bridge" / f"elasticsearch-entitlement-bridge-{ES_VERSION}.jar").rename(
            bridge_dir / f"elasticsearch-entitlement-bridge-{ES_VERSION}.jar"
        )
        shutil.rmtree(staging / "bridge")
        _build_launcher_pieces(jdk, lib, staging / "build")
        _add_system_zstd(lib)
        shutil.rmtree(staging / "build")
        (staging / "plugins").mkdir()
        (staging / ".complete").write_text(f"{ES_VERSION}\n")
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return home


# --- ServerArgs, as server-cli writes it to the server's stdin ------------------------------


def _vint(value: int) -> bytes:
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    """StreamOutput.writeString: the UTF-16 unit count, then each unit in 1-3 bytes."""
    units = struct.unpack(f"<{len(text.encode('utf-16-le')) // 2}H", text.encode("utf-16-le"))
    out = bytearray(_vint(len(units)))
    for unit in units:
        if unit <= 0x7F:
            out.append(unit)
        elif unit <= 0x7FF:
            out += bytes((0xC0 | unit >> 6, 0x80 | unit & 0x3F))
        else:
            out += bytes((0xE0 | unit >> 12, 0x80 | (unit >> 6) & 0x3F, 0x80 | unit & 0x3F))
    return bytes(out)


def _server_args(settings: dict[str, str], config_dir: Path, logs_dir: Path) -> bytes:
    out = bytearray()
    out += b"\x00"  # daemonize
    out += b"\x00"  # quiet: no, log to the console (our log file)
    out += b"\x00"  # no pid file
    # An empty, loaded KeyStoreWrapper: no secure settings.
    out += _string("org.elasticsearch.common.settings.KeyStoreWrapper")
    out += struct.pack(">i", 7)  # KeyStoreWrapper.CURRENT_VERSION
    out += b"\x00"  # hasPassword
    out += b"\x00"  # no encrypted data bytes
    out += _vint(0)  # no entries
    out += b"\x00"  # not closed
    out += _vint(len(settings))
    for key, value in settings.items():
        out += _string(key) + b"\x00" + _string(value)  # generic value type 0: string
    out += _string(str(config_dir))
    out += _string(str(logs_dir))
    return bytes(out)


# --- running a node ------------------------------------------------------------------------


@dataclass
class RunningNode:
    """A started node: its URL, and `stop()` to end it and remove its files."""

    url: str
    http_port: int
    run_dir: Path
    process: ServerProcess
    keep_files: bool = False
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopped:
            return
        self._stopped = True

        def shutdown_marker() -> None:
            stdin = self.process.process.stdin
            if stdin is not None:
                stdin.write(_SERVER_SHUTDOWN_MARKER)
                stdin.flush()
                stdin.close()

        try:
            self.process.stop(polite=shutdown_marker, timeout=timeout)
        finally:
            if not self.keep_files:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> RunningNode:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _jvm_options(jdk: Jdk, home: Path, config: Path, tmp: Path, heap: str) -> list[str]:
    """What server-cli's SystemJvmOptions and jvm.options give a 9.x node, sized for tests."""
    bridge = (
        home / "lib" / "entitlement-bridge" / f"elasticsearch-entitlement-bridge-{ES_VERSION}.jar"
    )
    options = [
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-Xss1m",
        "-XX:+UseSerialGC",  # two cores and a small heap: the cheapest collector
        "-XX:+ExitOnOutOfMemoryError",
        "-Des.networkaddress.cache.ttl=60",
        "-Des.networkaddress.cache.negative.ttl=10",
        "-Djava.awt.headless=true",
        "-Dfile.encoding=UTF-8",
        "-Djna.nosys=true",
        "-XX:-OmitStackTraceInFastThrow",
        "-Dio.netty.noUnsafe=true",
        "-Dio.netty.noKeySetOptimization=true",
        "-Dio.netty.recycler.maxCapacityPerThread=0",
        "--add-opens=org.apache.lucene.core/org.apache.lucene.codecs.lucene99=org.elasticsearch.server",
        "--add-opens=org.apache.lucene.core/org.apache.lucene.internal.vectorization="
        "org.elasticsearch.server",
        "-Dlog4j.shutdownHookEnabled=false",
        "-Dlog4j2.disable.jmx=true",
        "-Dlog4j2.formatMsgNoLookups=true",
        "-Djava.locale.providers=CLDR",
        f"-Dorg.apache.lucene.vectorization.upperJavaFeatureVersion={jdk.version}",
        f"-Des.path.home={home}",
        f"-Des.path.conf={config}",
        "-Des.distribution.type=tar",
        "-Des.java.type=system JDK",
        "--enable-native-access=org.elasticsearch.nativeaccess,org.elasticsearch.foreign,"
        "org.apache.lucene.core",
        "--enable-native-access=ALL-UNNAMED",
        # libvec (native vector distances) ships only in the distribution; Lucene's
        # Panama vectors do the same work.
        "-Dorg.elasticsearch.nativeaccess.enableVectorLibrary=false",
        # Entitlements: the agent attaches to its own JVM; the bridge lives in java.base.
        "-XX:+EnableDynamicAgentLoading",
        "-Djdk.attach.allowAttachSelf=true",
        f"--patch-module=java.base={bridge}",
        "--add-exports=java.base/org.elasticsearch.entitlement.bridge="
        "org.elasticsearch.entitlement,java.logging,java.net.http,java.naming,jdk.net",
        f"-Djava.io.tmpdir={tmp}",
        "--add-modules=jdk.incubator.vector",
        "-Dorg.apache.lucene.store.defaultReadAdvice=normal",
        f"--module-path={home / 'lib'}",
        "--add-modules=jdk.net",
        "--add-modules=jdk.management.agent",
        "--add-modules=ALL-MODULE-PATH",
        "-m",
        "org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch",
    ]
    if jdk.version >= 24:
        options.insert(
            options.index("--enable-native-access=ALL-UNNAMED") + 1, "--illegal-native-access=deny"
        )
    return options


def _health(url: str) -> dict[str, Any] | None:
    """The cluster health once the node answers as Elasticsearch with status green or yellow."""
    request = urllib.request.Request(
        f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s",
        headers={"Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.headers.get("X-Elastic-Product") != "Elasticsearch":
                raise InfraError(f"{url} answered, but not as Elasticsearch")
            body: dict[str, Any] = json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None
    return body if body.get("status") in {"green", "yellow"} else None


def start(
    port: int | None = None,
    *,
    heap: str = "512m",
    startup_timeout: float = 180.0,
    echo: bool = False,
    keep_files: bool = False,
) -> RunningNode:
    """Start a single-node cluster on 127.0.0.1 and wait until its health is green or yellow."""
    jdk = find_java()
    cached_home = resolve(jdk)
    user = run_as()
    run = make_run_dir("soc-agent-es-")
    try:
        home = run / "home"
        # Hard links: per-run private home, readable by an unprivileged server user.
        link_tree(cached_home / "lib", home / "lib")
        link_tree(cached_home / "modules", home / "modules")
        (home / "plugins").mkdir()
        config, data, logs, tmp = (run / name for name in ("config", "data", "logs", "tmp"))
        for directory in (config, data, logs, tmp):
            directory.mkdir()
        http_port = port or free_port()
        settings = {
            "path.home": str(home),
            "path.data": str(data),
            "path.logs": str(logs),
            "cluster.name": "soc-agent-test",
            "node.name": "soc-agent-test-node",
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": str(http_port),
            "transport.port": str(free_port()),
            # Test machines can have full disks; shards must still allocate.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        # For a person reading the run directory: what the node runs with. The server itself
        # gets these over stdin, as server-cli sends them after reading elasticsearch.yml.
        (config / "elasticsearch.yml").write_text(
            "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        )
        (config / "log4j2.properties").write_text(_LOG4J2)
        give_to(user, config, data, logs, tmp)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "LANG": "C.UTF-8",
            "ES_HOME": str(home),
            "ES_PATH_CONF": str(config),
            "JAVA_HOME": str(jdk.home),
            # server-cli points both at the node's temporary directory.
            "ES_TMPDIR": str(tmp),
            "LIBFFI_TMPDIR": str(tmp),
        }
        argv = [str(jdk.java), *_jvm_options(jdk, home, config, tmp, heap)]
        process = ServerProcess(
            f"Elasticsearch {ES_VERSION}",
            argv,
            cwd=home,
            env=env,
            log_path=run / "server.log",
            user=user,
            stdin_data=_server_args(settings, config, logs),
            echo=echo,
        )
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)
        raise
    node = RunningNode(f"http://127.0.0.1:{http_port}", http_port, run, process, keep_files)
    try:
        wait_for(
            lambda: _health(node.url),
            process=process,
            timeout=startup_timeout,
            what=f"answering on {node.url}",
            interval=0.5,
        )
    except BaseException:
        node.stop()
        raise
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.infra.elasticsearch",
        description=f"Run a single-node Elasticsearch {ES_VERSION} on loopback until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=9200, help="HTTP port (0: any free port)")
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--resolve-only", action="store_true", help="fill the cache and exit")
    args = parser.parse_args(argv)
    began = time.monotonic()
    home = resolve()
    print(f"Elasticsearch {ES_VERSION} home: {home} ({time.monotonic() - began:.1f}s)", flush=True)
    if args.resolve_only:
        return 0
    node = start(args.port or None, heap=args.heap, echo=True)
    print(
        f"Elasticsearch {ES_VERSION} ready at {node.url} "
        f"({time.monotonic() - began:.1f}s); Ctrl-C stops it",
        flush=True,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        if not node.process.alive():
            print("Elasticsearch exited", file=sys.stderr)
            break
    node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
