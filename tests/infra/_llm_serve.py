"""Serve one GGUF model over llama.cpp's OpenAI-compatible HTTP API until stdin closes.

Run by `tests.infra.llm` as its own process (`python -I _llm_serve.py ...`): xllamacpp
serves from threads inside the process that loads the model, so a separate process is
what lets the tests stop it, and a crash in native code cannot take pytest down with it.
It imports nothing from the project.
"""

from __future__ import annotations

import argparse
import os
import sys

import xllamacpp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="_llm_serve")
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]  # loopback only, whatever the library's default becomes
    params.port = args.port
    params.n_ctx = args.ctx
    # One slot: llama.cpp splits n_ctx between slots, and two cores gain nothing from more.
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.ui = False
    params.offline = True  # never reach a model hub
    # The default keeps up to 8 GiB of prompts in RAM; tests repeat one prompt at most.
    params.cache_ram_mib = 256

    server = xllamacpp.Server(params)  # returns once the model is loaded and HTTP is up
    print(f"serving {args.alias} at {server.listening_address}", flush=True)
    # The parent holds our stdin open: EOF means it is gone, however it died.
    sys.stdin.buffer.read()
    print("stdin closed: exiting", flush=True)
    # Skip interpreter teardown: native server threads are still running.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
