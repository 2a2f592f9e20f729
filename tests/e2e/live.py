"""`make e2e-live`: tests/e2e against the user's cluster (KUBECONFIG) and real ECI, then a cleanup that always runs.

``python -m tests.e2e.live [pytest args]`` checks the environment (``REQUIRED``); with something missing it prints one
line naming it and exits 0 (CI has no cloud). Otherwise it picks a run name (``vk-e2e-<random>``: the virtual node's
name and the ECI cluster tag of every group the run's daemons create), runs pytest with VK_E2E_TIER=live in its own
process group, kills that group when VK_LIVE_TIME_LIMIT_MINUTES pass, and then, whatever happened, deletes every ECI
group tagged with the run's name, the pods bound to the run's node, the node and the run's namespaces.
See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from vk_provider.eci import names
from vk_provider.eci.client import ECIClient
from vk_provider.eci.listing import describe_by_tags
from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.settings import ECISettings, load_settings

REQUIRED = (
    "KUBECONFIG",
    "VK_LIVE_REGION",
    "VK_LIVE_ACCESS_KEY_ID",
    "VK_LIVE_ACCESS_KEY_SECRET",
    "VK_LIVE_VSWITCH_IDS",
    "VK_LIVE_SECURITY_GROUP_ID",
)
DOCS = "docs/operations.md#live-end-to-end-tests"
DEFAULT_LIMIT_MINUTES = 30.0
KILL_GRACE_SECONDS = 10.0  # after SIGTERM to the pytest process group, before SIGKILL
RUN_LABEL = "vk-eci.e2e/run"  # on the namespaces of a run
TIMED_OUT = 124  # the exit status when the time limit killed pytest (as timeout(1))


def missing(env: Mapping[str, str]) -> list[str]:
    return [name for name in REQUIRED if not env.get(name)]


def run_name(env: Mapping[str, str]) -> str:
    """This run's node name and cluster tag: VK_LIVE_RUN (the runner sets it for pytest) or a new one."""
    return env.get("VK_LIVE_RUN") or f"vk-e2e-{secrets.token_hex(4)}"


def kubelet_address(env: Mapping[str, str]) -> tuple[str, int] | None:
    """VK_LIVE_KUBELET_ADDRESS (``host[:port]``, port 10250 by default): where the API server reaches this machine."""
    value = env.get("VK_LIVE_KUBELET_ADDRESS", "")
    if not value:
        return None
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "10250")
    return host, int(port)


def live_flags(env: Mapping[str, str], run: str) -> dict[str, Any]:
    """The daemon's ECI settings for the live tier, from the environment."""
    flags: dict[str, Any] = {
        "node.name": run,
        "eci.region": env["VK_LIVE_REGION"],
        "eci.access_key_id": env["VK_LIVE_ACCESS_KEY_ID"],
        "eci.access_key_secret": env["VK_LIVE_ACCESS_KEY_SECRET"],
        "eci.vswitch_ids": [v.strip() for v in env["VK_LIVE_VSWITCH_IDS"].split(",") if v.strip()],
        "eci.security_group_id": env["VK_LIVE_SECURITY_GROUP_ID"],
        "eci.cluster_name": run,
        "kube.kubeconfig": env["KUBECONFIG"],
    }
    if env.get("VK_LIVE_SECURITY_TOKEN"):
        flags["eci.security_token"] = env["VK_LIVE_SECURITY_TOKEN"]
    if env.get("VK_LIVE_ENDPOINT"):
        flags["eci.endpoint"] = env["VK_LIVE_ENDPOINT"]
    return flags


def run_pytest(command: Sequence[str], env: Mapping[str, str], limit_seconds: float) -> int:
    """Run ``command`` in its own process group; past ``limit_seconds`` kill the whole group (TERM, then KILL)."""
    proc = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
    try:
        return proc.wait(timeout=limit_seconds)
    except subprocess.TimeoutExpired:
        print(f"e2e-live: time limit of {limit_seconds:g} s reached; stopping pytest", file=sys.stderr, flush=True)
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        return TIMED_OUT
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): take pytest down too
            _kill_group(proc, signal.SIGKILL)
            proc.wait()


def _kill_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


async def delete_tagged_groups(eci: ECISettings, run: str) -> list[str]:
    """Delete every ECI group tagged ``vk-eci/cluster=<run>``; the ids deleted. Every group is tried; the ones that
    could not be deleted are named in the error raised at the end."""
    client = ECIClient(eci)
    deleted, failed = [], []
    try:
        tag = {"Tag.1.Key": names.TAG_CLUSTER, "Tag.1.Value": run}
        for group in await describe_by_tags(client.call, tag):
            try:
                await client.call("DeleteContainerGroup", {"ContainerGroupId": group.ContainerGroupId})
                deleted.append(group.ContainerGroupId)
            except Exception as exc:  # the next group is still tried
                failed.append(f"{group.ContainerGroupId} ({exc})")
    finally:
        await client.close()
    if failed:
        raise RuntimeError(f"deleted {len(deleted)}, could not delete {', '.join(failed)}")
    return deleted


async def delete_node_and_pods(kube: KubeAPI, node: str) -> list[str]:
    """Force-delete the pods bound to ``node`` (in every namespace), then the Node and the namespaces labelled with
    the run; the pods deleted."""
    pods = await kube.get("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})
    deleted = []
    for pod in pods.get("items") or []:
        meta = pod["metadata"]
        await delete(kube, f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", grace=0)
        deleted.append(f"{meta['namespace']}/{meta['name']}")
    await delete(kube, f"/api/v1/nodes/{node}")
    namespaces = await kube.get("/api/v1/namespaces", query={"labelSelector": f"{RUN_LABEL}={node}"})
    for ns in namespaces.get("items") or []:
        await delete(kube, f"/api/v1/namespaces/{ns['metadata']['name']}")
    return deleted


async def delete(kube: KubeAPI, path: str, grace: int | None = None) -> None:
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if grace is not None:
        body["gracePeriodSeconds"] = grace
    try:
        await kube.request("DELETE", path, body=body)
    except KubeError as exc:
        if not exc.not_found:
            raise


async def kube_api(kubeconfig: str) -> KubeAPI:
    cfg = k8s_client.Configuration()
    await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    return KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=30)


async def cleanup(env: Mapping[str, str], run: str) -> bool:
    """The run's groups, pods and node gone; each step is tried even when another fails. True when all worked."""
    ok = True
    eci = load_settings(live_flags(env, run)).eci
    try:
        groups = await delete_tagged_groups(eci, run)
        print(f"e2e-live: cleanup: deleted {len(groups)} ECI group(s) tagged {names.TAG_CLUSTER}={run}", flush=True)
    except Exception as exc:
        ok = False
        print(f"e2e-live: cleanup: ECI groups tagged {names.TAG_CLUSTER}={run} NOT deleted: {exc}", flush=True)
    try:
        kube = await kube_api(env["KUBECONFIG"])
        try:
            pods = await delete_node_and_pods(kube, run)
        finally:
            await kube.close()
        print(f"e2e-live: cleanup: deleted node {run}, its namespaces and {len(pods)} pod(s) bound to it", flush=True)
    except Exception as exc:
        ok = False
        print(f"e2e-live: cleanup: node {run} or its pods NOT deleted: {exc}", flush=True)
    return ok


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    absent = missing(env)
    if absent:
        print(f"e2e-live: not run: set {', '.join(absent)} ({DOCS})")
        return 0
    try:
        limit = float(env.get("VK_LIVE_TIME_LIMIT_MINUTES") or DEFAULT_LIMIT_MINUTES) * 60
    except ValueError:
        print(f"e2e-live: VK_LIVE_TIME_LIMIT_MINUTES={env['VK_LIVE_TIME_LIMIT_MINUTES']!r}: expected minutes")
        return 2
    run = run_name(env)
    env.update(VK_E2E_TIER="live", VK_LIVE_RUN=run)
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests" / "e2e")]
    print(f"e2e-live: run {run}, time limit {limit / 60:g} min", flush=True)
    try:
        status = run_pytest([*command, *(argv or [])], env, limit)
    finally:
        cleaned = asyncio.run(cleanup(env, run))
    return status if status or cleaned else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
