"""`vk-provider sandbox`: the sandbox API server, the ECI simulator and the daemon in one process.

It uses the product exactly as a user would: the daemon gets a kubeconfig and an ECI endpoint with
credentials, nothing else. Ctrl-C or SIGTERM stops the daemon, then the simulator (which kills its
container processes), then the API server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from vk_sandbox.apiserver.cli import add_worker_arguments, worker_spec
from vk_sandbox.apiserver.webhookconfig import MUTATING, default_configuration
from vk_sandbox.apiserver.workers import WorkerSpec

NODE_NAME = "virtual-kubelet-eci"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path(".sandbox"), help="directory holding all state")
    parser.add_argument("--ready-file", type=Path, help="write JSON with the endpoints here when ready")
    parser.add_argument(
        "--runtime", choices=("process", "virtual"), default="process", help="how the simulator runs groups"
    )
    parser.add_argument("--node-name", default=NODE_NAME, help="name of the virtual node")
    add_worker_arguments(parser)


WEBHOOK_CONFIGURATION = "vk-eci"


def elastic_webhook_configuration(port: int) -> dict[str, Any]:
    """The product's shipped MutatingWebhookConfiguration (manifests/webhook.yaml), pointed at the daemon by URL:
    the sandbox has no pod network to reach a Service. The daemon writes its CA into ``caBundle`` at start."""
    hook = {
        "name": "pods.elastic.vk-eci.io",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate-pods"},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "failurePolicy": "Ignore",
        "sideEffects": "None",
        "timeoutSeconds": 2,
        "reinvocationPolicy": "Never",
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "vk-eci"]}
            ]
        },
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION},
        "webhooks": [hook],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _progress(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {message}", file=sys.stderr, flush=True)


def banner(kubeconfig: Path, node: str, metrics_url: str, workers: list[str] | None = None) -> str:
    return "\n".join(
        [
            "",
            "vk-eci sandbox is ready: a local API server, the ECI simulator and the daemon.",
            f"  kubeconfig:   {kubeconfig}",
            f"  virtual node: {node}",
            f"  workers:      {', '.join(workers) if workers else 'none'}",
            f"  metrics:      {metrics_url}",
            "",
            "Try it (in another terminal):",
            f"  export KUBECONFIG={kubeconfig}",
            "  kubectl apply -f manifests/examples/deployment.yaml",
            "  kubectl logs deploy/hello-eci",
            "  kubectl exec deploy/hello-eci -- sh -c 'echo hello from $HOSTNAME'",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def daemon_flags(sim: Any, *, kubeconfig: Path, node_name: str, directory: Path, name: str) -> dict[str, Any]:
    """The daemon's settings beside the ECI simulator ``sim``, everything on 127.0.0.1; ``name`` names the cluster,
    vSwitch and security group."""
    return {
        "kube.kubeconfig": str(kubeconfig),
        "node.name": node_name,
        "node.internal_ip": "127.0.0.1",
        "eci.endpoint": sim.endpoint,
        "eci.region": sim.region,
        "eci.access_key_id": sim.access_key_id,
        "eci.access_key_secret": sim.access_key_secret,
        "eci.vswitch_ids": [f"vsw-{name}"],
        "eci.security_group_id": f"sg-{name}",
        "eci.cluster_name": name,
        "kubelet.port": 0,
        "kubelet.bind_address": "127.0.0.1",
        "kubelet.cert_dir": str(directory / "kubelet-certs"),
        "metrics.port": 0,
        "metrics.bind_address": "127.0.0.1",
        "elastic.webhook_port": 0,
        "elastic.webhook_bind_address": "127.0.0.1",
    }


def _prepare(directory: Path) -> Path:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _write_ready(path: Path, ready: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(ready) + "\n")
    tmp.replace(path)  # readers never see half a file


async def run_sandbox(
    directory: Path,
    *,
    runtime: str = "process",
    node_name: str = NODE_NAME,
    ready_file: Path | None = None,
    stop: asyncio.Event | None = None,
    workers: WorkerSpec | None = None,
) -> None:
    # Imported here: the all-in-one is the only place the sandbox and the product meet.
    from vk_provider.app import Daemon
    from vk_provider.settings import load_settings
    from vk_sandbox.apiserver.server import SandboxAPIServer
    from vk_sandbox.eci.server import ECISimulator

    started = time.monotonic()
    directory = await asyncio.to_thread(_prepare, directory)
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        _progress("starting the sandbox API server", started)
        apiserver = await stack.enter_async_context(
            SandboxAPIServer(directory=directory / "apiserver", workers=workers)
        )
        _progress(f"API server on {apiserver.url}", started)
        _progress(f"starting the ECI simulator ({runtime} runtime)", started)
        sim = await stack.enter_async_context(ECISimulator(directory=directory / "eci", runtime=runtime))
        _progress(f"ECI simulator on {sim.endpoint}", started)
        # The daemon runs as the node's identity (as a kubelet does), so the sandbox's CSR approver signs
        # its kubelet serving certificate; the extra group lets it do what the manifests' ClusterRole grants.
        node_kubeconfig = apiserver.user_kubeconfig(
            directory / "node.kubeconfig", user=f"system:node:{node_name}", groups=["system:nodes", "system:masters"]
        )
        flags = daemon_flags(sim, kubeconfig=node_kubeconfig, node_name=node_name, directory=directory, name="sandbox")
        webhook_port = _free_port()
        flags["elastic.webhook_port"] = webhook_port
        settings = load_settings(flags)
        # The elastic webhook is registered before the daemon starts, so the daemon finds it and writes its caBundle.
        webhook = elastic_webhook_configuration(webhook_port)
        default_configuration(MUTATING, webhook)
        apiserver.store.create_now(MUTATING, webhook)
        _progress("starting the daemon", started)
        daemon = Daemon(settings)
        await daemon.start()
        stack.push_async_callback(daemon.stop)
        await daemon.wait_ready(timeout=60)
        await daemon.wait_serving(timeout=60)
        _progress(f"node {node_name} is Ready; kubelet API on 127.0.0.1:{daemon.kubelet_port}", started)
        if ready_file is not None:
            ready = {
                "kubeconfig": str(apiserver.kubeconfig_path),
                "node": node_name,
                "eci_endpoint": sim.endpoint,
                "kubelet_port": daemon.kubelet_port,
                "metrics_url": daemon.metrics_url,
            }
            await asyncio.to_thread(_write_ready, ready_file, ready)
        print(banner(apiserver.kubeconfig_path, node_name, daemon.metrics_url, apiserver.workers.names()), flush=True)
        await stop.wait()
        _progress("stopping", started)


def main(args: argparse.Namespace) -> int:
    from vk_provider.log import configure_logging

    try:
        workers = worker_spec(args)
    except ValueError as exc:
        print(f"vk-provider sandbox: {exc}", file=sys.stderr)
        return 2
    configure_logging("warning", "console" if sys.stderr.isatty() else "json")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_sandbox(
            args.dir,
            runtime=args.runtime,
            node_name=args.node_name,
            ready_file=args.ready_file,
            stop=stop,
            workers=workers,
        )

    asyncio.run(_main())
    return 0
