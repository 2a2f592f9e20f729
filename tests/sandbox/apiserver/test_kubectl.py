"""The real kubectl against the sandbox API server (fresh cache dir per test)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubectl import Kubectl
from tests.waiting import eventually
from vk_sandbox.apiserver.server import SandboxAPIServer

pytestmark = pytest.mark.kubectl

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]}]},
}


async def _node(srv: SandboxAPIServer, name: str = "n1") -> None:
    await srv.store.create(
        "nodes",
        {
            "metadata": {"name": name, "labels": {"node-role.kubernetes.io/agent": ""}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.32.3-vk",
                    "osImage": "ECI",
                    "kernelVersion": "5.10",
                    "containerRuntimeVersion": "eci://1",
                },
            },
        },
    )


async def _bound_pod(srv: SandboxAPIServer, name: str = "web", node: str = "n1") -> dict[str, Any]:
    pod = json.loads(json.dumps(POD))
    pod["metadata"]["name"] = name
    await srv.store.create("pods", pod)

    def bind(p: dict[str, Any]) -> dict[str, Any]:
        p["spec"]["nodeName"] = node
        p["status"] = {
            "phase": "Running",
            "podIP": "10.0.0.9",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": True,
                    "restartCount": 2,
                    "image": "nginx:1.27",
                    "imageID": "",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ],
        }
        return p

    return await srv.store.mutate("pods", "default", name, bind, subresource="binding")


async def test_get_plain_wide_yaml_all_namespaces_and_labels(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`get` prints the real pod and node columns, -o wide adds IP/NODE, -A adds NAMESPACE, --show-labels LABELS."""
    await _node(apiserver)
    await _bound_pod(apiserver)
    out = await kubectl.ok("get", "pods")
    assert out.split("\n")[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert out.split("\n")[1].split()[:4] == ["web", "1/1", "Running", "2"]
    wide = await kubectl.ok("get", "pods", "-o", "wide")
    assert "NOMINATED NODE" in wide and "READINESS GATES" in wide
    assert "10.0.0.9" in wide and " n1 " in wide
    nodes = await kubectl.ok("get", "nodes", "-o", "wide")
    assert nodes.split("\n")[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert "Ready" in nodes and "agent" in nodes and "127.0.0.2" in nodes and "eci://1" in nodes
    all_ns = await kubectl.ok("get", "pods", "-A", "--show-labels")
    assert all_ns.split("\n")[0].split()[0] == "NAMESPACE" and "LABELS" in all_ns and "app=web" in all_ns
    doc = yaml.safe_load(await kubectl.ok("get", "pod", "web", "-o", "yaml"))
    assert doc["spec"]["nodeName"] == "n1" and doc["status"]["qosClass"] == "BestEffort"
    assert doc["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    for res in ("namespaces", "leases", "configmaps", "secrets", "events", "serviceaccounts", "services"):
        await kubectl.ok("get", res, "-A")
    rc, _, err = await kubectl.run("get", "pod", "missing")
    assert rc == 1 and 'pods "missing" not found' in err


async def test_describe_pod_shows_events(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`describe pod` lists the pod's core/v1 events, even ones written through events.k8s.io/v1."""
    pod = await apiserver.store.create("pods", POD)
    await apiserver.store.create(
        "events",
        {
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {
                "kind": "Pod",
                "name": "web",
                "namespace": "default",
                "uid": pod["metadata"]["uid"],
                "apiVersion": "v1",
            },
            "reason": "ProviderCreated",
            "message": "container group eci-123 created",
            "type": "Normal",
            "source": {"component": "vk-eci"},
            "count": 1,
            "firstTimestamp": pod["metadata"]["creationTimestamp"],
            "lastTimestamp": pod["metadata"]["creationTimestamp"],
        },
    )
    out = await kubectl.ok("describe", "pod", "web")
    assert "ProviderCreated" in out and "container group eci-123 created" in out and "vk-eci" in out


async def test_apply_twice_label_annotate_patch(apiserver: SandboxAPIServer, kubectl: Kubectl, tmp_path: Path) -> None:
    """apply creates then patches; label/annotate/patch (merge, json, strategic) change what they should."""
    manifest = tmp_path / "cm.yaml"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}
    manifest.write_text(yaml.safe_dump(cm))
    assert "created" in await kubectl.ok("apply", "-f", str(manifest))
    cm["data"] = {"a": "1", "c": "3"}
    manifest.write_text(yaml.safe_dump(cm))
    assert "configured" in await kubectl.ok("apply", "-f", str(manifest))
    got = apiserver.store.get("configmaps", "default", "cfg")
    assert got is not None and got["data"] == {"a": "1", "c": "3"}  # b was removed by the three-way patch
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(yaml.safe_dump(POD))
    await kubectl.ok("apply", "-f", str(pod_file))
    await kubectl.ok("label", "pod", "web", "tier=front")
    await kubectl.ok("annotate", "pod", "web", "note=hello")
    await kubectl.ok("patch", "pod", "web", "--type", "merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    await kubectl.ok(
        "patch", "pod", "web", "--type", "json", "-p", '[{"op":"add","path":"/metadata/labels/j","value":"2"}]'
    )
    await kubectl.ok("patch", "pod", "web", "-p", '{"spec":{"containers":[{"name":"c","image":"nginx:1.28"}]}}')
    pod = apiserver.store.get("pods", "default", "web")
    assert pod is not None
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front", "m": "1", "j": "2"}
    assert pod["metadata"]["annotations"]["note"] == "hello"
    c = pod["spec"]["containers"][0]
    assert c["image"] == "nginx:1.28" and c["env"] == [{"name": "A", "value": "1"}]  # merged by name, env kept
    rc, _, err = await kubectl.run("patch", "pod", "web", "-p", '{"spec":{"restartPolicy":"Never"}}')
    assert rc != 0 and "Forbidden" in err and "pod updates may not change fields" in err


async def test_edit_with_editor_script(apiserver: SandboxAPIServer, kubectl: Kubectl, tmp_path: Path) -> None:
    """`kubectl edit` round-trips through KUBE_EDITOR and sends a strategic merge patch that lands."""
    await apiserver.store.create("configmaps", {"metadata": {"name": "ed", "namespace": "default"}, "data": {"k": "v"}})
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/k: v$/k: edited/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    await kubectl.ok("edit", "configmap", "ed", env={"KUBE_EDITOR": str(editor), "EDITOR": str(editor)})
    got = apiserver.store.get("configmaps", "default", "ed")
    assert got is not None and got["data"] == {"k": "edited"}


async def test_graceful_delete_finished_by_stand_in_kubelet(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`kubectl delete` of a bound pod waits until the node's kubelet deletes it with grace 0 and a UID."""
    await _node(apiserver)
    pod = await _bound_pod(apiserver)
    uid = pod["metadata"]["uid"]
    seen: dict[str, Any] = {}

    async def stand_in_kubelet() -> None:
        w = apiserver.store.watch("pods", "default", field_selector="spec.nodeName=n1")
        try:
            async for ev in w:
                meta = ev["object"]["metadata"]
                if meta.get("deletionTimestamp"):
                    seen.update(meta)
                    await apiserver.store.delete(
                        "pods", "default", meta["name"], grace_period_seconds=0, uid_precondition=uid
                    )
                    return
        finally:
            await w.aclose()

    task = asyncio.create_task(stand_in_kubelet())
    out = await kubectl.ok("delete", "pod", "web", "--timeout=20s")
    await asyncio.wait_for(task, 5)
    assert 'pod "web" deleted' in out
    assert seen["deletionGracePeriodSeconds"] == 30
    assert apiserver.store.get("pods", "default", "web") is None


async def test_force_delete_and_wait(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """--grace-period=0 --force removes a bound pod at once; `wait --for=condition` and `--for=delete` return."""
    await _node(apiserver)
    await _bound_pod(apiserver)
    out = await kubectl.ok("wait", "--for=condition=Ready", "pod/web", "--timeout=10s")
    assert "condition met" in out
    rc, out, err = await kubectl.run("delete", "pod", "web", "--grace-period=0", "--force")
    assert rc == 0, err
    assert apiserver.store.get("pods", "default", "web") is None
    await kubectl.ok("wait", "--for=delete", "pod/web", "--timeout=5s")


async def test_wait_sees_condition_change(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`kubectl wait` blocks on the watch until a status write makes the condition true."""
    await apiserver.store.create("pods", POD)

    async def later() -> None:
        # Change the pod only once kubectl is watching, so the condition arrives through the watch.
        await eventually(
            lambda: any(w.key == "pods" for w in apiserver.store.events.watchers),
            timeout=15,
            interval=0.02,
            what="kubectl to watch pods",
        )

        def ready(p: dict[str, Any]) -> dict[str, Any]:
            p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            return p

        await apiserver.store.mutate("pods", "default", "web", ready, subresource="status")

    task = asyncio.create_task(later())
    out = await kubectl.ok("wait", "--for=condition=Ready", "pod/web", "--timeout=15s")
    await task
    assert "condition met" in out


async def test_get_watch_streams_new_rows(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`get -w` prints the header once and a row for a pod created while it watches."""
    proc = await kubectl.start("get", "pods", "-w", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        await apiserver.store.create("pods", {**POD, "metadata": {"name": "first", "namespace": "default"}})
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not any(line.startswith("first") for line in lines):
                lines.append((await proc.stdout.readline()).decode())
            await apiserver.store.create("pods", {**POD, "metadata": {"name": "second", "namespace": "default"}})
            while not any(line.startswith("second") for line in lines):
                lines.append((await proc.stdout.readline()).decode())
        assert sum(1 for line in lines if line.startswith("NAME")) == 1
    finally:
        proc.terminate()
        await proc.wait()


async def test_auth_can_i(
    apiserver: SandboxAPIServer, kubectl: Kubectl, kubectl_env: dict[str, str], tmp_path: Path
) -> None:
    """`auth can-i` answers yes for the admin and follows RBAC for a user bound to a narrow Role; `--list` shows
    the Role's rules."""
    assert (await kubectl.ok("auth", "can-i", "create", "pods")).strip() == "yes"
    await apiserver.store.create(
        "roles.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}],
        },
    )
    await apiserver.store.create(
        "rolebindings.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "alice-reads", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    alice = Kubectl(kubectl_env, apiserver.user_kubeconfig(tmp_path / "alice", user="alice", groups=["devs"]))
    assert (await alice.ok("auth", "can-i", "list", "pods")).strip() == "yes"
    assert (await alice.ok("auth", "can-i", "get", "pods", "--subresource=log")).strip() == "yes"
    rc, out, _ = await alice.run("auth", "can-i", "delete", "pods")
    assert rc == 1 and out.strip() == "no"
    rc, out, _ = await alice.run("auth", "can-i", "list", "pods", "-n", "kube-system")
    assert rc == 1 and out.strip() == "no"
    listing = await alice.ok("auth", "can-i", "--list")
    assert any(line.split()[:1] == ["pods"] and "[get list watch]" in line for line in listing.splitlines())
    await alice.ok("get", "pods")
    rc, _, err = await alice.run("get", "secrets")
    assert rc == 1 and 'User "alice" cannot list resource "secrets"' in err


async def test_typed_create_commands_and_server_side_apply(
    apiserver: SandboxAPIServer, kubectl: Kubectl, tmp_path: Path
) -> None:
    """kubectl's protobuf-sending generators (create namespace/configmap/secret/serviceaccount, create token) work;
    apply --server-side creates then updates; deleting the namespace removes what it held."""
    await kubectl.ok("create", "namespace", "t1")
    await kubectl.ok("create", "configmap", "x", "--from-literal=a=b", "-n", "t1")
    await kubectl.ok("create", "secret", "generic", "s", "--from-literal=pw=hunter2", "-n", "t1")
    await kubectl.ok("create", "serviceaccount", "bot", "-n", "t1")
    secret = apiserver.store.get("secrets", "t1", "s")
    assert secret is not None and secret["type"] == "Opaque" and secret["data"] == {"pw": "aHVudGVyMg=="}
    token = (await kubectl.ok("create", "token", "bot", "-n", "t1", "--audience=vk")).strip()
    claims = apiserver.authenticator.claims(token, ["vk"])
    assert claims is not None and claims.username == "system:serviceaccount:t1:bot"
    manifest = tmp_path / "lease.yaml"
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l", "namespace": "t1"},
        "spec": {"holderIdentity": "a"},
    }
    manifest.write_text(yaml.safe_dump(lease))
    await kubectl.ok("apply", "--server-side", "-f", str(manifest))
    lease["spec"]["holderIdentity"] = "b"
    manifest.write_text(yaml.safe_dump(lease))
    await kubectl.ok("apply", "--server-side", "-f", str(manifest))
    got = apiserver.store.get("leases.coordination.k8s.io", "t1", "l")
    assert got is not None and got["spec"]["holderIdentity"] == "b"
    assert (await kubectl.ok("get", "leases", "-n", "t1")).split("\n")[1].split()[:2] == ["l", "b"]
    await kubectl.ok("delete", "namespace", "t1")
    assert apiserver.store.get("namespaces", None, "t1") is None
    assert apiserver.store.get("configmaps", "t1", "x") is None


async def test_impersonation_checks_a_service_accounts_rbac(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """kubectl --as=system:serviceaccount:NS:NAME is judged by that account's RBAC (and needs impersonate rights)."""
    sa = "system:serviceaccount:kube-system:vk"
    await apiserver.store.create(
        "clusterroles.rbac.authorization.k8s.io",
        {"metadata": {"name": "vk"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]},
    )
    await apiserver.store.create(
        "clusterrolebindings.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "vk"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "vk"},
            "subjects": [{"kind": "ServiceAccount", "name": "vk", "namespace": "kube-system"}],
        },
    )
    assert (await kubectl.ok("auth", "can-i", "watch", "pods", "-A", f"--as={sa}")).strip() == "yes"
    rc, out, _ = await kubectl.run("auth", "can-i", "delete", "pods", f"--as={sa}")
    assert rc == 1 and out.strip() == "no"
    rc, _, err = await kubectl.run("get", "nodes", f"--as={sa}")
    assert rc == 1 and f'User "{sa}" cannot list resource "nodes"' in err


async def test_apply_removes_list_items_through_strategic_patch(
    apiserver: SandboxAPIServer, kubectl: Kubectl, tmp_path: Path
) -> None:
    """A second client-side apply that drops a container and an env var removes them (the $patch: delete and
    $setElementOrder directives kubectl computes are honoured) and bumps the Deployment's generation."""
    dep: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "nginx:1.27",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                        {"name": "side", "image": "busybox"},
                    ]
                },
            },
        },
    }
    path = tmp_path / "dep.yaml"
    path.write_text(yaml.safe_dump(dep))
    await kubectl.ok("apply", "-f", str(path))
    containers = dep["spec"]["template"]["spec"]["containers"]
    dep["spec"]["template"]["spec"]["containers"] = [
        {"name": "c", "image": "nginx:1.28", "env": [containers[0]["env"][1]]}
    ]
    path.write_text(yaml.safe_dump(dep))
    await kubectl.ok("apply", "-f", str(path))
    got = apiserver.store.get("deployments.apps", "default", "web")
    assert got is not None and got["metadata"]["generation"] == 2
    (c,) = got["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nginx:1.28" and c["env"] == [{"name": "B", "value": "2"}]


async def test_server_dry_run_changes_nothing(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """--dry-run=server on create, label and delete answers as if done but stores nothing."""
    await kubectl.ok("create", "configmap", "x", "--from-literal=a=b")
    rv = apiserver.store.resource_version
    assert "server dry run" in await kubectl.ok("create", "configmap", "y", "--from-literal=a=b", "--dry-run=server")
    await kubectl.ok("label", "configmap", "x", "l=1", "--dry-run=server")
    await kubectl.ok("delete", "configmap", "x", "--dry-run=server")
    got = apiserver.store.get("configmaps", "default", "x")
    assert got is not None and "labels" not in got["metadata"]
    assert apiserver.store.get("configmaps", "default", "y") is None
    assert apiserver.store.resource_version == rv


async def test_certificate_approve(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`kubectl certificate approve` (a protobuf PUT to /approval) marks a CSR Approved and nothing else."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:vk")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    await apiserver.store.create(
        "certificatesigningrequests.certificates.k8s.io",
        {
            "metadata": {"name": "c1"},
            "spec": {
                "request": base64.b64encode(csr).decode(),
                "signerName": "example.com/none",
                "usages": ["server auth"],
            },
        },
    )
    await kubectl.ok("certificate", "approve", "c1")
    got = apiserver.store.get("certificatesigningrequests.certificates.k8s.io", None, "c1")
    assert got is not None
    assert [(c["type"], c["status"], c["reason"]) for c in got["status"]["conditions"]] == [
        ("Approved", "True", "KubectlApprove")
    ]
    assert got["spec"]["request"] == base64.b64encode(csr).decode()
    assert "Approved" in await kubectl.ok("get", "csr")


async def test_create_deployment_and_job_generators(apiserver: SandboxAPIServer, kubectl: Kubectl) -> None:
    """`kubectl create deployment|job` (protobuf bodies) store the spec kubectl generated, then defaults apply;
    `kubectl scale` changes replicas through the scale subresource."""
    await kubectl.ok("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=80")
    dep = apiserver.store.get("deployments.apps", "default", "web")
    assert dep is not None and dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert (c["name"], c["image"], c["ports"]) == ("nginx", "nginx:1.27", [{"containerPort": 80, "protocol": "TCP"}])
    assert dep["spec"]["template"]["metadata"] == {"labels": {"app": "web"}}
    await kubectl.ok("scale", "deployment", "web", "--replicas=5")
    dep = apiserver.store.get("deployments.apps", "default", "web")
    assert dep is not None and dep["spec"]["replicas"] == 5
    await kubectl.ok("create", "job", "j", "--image=busybox", "--", "echo", "hi")
    job = apiserver.store.get("jobs.batch", "default", "j")
    assert job is not None
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
