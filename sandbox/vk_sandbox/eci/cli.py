"""`vk-provider sandbox eci`: run the ECI simulator alone until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vk_sandbox.eci.exec_ws import ExecOptions

DEFAULT_DIR = ".sandbox/eci"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: a free port)")
    parser.add_argument("--dir", default=DEFAULT_DIR, help=f"state directory: SQLite, logs, volumes [{DEFAULT_DIR}]")
    parser.add_argument(
        "--runtime",
        choices=("process", "virtual"),
        default="process",
        help="process: containers are real local processes; virtual: no processes, for scale runs [process]",
    )
    parser.add_argument("--ready-file", help="write {endpoint, region, access_key_id, access_key_secret} here")
    parser.add_argument("--region", default="cn-hangzhou", help="the region served [cn-hangzhou]")
    parser.add_argument("--access-key-id", help="accepted AccessKey ID (default: generated)")
    parser.add_argument("--access-key-secret", help="its secret (default: generated; prefer the ready file)")
    parser.add_argument(
        "--latency", choices=("fast", "realistic"), default="fast", help="provisioning latency profile [fast]"
    )
    parser.add_argument("--faults", help="standing faults at start, as the JSON of POST /_sim/faults")
    parser.add_argument(
        "--exec-subprotocols",
        default="",
        help="exec WebSocket subprotocols accepted when offered, comma-separated (v5.channel.k8s.io, "
        "v4.channel.k8s.io, channel.k8s.io); default none: every session speaks v1, as ECI is seen to",
    )
    parser.add_argument(
        "--exec-idle-timeout",
        type=float,
        default=60.0,
        help="seconds without a frame from the client before an exec socket is closed [60]",
    )


def main(args: argparse.Namespace) -> int:
    if bool(args.access_key_id) != bool(args.access_key_secret):
        print("vk-provider: give both --access-key-id and --access-key-secret, or neither", file=sys.stderr)
        return 2
    from vk_sandbox.eci.exec_ws import ExecOptions

    try:
        subprotocols = tuple(p.strip() for p in args.exec_subprotocols.split(",") if p.strip())
        exec_options = ExecOptions(subprotocols=subprotocols, idle_timeout=args.exec_idle_timeout)
    except ValueError as exc:
        print(f"vk-provider: {exc}", file=sys.stderr)
        return 2
    faults = None
    if args.faults:
        try:
            faults = json.loads(args.faults)
        except ValueError as exc:
            print(f"vk-provider: --faults is not JSON: {exc}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_serve(args, faults, exec_options))
    except KeyboardInterrupt:
        return 130


async def _serve(args: argparse.Namespace, faults: dict[str, object] | None, exec_options: ExecOptions) -> int:
    from vk_sandbox.eci.server import ECISimulator

    keys = {args.access_key_id: args.access_key_secret} if args.access_key_id else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ECISimulator(
        directory=Path(args.dir),
        runtime=args.runtime,
        port=args.port,
        region=args.region,
        access_keys=keys,
        latency_profile=args.latency,
        faults=faults,
        exec_options=exec_options,
    ) as sim:
        info = {
            "endpoint": sim.endpoint,
            "region": sim.region,
            "access_key_id": sim.access_key_id,
            "access_key_secret": sim.access_key_secret,
        }
        if args.ready_file:
            path = Path(args.ready_file)
            tmp = path.with_name(path.name + ".tmp")
            # The file holds the secret: readable by the owner only, and written atomically.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            tmp.replace(path)
        print(f"ECI simulator on {sim.endpoint} (region {sim.region}, runtime {args.runtime})", flush=True)
        where = "is in the ready file" if args.ready_file else "is not shown (use --ready-file)"
        print(f"AccessKeyId {sim.access_key_id}; the secret {where}", flush=True)
        await stop.wait()
    return 0
