"""`make real-cluster`: upstream's control plane on loopback, the ECI simulator and the daemon beside it.

Like `make run` (vk_sandbox.up), but the API server, scheduler and controllers are the real ones, and the worker
nodes are kwok's (`--workers`, 2 of 2 CPU by default, as `make run`'s). The daemon's admission webhook is registered
with the shipped configuration, so the default elastic profile works: a namespace labelled `vk-eci.io/mode=burst`
bursts what the workers cannot hold. The daemon runs as a cluster-admin user; this launcher plays the operator who
approves its kubelet-serving CSR, and the real controller-manager signs it. Ctrl-C or SIGTERM stops the daemon, the
simulator, then the control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from tests.controlplane.approver import approve_serving_csrs
from tests.controlplane.launcher import ControlPlane, ControlPlaneError
from vk_sandbox.apiserver.cli import add_worker_arguments, worker_spec
from vk_sandbox.apiserver.workers import WorkerSpec

NODE_NAME = "virtual-kubelet-eci"
DAEMON_USER = "vk-eci-daemon"
MUTATING_WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def banner(cluster: ControlPlane, node: str, metrics_url: str, workers: list[str]) -> str:
    return "\n".join(
        [
            "",
            "vk-eci on a real control plane is ready: etcd, kube-apiserver, kube-controller-manager,",
            "kube-scheduler and metrics-server (upstream's, built by `make controlplane`), the ECI simulator and",
            "the daemon.",
            f"  API server:   {cluster.url}",
            f"  kubeconfig:   {cluster.kubeconfig_path}",
            f"  virtual node: {node}",
            f"  workers:      {', '.join(workers) if workers else 'none'} (kwok)",
            f"  metrics:      {metrics_url}",
            f"  logs:         {cluster.directory / 'logs'}",
            "",
            "Try it (in another terminal):",
            f"  export KUBECONFIG={cluster.kubeconfig_path}",
            "  kubectl apply -f manifests/examples/deployment.yaml",
            "  kubectl logs deploy/hello-eci",
            "  kubectl exec deploy/hello-eci -- sh -c 'echo hello from $HOSTNAME'",
            "  kubectl top pod",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )


async def run(
    directory: Path,
    node: str,
    runtime: str,
    stop: asyncio.Event,
    ready_file: Path | None = None,
    workers: WorkerSpec | None = None,
) -> None:
    from tests.e2e.conftest import admin_api
    from vk_provider.app import Daemon
    from vk_provider.settings import load_settings
    from vk_sandbox.eci.server import ECISimulator
    from vk_sandbox.up import _free_port, _progress, _write_ready, daemon_flags, elastic_webhook_configuration

    started = time.monotonic()
    directory = directory.resolve()
    async with contextlib.AsyncExitStack() as stack:
        _progress("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler", started)
        cluster = ControlPlane(directory / "cluster")
        stack.callback(cluster.stop)
        await asyncio.to_thread(cluster.start)
        _progress(f"API server on {cluster.url}", started)
        names: list[str] = []
        if workers is not None and workers.count:
            names = await asyncio.to_thread(cluster.add_workers, workers)
            _progress(f"worker nodes {', '.join(names)} Ready (kwok)", started)
        sim = await stack.enter_async_context(ECISimulator(directory=directory / "eci", runtime=runtime))
        _progress(f"ECI simulator on {sim.endpoint} ({runtime} runtime)", started)
        kube = await admin_api(cluster)
        stack.push_async_callback(kube.close)
        approver = asyncio.create_task(approve_serving_csrs(kube, DAEMON_USER))
        stack.callback(approver.cancel)
        # Not the node identity: NodeRestriction refuses a node the kubernetes.io/role label the daemon sets.
        node_kubeconfig = cluster.user_kubeconfig(
            directory / "daemon.kubeconfig", user=DAEMON_USER, groups=["system:masters"]
        )
        flags = daemon_flags(sim, kubeconfig=node_kubeconfig, node_name=node, directory=directory, name="real")
        flags["kubelet.csr_poll_seconds"] = 0.5
        # Registered before the daemon starts, so the daemon finds it and writes its caBundle (as `make run`).
        flags["elastic.webhook_port"] = webhook_port = _free_port()
        await kube.request("POST", MUTATING_WEBHOOKS, body=elastic_webhook_configuration(webhook_port))
        _progress("starting the daemon", started)
        daemon = Daemon(load_settings(flags))
        await daemon.start()
        stack.push_async_callback(daemon.stop)
        await daemon.wait_ready(timeout=60)
        await daemon.wait_serving(timeout=60)
        _progress(f"node {node} is Ready; kubelet API on 127.0.0.1:{daemon.kubelet_port}", started)
        if ready_file is not None:  # the same keys as `vk-provider sandbox --ready-file`
            ready = {
                "kubeconfig": str(cluster.kubeconfig_path),
                "node": node,
                "eci_endpoint": sim.endpoint,
                "kubelet_port": daemon.kubelet_port,
                "metrics_url": daemon.metrics_url,
            }
            await asyncio.to_thread(_write_ready, ready_file, ready)
        print(banner(cluster, node, daemon.metrics_url, names), flush=True)
        await stop.wait()
        _progress("stopping", started)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.controlplane", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".real-cluster"), help="directory holding all state")
    parser.add_argument("--ready-file", type=Path, help="write JSON with the endpoints here when ready")
    parser.add_argument("--node-name", default=NODE_NAME, help="name of the virtual node")
    parser.add_argument("--runtime", choices=("process", "virtual"), default="process", help="simulator runtime")
    add_worker_arguments(parser)
    args = parser.parse_args()
    try:
        workers = worker_spec(args)
    except ValueError as exc:
        print(f"real-cluster: {exc}", file=sys.stderr)
        return 2
    from vk_provider.log import configure_logging

    configure_logging("warning", "console" if sys.stderr.isatty() else "json")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(args.dir, args.node_name, args.runtime, stop, args.ready_file, workers)

    try:
        asyncio.run(_main())
    except ControlPlaneError as exc:
        print(f"real-cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
