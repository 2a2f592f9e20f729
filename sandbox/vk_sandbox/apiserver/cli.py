"""`vk-provider sandbox apiserver`: run the sandbox API server alone until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

from vk_provider.log import configure_logging
from vk_sandbox.apiserver.server import SandboxAPIServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 picks a free one)")
    parser.add_argument("--dir", dest="dir", default=None, help="directory for the kubeconfig and certificates")
    parser.add_argument(
        "--ready-file", dest="ready_file", default=None, help='write {"url", "kubeconfig"} as JSON here once serving'
    )
    parser.add_argument(
        "--no-controllers",
        dest="no_controllers",
        action="store_true",
        help="do not run the built-in scheduler and controllers",
    )


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vk-sandbox-apiserver-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SandboxAPIServer(
            directory=directory, port=args.port, controllers=not getattr(args, "no_controllers", False)
        ) as server:
            if args.ready_file:
                ready = Path(args.ready_file)
                tmp = ready.with_name(ready.name + ".tmp")
                tmp.write_text(json.dumps({"url": server.url, "kubeconfig": str(server.kubeconfig_path)}))
                tmp.replace(ready)
            print(
                f"sandbox API server at {server.url}; kubeconfig: export KUBECONFIG={server.kubeconfig_path}",
                flush=True,
            )
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def main(args: argparse.Namespace) -> int:
    # Logs go to stderr, so stdout carries only the one ready line.
    configure_logging(getattr(args, "log_level", "info"))
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(f"vk-provider sandbox apiserver: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
