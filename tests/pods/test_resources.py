"""pods/resources.py on its own: what a pod references, how ConfigMaps/Secrets decode, the kubelet's service-link
variables, ResourceResolver.resolve and projected service-account tokens (mostly against the in-memory FakeKube; one
test against the sandbox API server, which mints real JWTs). The reconciler's use of it is in test_reconcile.py."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from tests.kube.fakes import FakeKube
from tests.pods.fakes import make_pod
from vk_provider.kube.client import KubeAPI
from vk_provider.pods.resources import (
    DEFAULT_TOKEN_SECONDS,
    EXTENDED_TOKEN_SECONDS,
    Missing,
    MissingReferences,
    ResourceResolver,
    _config_map_data,
    _secret_data,
    collect_references,
    jwt_expiry,
    service_env,
)
from vk_sandbox.apiserver.server import SandboxAPIServer

NS = "default"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cm(name: str, data: dict[str, str] | None = None, binary: dict[str, bytes] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": NS}, "data": data or {}}
    if binary:
        obj["binaryData"] = {k: b64(v) for k, v in binary.items()}
    return obj


def secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "data": {k: b64(v) for k, v in data.items()}}


def svc(name: str, ip: str | None, *ports: dict[str, Any], ns: str = NS) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": list(ports)}
    if ip is not None:
        spec["clusterIP"] = ip
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def env_pod(*env: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return make_pod("p", containers=[{"name": "main", "image": "busybox", "env": list(env)}], **spec)


def key_ref(source: str, name: str, key: str, optional: bool | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "key": key}
    if optional is not None:
        ref["optional"] = optional
    return {"name": f"{source}_{key}".upper(), "valueFrom": {source: ref}}


def cm_key(name: str, key: str, optional: bool | None = None) -> dict[str, Any]:
    return key_ref("configMapKeyRef", name, key, optional)


def secret_key(name: str, key: str, optional: bool | None = None) -> dict[str, Any]:
    return key_ref("secretKeyRef", name, key, optional)


def jwt(payload: Any, *, raw: str | None = None) -> str:
    body = raw if raw is not None else base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


# --- collect_references --------------------------------------------------------------------------------


def test_collect_references_finds_every_kind_of_reference() -> None:
    pod = make_pod(
        "p",
        initContainers=[
            {
                "name": "init",
                "image": "busybox",
                "env": [cm_key("init-cm", "a")],
                "envFrom": [{"secretRef": {"name": "init-sec"}}],
            }
        ],
        containers=[
            {
                "name": "main",
                "image": "busybox",
                "env": [cm_key("env-cm", "k"), secret_key("env-sec", "s"), {"name": "PLAIN", "value": "x"}],
                "envFrom": [{"configMapRef": {"name": "from-cm"}, "prefix": "P_"}, {"secretRef": {"name": "from-sec"}}],
            }
        ],
        volumes=[
            {"name": "v1", "configMap": {"name": "vol-cm"}},
            {"name": "v2", "secret": {"secretName": "vol-sec"}},
            {
                "name": "v3",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "proj-cm"}},
                        {"secret": {"name": "proj-sec"}},
                        {"serviceAccountToken": {"path": "token"}},
                        {"downwardAPI": {"items": []}},
                    ]
                },
            },
            {"name": "v4", "emptyDir": {}},
        ],
        imagePullSecrets=[{"name": "pull"}, {}],
    )
    refs = collect_references(pod)
    assert refs.config_maps == {"init-cm": False, "env-cm": False, "from-cm": False, "vol-cm": False, "proj-cm": False}
    assert refs.secrets == {"init-sec": False, "env-sec": False, "from-sec": False, "vol-sec": False, "proj-sec": False}
    assert refs.cm_keys == [("init-cm", "a", False), ("env-cm", "k", False)]
    assert refs.secret_keys == [("env-sec", "s", False)]
    assert refs.pull_secrets == {"pull"}


def test_collect_references_optional_only_when_every_reference_is_optional() -> None:
    pod = make_pod(
        "p",
        containers=[
            {
                "name": "main",
                "image": "busybox",
                "env": [cm_key("both", "k", optional=True), secret_key("opt-sec", "s", optional=True)],
                "envFrom": [{"configMapRef": {"name": "opt-cm", "optional": True}}],
            }
        ],
        volumes=[
            {"name": "v1", "configMap": {"name": "both"}},  # required here: False wins
            {"name": "v2", "secret": {"secretName": "opt-sec", "optional": True}},
            {"name": "v3", "projected": {"sources": [{"secret": {"name": "proj", "optional": True}}]}},
        ],
    )
    refs = collect_references(pod)
    assert refs.config_maps == {"both": False, "opt-cm": True}
    assert refs.secrets == {"opt-sec": True, "proj": True}
    assert refs.cm_keys == [("both", "k", True)]


def test_collect_references_of_a_bare_pod_is_empty() -> None:
    refs = collect_references({"metadata": {"name": "p"}, "spec": {}})
    assert (refs.config_maps, refs.secrets, refs.cm_keys, refs.secret_keys, refs.pull_secrets) == (
        {},
        {},
        [],
        [],
        set(),
    )


# --- ConfigMap / Secret data ---------------------------------------------------------------------------


def test_config_map_data_decodes_binary_data_and_skips_what_is_not_text() -> None:
    obj = cm("c", {"plain": "v", "num": 5}, binary={"bin": "héllo".encode(), "blob": b"\xff\xfe\x00"})
    obj["binaryData"]["broken"] = "***not base64***"
    assert _config_map_data(obj) == {"plain": "v", "num": "5", "bin": "héllo"}


def test_config_map_data_of_an_empty_object() -> None:
    assert _config_map_data({"metadata": {"name": "c"}}) == {}


def test_secret_data_decodes_base64_keeps_bytes_and_merges_string_data() -> None:
    obj = secret("s", {"bin": b"\xff\x00raw", "text": b"pw"})
    obj["data"]["broken"] = "abc"  # bad padding
    obj["stringData"] = {"text": "override", "extra": "e"}
    assert _secret_data(obj) == {"bin": b"\xff\x00raw", "text": b"override", "extra": b"e"}


# --- service links -------------------------------------------------------------------------------------


def test_service_env_matches_the_kubelets_names_and_values() -> None:
    env = service_env(
        [
            svc(
                "my-db",
                "10.0.0.5",
                {"name": "sql", "port": 5432, "protocol": "TCP"},
                {"name": "metrics-port", "port": 9187},
                {"port": 53, "protocol": "UDP"},
            )
        ]
    )
    assert env == {
        "MY_DB_SERVICE_HOST": "10.0.0.5",
        "MY_DB_SERVICE_PORT": "5432",
        "MY_DB_SERVICE_PORT_SQL": "5432",
        "MY_DB_SERVICE_PORT_METRICS_PORT": "9187",
        "MY_DB_PORT": "tcp://10.0.0.5:5432",
        "MY_DB_PORT_5432_TCP": "tcp://10.0.0.5:5432",
        "MY_DB_PORT_5432_TCP_PROTO": "tcp",
        "MY_DB_PORT_5432_TCP_PORT": "5432",
        "MY_DB_PORT_5432_TCP_ADDR": "10.0.0.5",
        "MY_DB_PORT_9187_TCP": "tcp://10.0.0.5:9187",
        "MY_DB_PORT_9187_TCP_PROTO": "tcp",
        "MY_DB_PORT_9187_TCP_PORT": "9187",
        "MY_DB_PORT_9187_TCP_ADDR": "10.0.0.5",
        "MY_DB_PORT_53_UDP": "udp://10.0.0.5:53",
        "MY_DB_PORT_53_UDP_PROTO": "udp",
        "MY_DB_PORT_53_UDP_PORT": "53",
        "MY_DB_PORT_53_UDP_ADDR": "10.0.0.5",
    }


def test_service_env_first_port_decides_the_short_forms() -> None:
    env = service_env([svc("dns", "10.0.0.10", {"name": "dns", "port": 53, "protocol": "SCTP"}, {"port": 80})])
    assert env["DNS_SERVICE_PORT"] == "53"
    assert env["DNS_PORT"] == "sctp://10.0.0.10:53"
    assert env["DNS_PORT_53_SCTP_PROTO"] == "sctp"


def test_service_env_skips_headless_and_unallocated_and_keeps_portless() -> None:
    env = service_env(
        [svc("headless", "None", {"port": 80}), svc("pending", None, {"port": 80}), svc("bare", "10.0.0.9")]
    )
    assert env == {"BARE_SERVICE_HOST": "10.0.0.9"}


def test_service_env_brackets_an_ipv6_cluster_ip_in_urls() -> None:
    """The kubelet joins host and port with net.JoinHostPort; _ADDR and _SERVICE_HOST stay bare."""
    env = service_env([svc("v6", "fd00::10", {"port": 443})])
    assert env["V6_SERVICE_HOST"] == "fd00::10"
    assert env["V6_PORT"] == "tcp://[fd00::10]:443"
    assert env["V6_PORT_443_TCP"] == "tcp://[fd00::10]:443"
    assert env["V6_PORT_443_TCP_ADDR"] == "fd00::10"


# --- ResourceResolver against FakeKube -----------------------------------------------------------------


def kube_with(*objs: tuple[str, str, dict[str, Any]]) -> FakeKube:
    kube = FakeKube()
    for kind, name, obj in objs:
        kube.put(f"/api/v1/namespaces/{NS}/{kind}/{name}", obj)
    return kube


def gets(kube: FakeKube, suffix: str) -> int:
    return len(kube.writes("GET", suffix))


async def test_resolve_reads_each_object_once_and_decodes_it() -> None:
    kube = kube_with(
        ("configmaps", "conf", cm("conf", {"k": "v"}, binary={"b": b"bin"})),
        ("secrets", "pw", secret("pw", {"s": b"\x00\x01"})),
    )
    pod = env_pod(
        cm_key("conf", "k"),
        cm_key("conf", "b"),
        secret_key("pw", "s"),
        volumes=[{"name": "c", "configMap": {"name": "conf"}}, {"name": "s", "secret": {"secretName": "pw"}}],
        imagePullSecrets=[{"name": "pw"}],
        enableServiceLinks=False,
    )
    out = await ResourceResolver(kube).resolve(pod)
    assert out.resources.config_maps == {"conf": {"k": "v", "b": "bin"}}
    assert out.resources.secrets == {"pw": {"s": b"\x00\x01"}}
    assert out.missing == [] and out.expiring_tokens == []
    assert gets(kube, "/configmaps/conf") == 1 and gets(kube, "/secrets/pw") == 1


async def test_missing_required_references_raise_with_every_missing_item() -> None:
    kube = kube_with(("configmaps", "conf", cm("conf", {"other": "x"})), ("secrets", "pw", secret("pw", {})))
    pod = env_pod(
        cm_key("conf", "k"),  # key missing, required
        secret_key("pw", "opt", optional=True),  # key missing, optional
        cm_key("gone-opt", "x", optional=True),  # object missing, optional
        volumes=[{"name": "s", "secret": {"secretName": "gone"}}],  # object missing, required
        imagePullSecrets=[{"name": "gone-pull"}],  # a pull secret is never required
    )
    with pytest.raises(MissingReferences) as info:
        await ResourceResolver(kube).resolve(pod)
    assert sorted(info.value.missing, key=repr) == sorted(
        [
            Missing("ConfigMap", "conf", False, "k"),
            Missing("Secret", "pw", True, "opt"),
            Missing("ConfigMap", "gone-opt", True),
            Missing("Secret", "gone", False),
            Missing("Secret", "gone-pull", True),
        ],
        key=repr,
    )
    text = str(info.value)
    assert "configmap 'conf' key 'k'" in text and "secret 'gone'" in text
    assert not kube.writes("POST"), "nothing is minted for a pod that cannot start"


async def test_missing_optional_references_let_the_pod_start() -> None:
    kube = kube_with(("configmaps", "conf", cm("conf", {"k": "v"})))
    pod = env_pod(
        cm_key("conf", "nokey", optional=True),
        secret_key("absent", "s", optional=True),
        volumes=[{"name": "c", "configMap": {"name": "absent-cm", "optional": True}}],
        imagePullSecrets=[{"name": "absent-pull"}],
        enableServiceLinks=False,
    )
    out = await ResourceResolver(kube).resolve(pod)
    assert out.resources.config_maps == {"absent-cm": None, "conf": {"k": "v"}}
    assert out.resources.secrets == {"absent": None, "absent-pull": None}
    assert sorted(out.missing, key=repr) == sorted(
        [
            Missing("ConfigMap", "absent-cm", True),
            Missing("Secret", "absent", True),
            Missing("Secret", "absent-pull", True),
            Missing("ConfigMap", "conf", True, "nokey"),
        ],
        key=repr,
    )


async def test_a_missing_object_is_not_also_reported_per_key() -> None:
    pod = env_pod(cm_key("absent", "a", optional=True), cm_key("absent", "b", optional=True), enableServiceLinks=False)
    out = await ResourceResolver(FakeKube()).resolve(pod)
    assert out.missing == [Missing("ConfigMap", "absent", True)]


async def test_lookups_use_the_pods_namespace() -> None:
    kube = FakeKube()
    kube.put("/api/v1/namespaces/team/configmaps/conf", cm("conf", {"k": "team"}))
    kube.put("/api/v1/namespaces/default/configmaps/conf", cm("conf", {"k": "default"}))
    pod = make_pod("p", ns="team", volumes=[{"name": "c", "configMap": {"name": "conf"}}], enableServiceLinks=False)
    out = await ResourceResolver(kube).resolve(pod)
    assert out.resources.config_maps == {"conf": {"k": "team"}}


async def test_service_links_of_the_namespace_plus_the_kubernetes_service() -> None:
    kube = FakeKube()
    kube.put(
        "/api/v1/namespaces/default/services/kubernetes", svc("kubernetes", "10.96.0.1", {"name": "https", "port": 443})
    )
    kube.put("/api/v1/namespaces/default/services/other", svc("other", "10.96.0.2", {"port": 80}))
    kube.put("/api/v1/namespaces/team/services/db", svc("db", "10.96.0.3", {"port": 5432}, ns="team"))
    out = await ResourceResolver(kube).resolve(make_pod("p", ns="team"))
    env = out.resources.service_env
    assert env["DB_SERVICE_HOST"] == "10.96.0.3"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith("OTHER_") for k in env), "only the kubernetes service comes from default"


async def test_disabled_service_links_still_carry_the_kubernetes_service() -> None:
    """The kubelet always adds the master service of ``default``; enableServiceLinks only drops the others."""
    kube = FakeKube()
    kube.put(
        "/api/v1/namespaces/default/services/kubernetes", svc("kubernetes", "10.96.0.1", {"name": "https", "port": 443})
    )
    kube.put("/api/v1/namespaces/default/services/other", svc("other", "10.96.0.2", {"port": 80}))
    kube.put("/api/v1/namespaces/team/services/db", svc("db", "10.96.0.3", {"port": 5432}, ns="team"))
    for ns in ("team", "default"):
        out = await ResourceResolver(kube).resolve(make_pod("p", ns=ns, enableServiceLinks=False))
        env = out.resources.service_env
        assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1", ns
        assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443", ns
        assert {k.split("_")[0] for k in env} == {"KUBERNETES"}, ns


async def test_a_namespaces_own_kubernetes_service_wins_over_defaults() -> None:
    kube = FakeKube()
    kube.put("/api/v1/namespaces/default/services/kubernetes", svc("kubernetes", "10.96.0.1", {"port": 443}))
    kube.put("/api/v1/namespaces/team/services/kubernetes", svc("kubernetes", "10.96.7.7", {"port": 80}, ns="team"))
    out = await ResourceResolver(kube).resolve(make_pod("p", ns="team"))
    assert out.resources.service_env["KUBERNETES_SERVICE_HOST"] == "10.96.7.7"
    assert out.resources.service_env["KUBERNETES_PORT"] == "tcp://10.96.7.7:80"


async def test_services_are_listed_once_per_namespace_within_the_ttl() -> None:
    kube = FakeKube()
    kube.put("/api/v1/namespaces/team/services/db", svc("db", "10.96.0.3", {"port": 5432}, ns="team"))
    resolver = ResourceResolver(kube, services_ttl=3600)
    for i in range(3):
        await resolver.resolve(make_pod(f"p{i}", ns="team"))
    await resolver.resolve(make_pod("q", ns="other"))
    assert gets(kube, "/namespaces/team/services") == 1
    assert gets(kube, "/namespaces/default/services") == 1
    assert gets(kube, "/namespaces/other/services") == 1
    # Within the TTL a new service is not seen yet ...
    kube.put("/api/v1/namespaces/team/services/new", svc("new", "10.96.0.4", {"port": 1}, ns="team"))
    out = await resolver.resolve(make_pod("p9", ns="team"))
    assert "NEW_SERVICE_HOST" not in out.resources.service_env


async def test_services_are_listed_again_once_the_ttl_passed() -> None:
    kube = FakeKube()
    resolver = ResourceResolver(kube, services_ttl=0.0)
    await resolver.resolve(make_pod("p", ns="team"))
    kube.put("/api/v1/namespaces/team/services/new", svc("new", "10.96.0.4", {"port": 1}, ns="team"))
    out = await resolver.resolve(make_pod("p", ns="team"))
    assert out.resources.service_env["NEW_SERVICE_HOST"] == "10.96.0.4"
    assert gets(kube, "/namespaces/team/services") == 2


# --- tokens --------------------------------------------------------------------------------------------


class TokenKube(FakeKube):
    """FakeKube whose TokenRequest answers with a chosen token and expirationTimestamp."""

    def __init__(self, token: str, stated: str | None = "2099-01-01T00:00:00Z") -> None:
        super().__init__()
        self.token = token
        self.stated = stated

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if method == "POST" and path.endswith("/token"):
            self.calls.append((method, path, kw.get("body")))
            status: dict[str, Any] = {"token": self.token}
            if self.stated:
                status["expirationTimestamp"] = self.stated
            return {"status": status}
        return await super().request(method, path, **kw)


def token_pod(*sources: dict[str, Any], **spec: Any) -> dict[str, Any]:
    vol = {"name": "kube-api-access", "projected": {"sources": list(sources)}}
    return make_pod("p", volumes=[vol], enableServiceLinks=False, **spec)


async def test_the_automounted_token_is_requested_bound_to_the_pod_and_not_expiring() -> None:
    kube = TokenKube("not-a-jwt")
    pod = token_pod(
        {"serviceAccountToken": {"path": "token", "expirationSeconds": EXTENDED_TOKEN_SECONDS}},
        serviceAccountName="robot",
    )
    out = await ResourceResolver(kube).resolve(pod)
    assert out.resources.tokens == {"kube-api-access/token": "not-a-jwt"}
    assert out.expiring_tokens == []
    [(_, path, body)] = kube.writes("POST", "/token")
    assert path == "/api/v1/namespaces/default/serviceaccounts/robot/token"
    assert body["spec"] == {
        "audiences": [],
        "expirationSeconds": EXTENDED_TOKEN_SECONDS,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "uid-p"},
    }


@pytest.mark.parametrize(("spec", "sa"), [({"serviceAccount": "legacy"}, "legacy"), ({}, "default")])
async def test_the_service_account_falls_back_to_the_legacy_field_then_default(spec: dict[str, Any], sa: str) -> None:
    kube = TokenKube("t")
    await ResourceResolver(kube).resolve(token_pod({"serviceAccountToken": {"path": "t"}}, **spec))
    [(_, path, _)] = kube.writes("POST", "/token")
    assert path.endswith(f"/serviceaccounts/{sa}/token")


async def test_a_token_with_the_default_lifetime_expires_when_its_jwt_says() -> None:
    exp = int(time.time()) + 3000
    kube = TokenKube(jwt({"exp": exp}))
    out = await ResourceResolver(kube).resolve(token_pod({"serviceAccountToken": {"path": "t", "audience": "vault"}}))
    [body] = [c[2] for c in kube.writes("POST", "/token")]
    assert body["spec"]["expirationSeconds"] == DEFAULT_TOKEN_SECONDS and body["spec"]["audiences"] == ["vault"]
    [tok] = out.expiring_tokens
    assert (tok.volume, tok.path, tok.seconds, tok.expires_at) == ("kube-api-access", "t", DEFAULT_TOKEN_SECONDS, exp)


async def test_a_token_that_is_not_a_jwt_expires_when_the_status_says() -> None:
    kube = TokenKube("opaque", stated="2030-05-06T07:08:09Z")
    out = await ResourceResolver(kube).resolve(
        token_pod({"serviceAccountToken": {"path": "t", "expirationSeconds": 7200}})
    )
    [tok] = out.expiring_tokens
    assert tok.seconds == 7200 and tok.expires_at == datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()


async def test_without_any_stated_expiry_the_requested_lifetime_counts() -> None:
    kube = TokenKube("opaque", stated=None)
    before = time.time()
    out = await ResourceResolver(kube).resolve(
        token_pod({"serviceAccountToken": {"path": "t", "expirationSeconds": 900}})
    )
    [tok] = out.expiring_tokens
    assert before + 900 <= tok.expires_at <= time.time() + 900


async def test_a_foreign_audience_token_is_extended_only_if_its_jwt_says_so() -> None:
    src = {"serviceAccountToken": {"path": "t", "audience": "vault", "expirationSeconds": EXTENDED_TOKEN_SECONDS}}
    year = int(time.time()) + 365 * 86400
    out = await ResourceResolver(TokenKube(jwt({"exp": year}))).resolve(token_pod(src))
    assert out.expiring_tokens == []
    short = int(time.time()) + EXTENDED_TOKEN_SECONDS
    out = await ResourceResolver(TokenKube(jwt({"exp": short}))).resolve(token_pod(src))
    assert [t.expires_at for t in out.expiring_tokens] == [short]
    out = await ResourceResolver(TokenKube("opaque")).resolve(token_pod(src))
    assert len(out.expiring_tokens) == 1, "without a readable claim the token is assumed to expire"


async def test_every_projected_token_source_is_minted() -> None:
    kube = TokenKube("t")
    pod = make_pod(
        "p",
        enableServiceLinks=False,
        volumes=[
            {
                "name": "a",
                "projected": {
                    "sources": [{"serviceAccountToken": {"path": "one"}}, {"serviceAccountToken": {"path": "two"}}]
                },
            },
            {
                "name": "b",
                "projected": {
                    "sources": [{"configMap": {"name": "c", "optional": True}}, {"serviceAccountToken": {"path": "x"}}]
                },
            },
        ],
    )
    out = await ResourceResolver(kube).resolve(pod)
    assert sorted(out.resources.tokens) == ["a/one", "a/two", "b/x"]
    assert len(kube.writes("POST", "/token")) == 3


# --- jwt_expiry ----------------------------------------------------------------------------------------


def test_jwt_expiry_reads_the_exp_claim() -> None:
    assert jwt_expiry(jwt({"exp": 1700000000, "sub": "x"})) == 1700000000.0
    assert jwt_expiry(jwt({"exp": 1700000000.5})) == 1700000000.5


@pytest.mark.parametrize(
    "token",
    [
        "",
        "onlyone",
        "two.parts",
        "a.b.c.d",
        "tok-default",
        "a.b.c",
        "a.!!!.c",
        jwt(None, raw="!!!!"),  # not base64
        jwt(None, raw="a"),  # impossible base64 length
        jwt(None, raw=base64.urlsafe_b64encode(b"\xff\xfe{").decode()),  # not UTF-8
        jwt(None, raw=base64.urlsafe_b64encode(b"{not json").decode()),
        jwt(None, raw="é"),  # not ASCII
        jwt([1, 2]),
        jwt({"sub": "no exp"}),
        jwt({"exp": "1700000000"}),
        jwt({"exp": True}),
        jwt({"exp": None}),
        jwt(None, raw=base64.urlsafe_b64encode(b'{"exp": 1' + b"0" * 400 + b"}").decode()),  # too big for a float
    ],
)
def test_jwt_expiry_of_a_malformed_token_is_none(token: str) -> None:
    assert jwt_expiry(token) is None


# --- against the sandbox API server --------------------------------------------------------------------


async def test_resolve_against_the_sandbox_api_server(tmp_path: Path) -> None:
    async with SandboxAPIServer(directory=tmp_path / "apiserver", controllers=False) as srv:
        cfg = k8s_client.Configuration()
        await k8s_config.load_kube_config(config_file=str(srv.kubeconfig_path), client_configuration=cfg)
        api = KubeAPI(k8s_client.ApiClient(configuration=cfg), timeout=10)
        try:
            base = "/api/v1/namespaces/default"
            await api.request("POST", f"{base}/serviceaccounts", body={"metadata": {"name": "robot"}})
            await api.request("POST", f"{base}/configmaps", body={"metadata": {"name": "conf"}, "data": {"k": "v"}})
            await api.request(
                "POST", f"{base}/secrets", body={"metadata": {"name": "pw"}, "data": {"s": b64(b"\x00pw")}}
            )
            await api.request(
                "POST",
                f"{base}/services",
                body={"metadata": {"name": "db"}, "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 5432}]}},
            )
            pod = token_pod(
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 1800}},
                serviceAccountName="robot",
                containers=[{"name": "main", "image": "busybox", "env": [cm_key("conf", "k"), secret_key("pw", "s")]}],
            )
            pod["spec"]["enableServiceLinks"] = True
            pod = await api.request("POST", f"{base}/pods", body=pod)
            before = time.time()
            out = await ResourceResolver(api).resolve(pod)
            assert out.resources.config_maps == {"conf": {"k": "v"}}
            assert out.resources.secrets == {"pw": {"s": b"\x00pw"}}
            # The sandbox allocates no ClusterIPs (the test sets one); it does seed the kubernetes service.
            assert out.resources.service_env["DB_SERVICE_HOST"] == "10.96.0.20"
            assert out.resources.service_env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
            [tok] = out.expiring_tokens
            assert before + 1800 - 5 <= tok.expires_at <= time.time() + 1800 + 5
            assert jwt_expiry(out.resources.tokens["kube-api-access/token"]) == tok.expires_at

            missing = make_pod("q", volumes=[{"name": "c", "configMap": {"name": "nope"}}])
            with pytest.raises(MissingReferences) as info:
                await ResourceResolver(api).resolve(missing)
            assert info.value.missing == [Missing("ConfigMap", "nope", False)]
        finally:
            await api.close()
