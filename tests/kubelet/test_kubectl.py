"""The kubelet API driven by the real kubectl through the sandbox API server's kubelet proxy.

The sandbox relays upgrades byte for byte, so kubectl's own SPDY/3.1 and v5 WebSocket clients talk
to our server. The serving certificate comes from a real CSR approved with ``kubectl certificate
approve`` and signed by the sandbox CA, which the proxy verifies; the proxy authenticates with its
kubelet-client certificate, which we verify against the sandbox CA and authorize by SAR.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from tests.conftest import KUBECTL
from tests.kubectl import Kubectl
from tests.kubelet.doubles import FakePods, FakeStreams, make_pod, usage_fixture
from tests.waiting import eventually
from vk_provider.kubelet.server import KubeletServer
from vk_provider.settings import KubeletSettings
from vk_sandbox.apiserver.server import SandboxAPIServer

NODE = "vk-node"


@dataclass
class Env:
    apiserver: SandboxAPIServer
    kubelet: KubeletServer
    streams: FakeStreams
    kubectl: Kubectl


async def grant_node_permissions(admin: k8s.ApiClient) -> None:
    """What the deployment's RBAC grants the daemon: CSRs for its serving cert, token and access reviews."""
    rbac = k8s.RbacAuthorizationV1Api(admin)
    rules = [
        k8s.V1PolicyRule(
            api_groups=["certificates.k8s.io"], resources=["certificatesigningrequests"], verbs=["create", "get"]
        ),
        k8s.V1PolicyRule(api_groups=["authentication.k8s.io"], resources=["tokenreviews"], verbs=["create"]),
        k8s.V1PolicyRule(api_groups=["authorization.k8s.io"], resources=["subjectaccessreviews"], verbs=["create"]),
    ]
    await rbac.create_cluster_role(k8s.V1ClusterRole(metadata=k8s.V1ObjectMeta(name="vk-kubelet"), rules=rules))
    await rbac.create_cluster_role_binding(
        k8s.V1ClusterRoleBinding(
            metadata=k8s.V1ObjectMeta(name="vk-kubelet"),
            role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="vk-kubelet"),
            subjects=[k8s.RbacV1Subject(kind="Group", name="system:nodes", api_group="rbac.authorization.k8s.io")],
        )
    )


async def approve_csr(api: k8s.ApiClient, name: str) -> None:
    """What ``kubectl certificate approve`` does, in JSON: the sandbox accepts protobuf only for reviews,
    and kubectl sends this update as protobuf."""
    certs = k8s.CertificatesV1Api(api)
    csr = await certs.read_certificate_signing_request(name)
    csr.status.conditions = [
        k8s.V1CertificateSigningRequestCondition(type="Approved", status="True", reason="Test", message="approved")
    ]
    await certs.replace_certificate_signing_request_approval(name, csr)


@pytest.fixture
async def env(tmp_path: Path, kubectl_env: dict[str, str]) -> AsyncIterator[Env]:
    async with SandboxAPIServer(directory=tmp_path / "api") as apiserver:
        admin_cfg = k8s.Configuration()
        await k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig_path), client_configuration=admin_cfg)
        admin = k8s.ApiClient(admin_cfg)
        # The daemon talks to the API server as the node (the signer only signs node identities' CSRs).
        cert, key = apiserver.ca.issue(f"system:node:{NODE}", ["system:nodes"], client=True)
        (tmp_path / "node.crt").write_bytes(cert)
        (tmp_path / "node.key").write_bytes(key)
        cfg = k8s.Configuration(host=apiserver.url)
        cfg.cert_file, cfg.key_file = str(tmp_path / "node.crt"), str(tmp_path / "node.key")
        cfg.ssl_ca_cert = str(apiserver.ca_path)
        api = k8s.ApiClient(cfg)
        await grant_node_permissions(admin)
        pod = make_pod("default", "web", ["app"])
        streams = FakeStreams(usage=usage_fixture())
        kubelet = KubeletServer(
            KubeletSettings(
                port=0, bind_address="127.0.0.1", tls_mode="csr", cert_dir=tmp_path / "certs", csr_poll_seconds=0.1
            ),
            node_name=NODE,
            node_addresses=["127.0.0.1"],
            pods=FakePods([pod]),
            streams=streams,
            api=api,
            client_ca_pem=apiserver.ca.cert_pem,
        )
        await kubelet.start()
        e = Env(apiserver, kubelet, streams, Kubectl(kubectl_env, apiserver.kubeconfig_path))
        try:
            apiserver.store.create_now(
                "nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": NODE},
                    "status": {
                        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
                    },
                },
            )
            apiserver.store.create_now(
                "pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"namespace": "default", "name": "web"},
                    "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]},
                },
            )
            stored = apiserver.store.get("pods", "default", "web")
            assert stored is not None
            apiserver.store.update_now("pods", {**stored, "status": {"phase": "Running"}}, subresource="status")
            # The real CSR flow: wait for our CSR, approve it, wait for the sandbox signer and the swap.
            await eventually(lambda: kubelet.tls.csr_names, timeout=20, what="the kubelet's serving CSR")
            await approve_csr(admin, kubelet.tls.csr_names[0])
            await eventually(lambda: kubelet.ready, timeout=20, what="the kubelet to serve the signed certificate")
            yield e
        finally:
            await kubelet.stop()
            for s in streams.sessions:
                await s.close()
            await api.close()
            await admin.close()


@pytest.mark.parametrize("websockets", ["true", "false"])
async def test_kubectl_exec_exit_code_and_stdin(env: Env, websockets: str, tmp_path: Path) -> None:
    """kubectl exec returns the command's exit code and pipes stdin, over WebSocket and over SPDY."""
    # Arguments without spaces: the sandbox proxy currently forwards the query unescaped.
    script = tmp_path / "exit3.sh"
    script.write_text("cat >/dev/null; echo to-stderr >&2; exit 3\n")
    flags = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": websockets}
    rc, _, err = await env.kubectl.run_bytes(
        "exec", "-i", "web", "-c", "app", "--", "sh", str(script), stdin=b"", env=flags
    )
    assert rc == 3, err
    assert b"to-stderr" in err
    rc, out, err = await env.kubectl.run_bytes(
        "exec", "-i", "web", "-c", "app", "--", "cat", stdin=b"piped input\n", env=flags
    )
    assert rc == 0, err
    assert out == b"piped input\n"
    big = bytes(range(256)) * 2048  # 512 KiB: well past SPDY's 64 KiB initial window
    rc, out, err = await env.kubectl.run_bytes("exec", "-i", "web", "-c", "app", "--", "wc", "-c", stdin=big, env=flags)
    assert rc == 0, err
    assert out.strip() == str(len(big)).encode()


async def test_kubectl_logs_and_raw_stats(env: Env) -> None:
    """kubectl logs reads through the proxy; get --raw returns parseable summary and resource metrics."""
    env.streams.log_lines = [b"line one\n", b"line two\n"]
    rc, out, err = await env.kubectl.run_bytes("logs", "web", "-c", "app", "--tail=2")
    assert rc == 0, err
    assert out == b"line one\nline two\n"
    assert env.streams.log_opts[-1].tail_lines == 2
    rc, out, err = await env.kubectl.run_bytes("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/stats/summary")
    assert rc == 0, err
    assert json.loads(out)["pods"][0]["podRef"]["name"] == "web"
    rc, out, err = await env.kubectl.run_bytes("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource")
    assert rc == 0, err
    assert b'container_memory_working_set_bytes{container="app",pod="web",namespace="default"}' in out


async def test_kubectl_port_forward(env: Env, echo_server: int) -> None:
    """kubectl port-forward (falling back from its WebSocket tunnel to SPDY) carries a TCP exchange to the pod."""
    env.streams.forward_to = echo_server
    proc = await env.kubectl.start(
        "port-forward", "pod/web", ":8080", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        if b"Forwarding from 127.0.0.1:" not in line:
            assert proc.stderr is not None
            pytest.fail(f"kubectl port-forward did not start: {line!r} {await proc.stderr.read()!r}")
        local = int(line.split(b"127.0.0.1:")[1].split(b" ")[0])
        for payload in (b"first connection", b"second connection"):
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            writer.write(payload)
            await writer.drain()
            async with asyncio.timeout(10):
                got = b""
                while got != payload:
                    chunk = await reader.read(1024)
                    assert chunk
                    got += chunk
            writer.close()
            await writer.wait_closed()
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a terminal")
@pytest.mark.parametrize("websockets", ["true", "false"])
async def test_kubectl_exec_tty_sends_terminal_size(env: Env, websockets: str, tmp_path: Path) -> None:
    """kubectl exec -it under a pseudo-terminal: output arrives, and the terminal size reaches resize()."""
    script = tmp_path / "hello.sh"
    script.write_text("read x; echo tty-ok; exit 4\n")
    cmd = f"stty cols 91 rows 27; {KUBECTL} exec -it web -c app -- sh {script}"
    proc = await asyncio.create_subprocess_exec(
        "script",
        "-qec",
        cmd,
        "/dev/null",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env.kubectl.env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": websockets, "TERM": "xterm"},
    )
    # The process waits for a line, so the size kubectl sends right after connecting arrives first.
    await eventually(
        lambda: env.streams.sessions and env.streams.sessions[-1].resizes,
        timeout=20,
        interval=0.02,
        what="a terminal size from kubectl",
    )
    out, err = await asyncio.wait_for(proc.communicate(b"go\n"), 30)
    assert b"tty-ok" in out, (out, err)
    assert proc.returncode == 4
    assert (91, 27) in env.streams.sessions[-1].resizes


@pytest.mark.parametrize("subprotocol", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
async def test_official_python_client_exec(env: Env, subprotocol: str) -> None:
    """The official Python client's stream() exec works over v5 (with stdin half-close) and v4."""
    from kubernetes import config as sync_config
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import stream

    kubeconfig = env.kubectl.env["KUBECONFIG"]

    def run() -> tuple[str, int | None]:
        client = sync_config.new_client_from_config(config_file=kubeconfig)
        try:
            resp = stream(
                CoreV1Api(client).connect_get_namespaced_pod_exec,
                "web",
                "default",
                container="app",
                command=["cat"],
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                _headers={"sec-websocket-protocol": subprotocol},
            )
            resp.write_stdin("from python\n")
            out = ""
            if subprotocol.startswith("v5"):
                resp.close_channel(0)  # stdin half-close: cat then exits by itself
            deadline = 50
            while resp.is_open() and deadline:
                resp.update(timeout=0.2)
                out += resp.read_stdout() or ""
                if not subprotocol.startswith("v5") and out:
                    break
                deadline -= 1
            code = resp.returncode if subprotocol.startswith("v5") else None
            resp.close()
            # websocket-client leaves its socket open when the server closed first; shut it ourselves.
            resp.sock.shutdown()
            return out, code
        finally:
            client.close()

    out, code = await asyncio.wait_for(asyncio.to_thread(run), 30)
    assert out == "from python\n"
    if subprotocol.startswith("v5"):
        assert code == 0


AUTH_ROUTES = [
    ("GET", "/healthz", 200),
    ("GET", "/pods", 200),
    ("GET", "/runningpods/", 200),
    ("GET", "/containerLogs/default/web/app", 200),
    ("POST", "/exec/default/web/app?command=true&stdout=1", 400),
    ("GET", "/attach/default/web/app?stdout=1", 400),
    ("POST", "/portForward/default/web", 400),
    ("GET", "/stats/summary", 200),
    ("GET", "/metrics/resource", 200),
]


RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubelet-reader}
rules:
- apiGroups: [""]
  resources: [nodes/proxy, nodes/stats, nodes/metrics]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kubelet-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubelet-reader}
subjects:
- {kind: ServiceAccount, name: scraper, namespace: default}
"""


async def test_auth_table_against_the_sandbox(env: Env) -> None:
    """With the sandbox's real TokenReview and RBAC-backed SAR: no credentials 401, a service account
    without RBAC 403 on every route, a service account bound to nodes/proxy|stats|metrics gets through."""
    import aiohttp

    from tests.kubelet.doubles import insecure_client_ssl

    rc, _, err = await env.kubectl.run_bytes("apply", "-f", "-", stdin=RBAC.encode())
    assert rc == 0, err
    url = f"https://127.0.0.1:{env.kubelet.port}"
    unbound = {"Authorization": f"Bearer {env.apiserver.mint_token('default', 'nobody')}"}
    bound = {"Authorization": f"Bearer {env.apiserver.mint_token('default', 'scraper')}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure_client_ssl())) as s:
        for method, path, code in AUTH_ROUTES:
            async with s.request(method, url + path) as r:
                assert r.status == 401, path
            async with s.request(method, url + path, headers=unbound) as r:
                assert r.status == 403, path
            async with s.request(method, url + path, headers=bound) as r:
                assert r.status == code, (path, await r.text())


async def test_kubectl_logs_follow_shows_lines_as_written(env: Env) -> None:
    """kubectl logs -f prints each new line as soon as the backend yields it, through the API server proxy."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    env.streams.follow_queue = queue
    env.streams.log_lines = [b"before\n"]
    proc = await env.kubectl.start("logs", "-f", "web", "-c", "app", stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            assert await proc.stdout.readline() == b"before\n"
            for i in range(3):
                await queue.put(f"new {i}\n".encode())
                assert await proc.stdout.readline() == f"new {i}\n".encode()
            await queue.put(None)  # the container terminates: the stream and kubectl end
            assert await proc.stdout.read() == b""
            assert await proc.wait() == 0
        assert env.streams.log_opts[-1].follow
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
