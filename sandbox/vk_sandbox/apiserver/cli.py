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
from vk_sandbox.apiserver.workers import WorkerSpec

DEFAULT_WORKERS = WorkerSpec(count=2)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers/--worker-cpu/--worker-memory/--worker-pods (shared with the all-in-one ``vk-provider sandbox``)."""
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS.count,
        help=f"worker nodes run by the hollow kubelet (default {DEFAULT_WORKERS.count}; 0 for none)",
    )
    parser.add_argument(
        "--worker-cpu", dest="worker_cpu", default=DEFAULT_WORKERS.cpu, help="CPU of each worker (a quantity)"
    )
    parser.add_argument(
        "--worker-memory",
        dest="worker_memory",
        default=DEFAULT_WORKERS.memory,
        help="memory of each worker (a quantity)",
    )
    parser.add_argument(
        "--worker-pods", dest="worker_pods", type=int, default=DEFAULT_WORKERS.pods, help="pods each worker accepts"
    )


def worker_spec(args: argparse.Namespace) -> WorkerSpec:
    """The workers the flags ask for; ValueError naming the bad flag."""
    return WorkerSpec(
        count=getattr(args, "workers", DEFAULT_WORKERS.count),
        cpu=getattr(args, "worker_cpu", DEFAULT_WORKERS.cpu),
        memory=getattr(args, "worker_memory", DEFAULT_WORKERS.memory),
        pods=getattr(args, "worker_pods", DEFAULT_WORKERS.pods),
    )


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
    add_worker_arguments(parser)


async def _serve(args: argparse.Namespace, workers: WorkerSpec) -> int:
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vk-sandbox-apiserver-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SandboxAPIServer(
            directory=directory,
            port=args.port,
            controllers=not getattr(args, "no_controllers", False),
            workers=workers,
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
    try:
        workers = worker_spec(args)
    except ValueError as exc:
        print(f"vk-provider sandbox apiserver: {exc}", file=sys.stderr)
        return 2
    configure_logging(getattr(args, "log_level", "info"))
    try:
        return asyncio.run(_serve(args, workers))
    except OSError as exc:
        print(f"vk-provider sandbox apiserver: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
