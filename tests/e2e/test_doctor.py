"""`vk-provider doctor` against the sandbox (either tier): every failure mode it exists for, each with its fix."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import NODE, Stack, StackFactory, daemon_flags
from vk_provider.doctor.report import Check, passed
from vk_provider.doctor.run import run_checks
from vk_provider.kubelet.tls import make_csr
from vk_provider.settings import Settings, load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.simulator]

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def settings_for(stack: Stack, tmp_path: Path, **extra: Any) -> Settings:
    flags = daemon_flags(stack.apiserver, stack.sim, tmp_path)
    flags["kube.kubeconfig"] = str(stack.settings.kube.kubeconfig)
    flags.update(extra)
    return load_settings(flags)


def failed(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if c.status == "fail" and c.required]


async def test_everything_passes_against_a_healthy_sandbox(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(daemon=False)
    checks = await run_checks(stack.settings)
    assert failed(checks) == [], [(c.name, c.detail) for c in checks if c.status == "fail"]
    got = by_name(checks)
    assert got["eci.credentials"].detail.startswith("AccessKey pair")
    assert got["eci.create-dry-run"].status == "ok"
    assert abs(got["eci.clock"].data["skew_seconds"]) < 5
    assert got["kube.node-name"].status == "ok" and "free" in got["kube.node-name"].detail
    # metrics.k8s.io is served on both tiers: by the sandbox API server itself, and by metrics-server on the real one.
    metrics = got["kube.metrics-server"]
    assert (metrics.status, metrics.required) == ("ok", False), metrics
    webhook = got["kube.elastic-webhook"]  # not installed in a bare cluster: advisory
    assert webhook.status == "fail" and not webhook.required and "manifests/webhook.yaml" in webhook.fix
    for action in ("DescribeContainerGroups", "DescribeContainerGroupStatus", "DescribeContainerLog", "ListUsage"):
        assert got[f"eci.allow.{action}"].status == "ok"
    # The dry run left nothing behind.
    assert stack.sim.stats()["total_groups"] == 0


async def test_wrong_access_key_secret(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(daemon=False)
    checks = by_name(await run_checks(settings_for(stack, tmp_path, **{"eci.access_key_secret": "not-the-secret"})))
    creds = checks["eci.credentials"]
    assert creds.status == "fail" and "eci.access_key_secret" in creds.fix
    assert "not-the-secret" not in json.dumps([c.__dict__ for c in checks.values()])
    assert checks["eci.create-dry-run"].status == "skipped"
    assert not passed(list(checks.values()))


async def test_reduced_cluster_role_names_the_missing_permission(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(daemon=False)
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole")
    role["metadata"]["name"] = "vk-eci-reduced"
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["services"]]
    await stack.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    await stack.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vk"}})
    await stack.create(
        "/api/v1/namespaces/vk/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vk"}},
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "vk-eci-reduced"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "vk-eci-reduced"},
        "subjects": [{"kind": "ServiceAccount", "name": "vk", "namespace": "vk"}],
    }
    await stack.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    token = stack.apiserver.mint_token("vk", "vk")
    kubeconfig = stack.apiserver.user_kubeconfig(tmp_path / "sa.kubeconfig", token=token)
    checks = by_name(await run_checks(settings_for(stack, tmp_path, **{"kube.kubeconfig": str(kubeconfig)})))
    perms = checks["kube.permissions"]
    assert perms.status == "fail"
    assert perms.data["missing"] == ["list services"]
    assert "manifests/rbac.yaml" in perms.fix
    assert checks["kube.node-name"].status == "ok"  # get nodes is still granted


async def test_wrong_vswitch(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(daemon=False)
    await stack.sim.set_faults({"network": {"vswitches": ["vsw-e2e"], "security_groups": ["sg-e2e"]}})
    checks = by_name(await run_checks(settings_for(stack, tmp_path, **{"eci.vswitch_ids": ["vsw-e2e", "vsw-gone"]})))
    dry = checks["eci.create-dry-run"]
    assert dry.status == "fail" and "InvalidVSwitchId.NotFound" in dry.detail
    assert "eci.vswitch_ids" in dry.fix
    checks = by_name(await run_checks(settings_for(stack, tmp_path, **{"eci.security_group_id": "sg-other"})))
    assert "eci.security_group_id" in checks["eci.create-dry-run"].fix


async def test_vswitches_without_stock(make_stack: StackFactory) -> None:
    stack = await make_stack(daemon=False)
    await stack.sim.set_faults({"no_stock": {"vswitches": ["vsw-e2e"]}})
    dry = by_name(await run_checks(stack.settings))["eci.create-dry-run"]
    assert dry.status == "fail" and "NoStock" in dry.detail and "other zones" in dry.fix


async def test_node_name_taken_by_a_real_node(make_stack: StackFactory) -> None:
    stack = await make_stack(daemon=False)
    await stack.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    node = by_name(await run_checks(stack.settings))["kube.node-name"]
    assert node.status == "fail" and "node.name" in node.fix
    await stack.kube.request(
        "PATCH",
        f"/api/v1/nodes/{NODE}",
        body={"metadata": {"labels": {"type": "virtual-kubelet"}}},
        content_type="application/merge-patch+json",
    )
    node = by_name(await run_checks(stack.settings))["kube.node-name"]
    assert node.status == "ok" and "adopts" in node.detail


async def test_skewed_clock(make_stack: StackFactory) -> None:
    stack = await make_stack(daemon=False)
    # Within the service's 15 minutes: calls work, doctor still fails the clock.
    await stack.sim.set_faults({"clock_offset_seconds": -400})
    checks = by_name(await run_checks(stack.settings))
    clock = checks["eci.clock"]
    assert clock.status == "fail" and 390 <= clock.data["skew_seconds"] <= 410
    assert "NTP" in clock.fix
    assert checks["eci.create-dry-run"].status == "ok"
    # Beyond them: the service refuses every request; doctor names the clock, not the credentials.
    await stack.sim.set_faults({"clock_offset_seconds": 3600})
    checks = by_name(await run_checks(stack.settings))
    assert checks["eci.clock"].status == "fail" and "refuses" in checks["eci.clock"].detail
    assert checks["eci.credentials"].status == "skipped"


async def test_ram_policy_without_an_action(make_stack: StackFactory) -> None:
    stack = await make_stack(daemon=False)
    await stack.sim.set_faults({"deny": ["DescribeContainerLog"]})
    checks = by_name(await run_checks(stack.settings))
    log = checks["eci.allow.DescribeContainerLog"]
    assert log.status == "fail" and "eci:DescribeContainerLog" in log.fix
    assert checks["eci.credentials"].status == "ok"
    assert failed(list(checks.values())) == ["eci.allow.DescribeContainerLog"]


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vk_provider.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return int(proc.returncode or 0), out.decode(), err.decode()


def _cli_flags(stack: Stack) -> list[str]:
    eci = stack.settings.eci
    return [
        "--kubeconfig",
        str(stack.settings.kube.kubeconfig),
        "--node-name",
        NODE,
        "--eci-endpoint",
        str(eci.endpoint),
        "--eci-region",
        eci.region,
        "--eci-vswitch-ids",
        "vsw-e2e",
        "--eci-security-group-id",
        "sg-e2e",
        "--kubelet-tls-mode",
        "self-signed",
    ]


async def test_cli_exit_codes_and_json(make_stack: StackFactory) -> None:
    stack = await make_stack(daemon=False)
    env = {"VK_ECI__ACCESS_KEY_ID": stack.sim.access_key_id, "VK_ECI__ACCESS_KEY_SECRET": stack.sim.access_key_secret}
    code, out, _ = await _cli("doctor", "--output", "json", *_cli_flags(stack), env=env)
    report = json.loads(out)
    assert code == 0 and report["ready"] is True
    code, out, _ = await _cli("doctor", *_cli_flags(stack), env={**env, "VK_ECI__ACCESS_KEY_SECRET": "wrong"})
    assert code == 1 and "✗ eci.credentials" in out and "fix: " in out and "NOT ready" in out
    code, _, err = await _cli("doctor", *_cli_flags(stack), "--eci-rate-limit-qps", "-1", env=env)
    assert code == 2 and "eci.rate_limit_qps" in err


async def test_serving_certificate_csr_waiting_for_approval(make_stack: StackFactory, tmp_path: Path) -> None:
    stack = await make_stack(daemon=False)
    settings = settings_for(stack, tmp_path, **{"kubelet.tls_mode": "csr"})
    check = by_name(await run_checks(settings))["kubelet.serving-certificate"]
    assert check.status == "ok" and "no serving CSR yet" in check.detail
    csr_pem, _key = make_csr(NODE, [NODE, "127.0.0.1"])
    csr = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": f"csr-{NODE}-doctor"},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["digital signature", "server auth"],
        },
    }
    await stack.create("/apis/certificates.k8s.io/v1/certificatesigningrequests", csr)
    check = by_name(await run_checks(settings))["kubelet.serving-certificate"]
    assert check.status == "fail" and check.fix == f"kubectl certificate approve csr-{NODE}-doctor", check.detail
