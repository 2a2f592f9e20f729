"""The sandbox API server over HTTPS, driven by the official clients and by raw requests with bad input."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import kubernetes_asyncio
import pytest
from kubernetes_asyncio.client.rest import ApiException as AsyncApiException

from vk_sandbox.apiserver.server import SandboxAPIServer

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "labels": {"app": "a", "tier": "web"}},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}


def _sync_api(srv: SandboxAPIServer) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(srv.kubeconfig_path), client_configuration=cfg)
    return kubernetes.client.ApiClient(cfg)


async def _async_api(srv: SandboxAPIServer) -> kubernetes_asyncio.client.ApiClient:
    cfg = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(config_file=str(srv.kubeconfig_path), client_configuration=cfg)
    return kubernetes_asyncio.client.ApiClient(cfg)


async def _raw(
    srv: SandboxAPIServer,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    admin: bool = True,
) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cadata=srv.ca.cert_pem.decode())
    if admin and token is None:
        cert, key = srv.ca.issue("test-admin", ["system:masters"])
        d = srv.directory / "raw-client"
        d.mkdir(exist_ok=True)
        (d / "c.crt").write_bytes(cert)
        (d / "c.key").write_bytes(key)
        ctx.load_cert_chain(d / "c.crt", d / "c.key")
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    # With no Content-Type given, send none at all (as the Python clients do), not aiohttp's octet-stream.
    skip = [] if "Content-Type" in hdrs else ["Content-Type"]
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method,
            srv.url + path,
            data=io.BytesIO(body) if body is not None else None,
            headers=hdrs,
            ssl=ctx,
            skip_auto_headers=skip,
        ) as r,
    ):
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, {"text": text}


async def test_sync_client_crud_conflict_and_status(apiserver: SandboxAPIServer) -> None:
    """The official sync client creates, reads, lists by selector, replaces (409 on a stale rv), patches and
    writes /status; a main-resource write keeps the old status and a /status write keeps the old spec."""

    def scenario() -> None:
        with _sync_api(apiserver) as api:
            v1 = kubernetes.client.CoreV1Api(api)
            created = v1.create_namespaced_pod("default", POD)
            assert created.metadata.uid and created.status.phase == "Pending" and created.status.qos_class
            assert created.spec.restart_policy == "Always" and created.spec.scheduler_name == "default-scheduler"
            got = v1.read_namespaced_pod("p1", "default")
            assert got.metadata.resource_version == created.metadata.resource_version
            assert [
                p.metadata.name for p in v1.list_namespaced_pod("default", label_selector="app in (a,b)").items
            ] == ["p1"]
            assert v1.list_namespaced_pod("default", label_selector="tier!=web").items == []
            assert v1.list_namespaced_pod("default", field_selector="status.phase=Pending").items
            got.metadata.labels["x"] = "1"
            v1.replace_namespaced_pod("p1", "default", got)
            with pytest.raises(kubernetes.client.ApiException) as exc:
                v1.replace_namespaced_pod("p1", "default", got)  # the same, now stale, resourceVersion
            assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "Conflict"
            v1.patch_namespaced_pod_status("p1", "default", {"status": {"phase": "Running", "podIP": "10.1.1.1"}})
            p = v1.patch_namespaced_pod(
                "p1", "default", {"status": {"phase": "Failed"}, "metadata": {"labels": {"y": "2"}}}
            )
            assert p.status.phase == "Running" and p.metadata.labels["y"] == "2"
            st = v1.read_namespaced_pod_status("p1", "default")
            st.spec.containers[0].image = "other"
            st.status.pod_ip = "10.1.1.2"
            after = v1.replace_namespaced_pod_status("p1", "default", st)
            assert after.spec.containers[0].image == "busybox" and after.status.pod_ip == "10.1.1.2"
            with pytest.raises(kubernetes.client.ApiException) as exc:
                v1.create_namespaced_pod("default", POD)
            assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
            with pytest.raises(kubernetes.client.ApiException) as exc:
                v1.read_namespaced_pod("nope", "default")
            assert exc.value.status == 404 and json.loads(exc.value.body)["message"] == 'pods "nope" not found'
            cm = v1.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}, "data": {"a": "b"}})
            assert cm.metadata.name.startswith("gen-") and len(cm.metadata.name) == 9
            v1.delete_namespaced_config_map(cm.metadata.name, "default")
            apps = kubernetes.client.AppsV1Api(api)
            dep = apps.create_namespaced_deployment(
                "default",
                {
                    "metadata": {"name": "d"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "d"}},
                        "template": {
                            "metadata": {"labels": {"app": "d"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]},
                        },
                    },
                },
            )
            assert dep.spec.replicas == 1
            scale = apps.patch_namespaced_deployment_scale("d", "default", {"spec": {"replicas": 3}})
            assert scale.spec.replicas == 3
            assert apps.read_namespaced_deployment("d", "default").metadata.generation == 2

    await asyncio.to_thread(scenario)


async def test_sync_client_dynamic_discovery(apiserver: SandboxAPIServer) -> None:
    """The Python DynamicClient finds every served kind through legacy discovery."""

    def scenario() -> None:
        with _sync_api(apiserver) as api:
            dyn = kubernetes.dynamic.DynamicClient(api)
            for api_version, kind in [
                ("v1", "Pod"),
                ("coordination.k8s.io/v1", "Lease"),
                ("apps/v1", "Deployment"),
                ("events.k8s.io/v1", "Event"),
                ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                ("certificates.k8s.io/v1", "CertificateSigningRequest"),
            ]:
                res = dyn.resources.get(api_version=api_version, kind=kind)
                assert res.kind == kind
            leases = dyn.resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
            leases.create(body={"metadata": {"name": "l1"}, "spec": {"holderIdentity": "me"}}, namespace="default")
            assert leases.get(name="l1", namespace="default").spec.holderIdentity == "me"

    await asyncio.to_thread(scenario)


async def test_async_client_watch_selectors_bookmarks_and_410(apiserver: SandboxAPIServer) -> None:
    """kubernetes_asyncio watches with a label selector and bookmarks, sees ADDED/MODIFIED/DELETED in order,
    and gets an ERROR 410 Expired for a resourceVersion older than the history."""
    async with await _async_api(apiserver) as api:
        v1 = kubernetes_asyncio.client.CoreV1Api(api)
        listed = await v1.list_namespaced_pod("default")
        rv = listed.metadata.resource_version
        await v1.create_namespaced_pod("default", POD)
        await v1.create_namespaced_pod("default", {**POD, "metadata": {"name": "other", "labels": {"app": "z"}}})
        await v1.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"m": "1"}}})
        await v1.delete_namespaced_pod("p1", "default")
        events: list[tuple[str, str]] = []
        bookmarks = 0
        w = kubernetes_asyncio.watch.Watch()
        async with asyncio.timeout(10):
            async for ev in w.stream(
                v1.list_namespaced_pod,
                "default",
                resource_version=rv,
                label_selector="app=a",
                allow_watch_bookmarks=True,
                timeout_seconds=5,
            ):
                if ev["type"] == "BOOKMARK":
                    bookmarks += 1
                    w.stop()
                    continue
                events.append((ev["type"], ev["object"].metadata.name))
        assert events == [("ADDED", "p1"), ("MODIFIED", "p1"), ("DELETED", "p1")]
        assert bookmarks == 1
        # Make the store forget old history, then a watch from rv=1 is expired.
        apiserver.store.events.history.clear()
        await v1.create_namespaced_pod("default", {**POD, "metadata": {"name": "p3"}})
        status, body = await _raw(apiserver, "GET", "/api/v1/namespaces/default/pods?watch=1&resourceVersion=2")
        assert status == 200 and body["type"] == "ERROR" and body["object"]["code"] == 410
        with pytest.raises(AsyncApiException) as exc:
            async with asyncio.timeout(10):
                async for _ in kubernetes_asyncio.watch.Watch().stream(
                    v1.list_namespaced_pod, "default", resource_version="2", timeout_seconds=5
                ):
                    pass
        assert exc.value.status == 410
        with pytest.raises(AsyncApiException) as exc:
            await v1.list_namespaced_pod("default", resource_version="2", resource_version_match="Exact")
        assert exc.value.status == 410


async def test_requests_are_counted_by_user(apiserver: SandboxAPIServer) -> None:
    """``requests`` counts every authenticated request by user (benchmarks count the daemon's), ``write_requests``
    only the writing verbs."""
    assert (await _raw(apiserver, "GET", "/api/v1/namespaces/default/pods"))[0] == 200
    assert (await _raw(apiserver, "POST", "/api/v1/namespaces/default/pods", body=json.dumps(POD).encode()))[0] == 201
    assert (await _raw(apiserver, "GET", "/api/v1/namespaces/default/pods/p1"))[0] == 200
    assert apiserver.requests["test-admin"] == 3
    assert apiserver.write_requests["test-admin"] == 1


async def test_a_bindings_annotations_are_merged_into_the_pod(apiserver: SandboxAPIServer) -> None:
    """As in the real registry: a Binding's metadata.annotations land on the pod with its nodeName, over the pod's
    own values of the same keys, the others kept; annotations that are not strings are a 400 and bind nothing."""
    async with await _async_api(apiserver) as api:
        v1 = kubernetes_asyncio.client.CoreV1Api(api)
        pod = {**POD, "metadata": {**POD["metadata"], "annotations": {"keep": "1", "cost": "0"}}}
        await v1.create_namespaced_pod("default", pod)
        status, out = await _raw(
            apiserver,
            "POST",
            "/api/v1/namespaces/default/pods/p1/binding",
            body=b'{"metadata":{"name":"p1","annotations":{"cost":1}},"target":{"kind":"Node","name":"n1"}}',
        )
        assert status == 400, out
        assert not (await v1.read_namespaced_pod("p1", "default")).spec.node_name
        await v1.create_namespaced_binding(
            "default",
            {"metadata": {"name": "p1", "annotations": {"cost": "-1000", "rule": "r"}}, "target": {"name": "n1"}},
            _preload_content=False,
        )
        bound = await v1.read_namespaced_pod("p1", "default")
        assert bound.spec.node_name == "n1"
        assert bound.metadata.annotations == {"keep": "1", "cost": "-1000", "rule": "r"}


async def test_async_client_graceful_deletion_flow(apiserver: SandboxAPIServer) -> None:
    """A bound pod deleted with grace stays with deletionTimestamp; a longer grace cannot extend it; a kubelet's
    grace-0 delete with the wrong UID is 409 and with the right UID removes it. An unbound pod goes at once."""
    async with await _async_api(apiserver) as api:
        v1 = kubernetes_asyncio.client.CoreV1Api(api)
        await v1.create_node({"metadata": {"name": "n1"}})
        pod = await v1.create_namespaced_pod("default", POD)
        await v1.create_namespaced_binding(
            "default", {"metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "n1"}}, _preload_content=False
        )
        status, out = await _raw(
            apiserver,
            "POST",
            "/api/v1/namespaces/default/pods/p1/binding",
            body=b'{"metadata":{"name":"p1"},"target":{"kind":"Node","name":"n2"}}',
        )
        assert status == 409 and out["reason"] == "Conflict" and "already assigned" in out["message"]
        bound = await v1.read_namespaced_pod("p1", "default")
        assert bound.spec.node_name == "n1"
        assert [c.type for c in bound.status.conditions] == ["PodScheduled"]
        await v1.delete_namespaced_pod("p1", "default", grace_period_seconds=20)
        first = await v1.read_namespaced_pod("p1", "default")
        assert first.metadata.deletion_grace_period_seconds == 20 and first.metadata.deletion_timestamp
        await v1.delete_namespaced_pod("p1", "default", grace_period_seconds=60)
        assert (await v1.read_namespaced_pod("p1", "default")).metadata.deletion_grace_period_seconds == 20
        await v1.delete_namespaced_pod("p1", "default", grace_period_seconds=5)
        assert (await v1.read_namespaced_pod("p1", "default")).metadata.deletion_grace_period_seconds == 5
        with pytest.raises(AsyncApiException) as exc:
            await v1.delete_namespaced_pod(
                "p1", "default", grace_period_seconds=0, body={"preconditions": {"uid": "wrong"}}
            )
        assert exc.value.status == 409
        await v1.delete_namespaced_pod(
            "p1", "default", grace_period_seconds=0, body={"preconditions": {"uid": pod.metadata.uid}}
        )
        with pytest.raises(AsyncApiException) as exc:
            await v1.read_namespaced_pod("p1", "default")
        assert exc.value.status == 404
        await v1.create_namespaced_pod("default", {**POD, "metadata": {"name": "unbound"}})
        await v1.delete_namespaced_pod("unbound", "default")
        assert (await v1.list_namespaced_pod("default")).items == []


async def test_list_limit_and_continue(apiserver: SandboxAPIServer) -> None:
    """Paged lists return every object exactly once, in order, with a continue token until the last page."""
    for i in range(7):
        await apiserver.store.create("configmaps", {"metadata": {"name": f"cm{i}", "namespace": "default"}})
    names: list[str] = []
    token = ""
    for _ in range(10):
        path = "/api/v1/namespaces/default/configmaps?limit=3" + (f"&continue={token}" if token else "")
        status, body = await _raw(apiserver, "GET", path)
        assert status == 200
        names += [i["metadata"]["name"] for i in body["items"]]
        # As the real server: the list says what its items are, the items do not.
        assert (body["kind"], body["apiVersion"]) == ("ConfigMapList", "v1")
        assert not any("kind" in i or "apiVersion" in i for i in body["items"])
        token = body["metadata"].get("continue", "")
        if not token:
            break
    assert names == [f"cm{i}" for i in range(7)]


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "code", "reason"),
    [
        ("POST", "/api/v1/namespaces/default/pods", b"{not json", "application/json", 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/default/pods", b"a: [b", "application/yaml", 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/default/pods", b"[]", "", 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/default/pods", b"{}", "text/plain", 415, "UnsupportedMediaType"),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            b'{"kind":"Service","apiVersion":"v1","metadata":{"name":"x"}}',
            "application/json",
            400,
            "BadRequest",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            b'{"metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c","image":"i"}]}}',
            "",
            422,
            "Invalid",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            b'{"metadata":{"name":"ok"},"spec":{"containers":[]}}',
            "",
            422,
            "Invalid",
        ),
        ("POST", "/api/v1/namespaces/nowhere/configmaps", b'{"metadata":{"name":"a"}}', "", 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/pods?labelSelector=a%20in%20(", None, "", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/pods?fieldSelector=spec.image%3Dx", None, "", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/widgets", None, "", 404, "NotFound"),
        ("GET", "/apis/nope.example.com/v1/things", None, "", 404, "NotFound"),
        ("PATCH", "/api/v1/namespaces/default/configmaps/x", b"{}", "application/json", 415, "UnsupportedMediaType"),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            b'{"metadata":{"name":"big"},"data":{"a":"' + b"x" * (4 * 1024 * 1024) + b'"}}',
            "",
            413,
            "RequestEntityTooLarge",
        ),
    ],
)
async def test_bad_input_gets_status_errors(
    apiserver: SandboxAPIServer, method: str, path: str, body: bytes | None, ctype: str, code: int, reason: str
) -> None:
    """Malformed bodies, unknown kinds and paths, bad names, selectors, content types and oversized bodies get a
    metav1.Status with the right code, never a 500; the server keeps serving afterwards."""
    headers = {"Content-Type": ctype} if ctype else {}
    status, out = await _raw(apiserver, method, path, body=body, headers=headers)
    assert (status, out.get("kind"), out.get("reason"), out.get("code")) == (code, "Status", reason, code)
    status, _ = await _raw(apiserver, "GET", "/api/v1/namespaces")
    assert status == 200


async def test_a_large_body_arriving_in_many_chunks_is_read_whole(apiserver: SandboxAPIServer) -> None:
    """A 900 KB ConfigMap (the real limit is 1 MiB) arrives over TCP in many chunks and is stored whole."""
    data = {"k": "0123456789abcdef" * (900 * 1024 // 16)}
    body = json.dumps({"metadata": {"name": "large"}, "data": data}).encode()
    status, out = await _raw(apiserver, "POST", "/api/v1/namespaces/default/configmaps", body=body)
    assert status == 201, out
    status, out = await _raw(apiserver, "GET", "/api/v1/namespaces/default/configmaps/large")
    assert status == 200 and out["data"] == data


async def test_no_content_type_is_json_and_secrets_stay_out_of_errors(apiserver: SandboxAPIServer) -> None:
    """A POST without Content-Type is read as JSON; a rejected Secret's values never appear in the error."""
    status, out = await _raw(
        apiserver,
        "POST",
        "/api/v1/namespaces/default/secrets",
        body=b'{"metadata":{"name":"s1"},"stringData":{"k":"v"}}',
    )
    assert status == 201 and out["type"] == "Opaque"
    status, out = await _raw(
        apiserver,
        "POST",
        "/api/v1/namespaces/default/secrets",
        body=b'{"metadata":{"name":"S!"},"data":{"k":"c3VwZXJzZWNyZXQ="}} trailing',
    )
    assert status == 400 and "c3VwZXJzZWNyZXQ" not in json.dumps(out)


async def test_authentication_and_rbac(apiserver: SandboxAPIServer) -> None:
    """No credentials is system:anonymous (403 on resources, 200 on /version); a bad token is 401; a minted
    service-account token works once RBAC allows it and stops working when its ServiceAccount is deleted."""
    status, out = await _raw(apiserver, "GET", "/api/v1/pods", admin=False)
    assert status == 403 and out["reason"] == "Forbidden" and "system:anonymous" in out["message"]
    status, _ = await _raw(apiserver, "GET", "/version", admin=False)
    assert status == 200
    status, out = await _raw(apiserver, "GET", "/api/v1/pods", token="garbage")
    assert status == 401 and out["reason"] == "Unauthorized"
    await apiserver.store.create("serviceaccounts", {"metadata": {"name": "vk", "namespace": "kube-system"}})
    token = apiserver.mint_token("kube-system", "vk")
    status, out = await _raw(apiserver, "GET", "/api/v1/nodes", token=token)
    assert status == 403 and "system:serviceaccount:kube-system:vk" in out["message"]
    await apiserver.store.create(
        "clusterroles.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "node-reader"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
        },
    )
    await apiserver.store.create(
        "clusterrolebindings.rbac.authorization.k8s.io",
        {
            "metadata": {"name": "vk-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "vk", "namespace": "kube-system"}],
        },
    )
    status, _ = await _raw(apiserver, "GET", "/api/v1/nodes", token=token)
    assert status == 200
    status, out = await _raw(
        apiserver,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        body=json.dumps({"spec": {"token": token}}).encode(),
    )
    assert status == 201 and out["status"]["authenticated"] is True
    assert out["status"]["user"]["username"] == "system:serviceaccount:kube-system:vk"
    sar = {
        "spec": {
            "user": "system:serviceaccount:kube-system:vk",
            "groups": ["system:serviceaccounts"],
            "resourceAttributes": {"verb": "list", "resource": "nodes"},
        }
    }
    status, out = await _raw(
        apiserver, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=json.dumps(sar).encode()
    )
    assert status == 201 and out["status"]["allowed"] is True
    await apiserver.store.delete("serviceaccounts", "kube-system", "vk")
    status, _ = await _raw(apiserver, "GET", "/api/v1/nodes", token=token)
    assert status == 401


async def test_token_request_and_csr_subresources(apiserver: SandboxAPIServer) -> None:
    """serviceaccounts/token mints a token TokenReview accepts for its audience; a CSR records its requester and
    accepts /approval and /status writes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    await apiserver.store.create("serviceaccounts", {"metadata": {"name": "sa", "namespace": "default"}})
    status, out = await _raw(
        apiserver,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/sa/token",
        body=b'{"spec":{"audiences":["vk"],"expirationSeconds":600}}',
    )
    assert status == 201
    token = out["status"]["token"]
    review = {"spec": {"token": token, "audiences": ["vk"]}}
    _, out = await _raw(
        apiserver, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=json.dumps(review).encode()
    )
    assert out["status"]["authenticated"] is True and out["status"]["audiences"] == ["vk"]
    review["spec"]["audiences"] = ["someone-else"]
    _, out = await _raw(
        apiserver, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=json.dumps(review).encode()
    )
    assert out["status"]["authenticated"] is False
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:n1")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    import base64

    body = {
        "metadata": {"name": "csr1"},
        "spec": {
            "request": base64.b64encode(csr).decode(),
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["server auth"],
            "username": "forged",
        },
    }
    status, out = await _raw(
        apiserver, "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body=json.dumps(body).encode()
    )
    assert status == 201 and out["spec"]["username"] == "test-admin"
    out["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}
    status, out = await _raw(
        apiserver,
        "PUT",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1/approval",
        body=json.dumps(out).encode(),
    )
    assert status == 200 and out["status"]["conditions"][0]["type"] == "Approved"
    cert = apiserver.ca.sign_csr(csr, usages=["server auth"])
    out["status"]["certificate"] = base64.b64encode(cert).decode()
    status, out = await _raw(
        apiserver,
        "PUT",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1/status",
        body=json.dumps(out).encode(),
    )
    assert status == 200 and out["status"]["certificate"]


async def test_user_kubeconfig_with_token_and_discovery(apiserver: SandboxAPIServer, tmp_path: Path) -> None:
    """A static-token kubeconfig authenticates as its user; aggregated discovery is chosen by Accept."""
    path = apiserver.user_kubeconfig(tmp_path / "kc", token="s3cret", user="bob", groups=["system:masters"])
    cfg = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(config_file=str(path), client_configuration=cfg)
    async with kubernetes_asyncio.client.ApiClient(cfg) as api:
        assert (await kubernetes_asyncio.client.CoreV1Api(api).list_node()).items == []
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, out = await _raw(apiserver, "GET", "/apis", headers={"Accept": accept})
    assert status == 200 and out["kind"] == "APIGroupDiscoveryList"
    groups = {i["metadata"]["name"] for i in out["items"]}
    assert {"apps", "batch", "coordination.k8s.io", "events.k8s.io", "rbac.authorization.k8s.io"} <= groups
    for item in out["items"]:
        for res in item["versions"][0]["resources"]:
            assert res["responseKind"]["kind"]
            assert all(s["responseKind"]["kind"] for s in res.get("subresources", []))
    status, out = await _raw(apiserver, "GET", "/apis")
    assert out["kind"] == "APIGroupList"


async def test_events_api_groups_share_one_store(apiserver: SandboxAPIServer) -> None:
    """An events.k8s.io/v1 Event is readable as core/v1 (regarding→involvedObject, note→message) and selectable
    by the core field selectors."""
    ev = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "vk-eci",
        "reportingInstance": "vk-1",
        "action": "Create",
        "reason": "Created",
        "type": "Normal",
        "note": "made it",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1"},
    }
    status, out = await _raw(
        apiserver, "POST", "/apis/events.k8s.io/v1/namespaces/default/events", body=json.dumps(ev).encode()
    )
    assert status == 201 and out["note"] == "made it" and out["regarding"]["name"] == "p"
    status, out = await _raw(
        apiserver,
        "GET",
        "/api/v1/namespaces/default/events?fieldSelector="
        "involvedObject.name%3Dp,involvedObject.uid%3Du1,reason%3DCreated",
    )
    assert status == 200 and [i["message"] for i in out["items"]] == ["made it"]
    assert out["items"][0]["source"] == {"component": "vk-eci"}


async def test_watch_timeout_and_table_watch_headers(apiserver: SandboxAPIServer) -> None:
    """timeoutSeconds ends a watch; a Table watch sends column definitions only with its first event."""
    await apiserver.store.create("pods", {**POD, "metadata": {"name": "a", "namespace": "default"}})
    await apiserver.store.create("pods", {**POD, "metadata": {"name": "b", "namespace": "default"}})
    ctx = ssl.create_default_context(cadata=apiserver.ca.cert_pem.decode())
    cert, key = apiserver.ca.issue("w", ["system:masters"])
    (apiserver.directory / "w.crt").write_bytes(cert)
    (apiserver.directory / "w.key").write_bytes(key)
    ctx.load_cert_chain(apiserver.directory / "w.crt", apiserver.directory / "w.key")
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    lines: list[dict[str, Any]] = []
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as s,
        s.get(
            apiserver.url + "/api/v1/namespaces/default/pods?watch=true&resourceVersion=0&timeoutSeconds=1",
            headers=headers,
            ssl=ctx,
        ) as r,
    ):
        async for line in r.content:
            lines.append(json.loads(line))
    assert [e["type"] for e in lines] == ["ADDED", "ADDED"]
    assert lines[0]["object"]["kind"] == "Table" and lines[0]["object"]["columnDefinitions"]
    assert lines[1]["object"]["columnDefinitions"] == []
    assert lines[1]["object"]["rows"][0]["cells"][0] == "b"


async def test_accept_header_picks_table_metadata_or_objects(apiserver: SandboxAPIServer) -> None:
    """The first servable media range decides: a Table, PartialObjectMetadataList, or the full objects."""
    await apiserver.store.create("configmaps", {"metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}})
    path = "/api/v1/namespaces/default/configmaps"
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    meta = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    _, out = await _raw(apiserver, "GET", path, headers={"Accept": f"{table},application/json"})
    assert out["kind"] == "Table" and out["rows"][0]["cells"][:2] == ["c", 1]
    _, out = await _raw(apiserver, "GET", path, headers={"Accept": f"{meta},application/json"})
    assert out["kind"] == "PartialObjectMetadataList" and "data" not in out["items"][0]
    _, out = await _raw(apiserver, "GET", path, headers={"Accept": f"application/json,{table}"})
    assert out["kind"] == "ConfigMapList" and out["items"][0]["data"] == {"k": "v"}
