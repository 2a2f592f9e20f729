"""translate_pod: one table row per pod field, checked on the flat wire parameters."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.eci.conftest import make_settings
from vk_provider.eci.translate import apply_to_sdk_request, translate_pod
from vk_provider.errors import InvalidInput, NotSupported, ProviderError, TransientError
from vk_provider.provider import PodResources

SETTINGS = make_settings("http://127.0.0.1:1")


def base_pod() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "uid-1",
            "labels": {"app": "web"},
            "annotations": {"note": "hi"},
        },
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}], "serviceAccountName": "sa"},
    }


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def c0(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


Mut = Callable[[dict[str, Any], PodResources], None]


def _set(path: str, value: Any) -> Mut:
    def mut(pod: dict[str, Any], _: PodResources) -> None:
        target: Any = pod
        keys = path.split(".")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target.setdefault(k, {})
        target[keys[-1]] = value

    return mut


def _res(**kw: Any) -> Mut:
    def mut(_: dict[str, Any], res: PodResources) -> None:
        for k, v in kw.items():
            getattr(res, k).update(v)

    return mut


def _all(*muts: Mut) -> Mut:
    def mut(pod: dict[str, Any], res: PodResources) -> None:
        for m in muts:
            m(pod, res)

    return mut


C = "spec.containers.0."
DOCKER = json.dumps({"auths": {"https://registry.example.com/v1/": {"username": "u", "password": "p4ss"}}}).encode()

CASES: list[tuple[str, Mut, dict[str, Any]]] = [
    (
        "identity",
        lambda p, r: None,
        {
            "ContainerGroupName": "default-web",
            "Container.1.Image": "nginx:1.25",
            "Container.1.Name": "app",
            "Tag.5.Key": "vk-eci/uid",
            "Tag.5.Value": "uid-1",
            "Cpu": 2,
            "Memory": 4,
            "VSwitchId": "vsw-a",
            "SecurityGroupId": "sg-a",
            "RestartPolicy": "Always",
            "HostName": "web",
        },
    ),
    (
        "command",
        _set(C + "command", ["/bin/sh", "-c"]),
        {"Container.1.Command.1": "/bin/sh", "Container.1.Command.2": "-c"},
    ),
    (
        "args only",
        _set(C + "args", ["--port", "80"]),
        {"Container.1.Arg.1": "--port", "Container.1.Arg.2": "80", "Container.1.Command.1": None},
    ),
    ("workingDir", _set(C + "workingDir", "/srv"), {"Container.1.WorkingDir": "/srv"}),
    (
        "ports",
        _set(C + "ports", [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]),
        {"Container.1.Port.1.Port": 80, "Container.1.Port.1.Protocol": "TCP", "Container.1.Port.2.Protocol": "UDP"},
    ),
    (
        "stdin tty",
        _all(_set(C + "stdin", True), _set(C + "tty", True)),
        {"Container.1.Stdin": True, "Container.1.Tty": True},
    ),
    ("imagePullPolicy", _set(C + "imagePullPolicy", "Always"), {"Container.1.ImagePullPolicy": "Always"}),
    (
        "container resources",
        _set(C + "resources", {"requests": {"cpu": "250m", "memory": "512Mi"}}),
        {"Container.1.Cpu": 0.25, "Container.1.Memory": 0.5, "Cpu": 0.25, "Memory": 0.5},
    ),
    (
        "exec probe",
        _set(C + "livenessProbe", {"exec": {"command": ["cat", "/ok"]}, "periodSeconds": 5}),
        {"Container.1.LivenessProbe.Exec.Command.2": "/ok", "Container.1.LivenessProbe.PeriodSeconds": 5},
    ),
    (
        "http probe named port",
        _all(
            _set(C + "ports", [{"name": "http", "containerPort": 8080}]),
            _set(C + "readinessProbe", {"httpGet": {"path": "/healthz", "port": "http"}}),
        ),
        {
            "Container.1.ReadinessProbe.HttpGet.Port": 8080,
            "Container.1.ReadinessProbe.HttpGet.Path": "/healthz",
            "Container.1.ReadinessProbe.HttpGet.Scheme": "HTTP",
        },
    ),
    (
        "tcp probe",
        _set(C + "readinessProbe", {"tcpSocket": {"port": 5432}, "failureThreshold": 7}),
        {"Container.1.ReadinessProbe.TcpSocket.Port": 5432, "Container.1.ReadinessProbe.FailureThreshold": 7},
    ),
    (
        "postStart preStop",
        _set(
            C + "lifecycle",
            {"postStart": {"exec": {"command": ["touch", "/x"]}}, "preStop": {"httpGet": {"path": "/q", "port": 80}}},
        ),
        {
            "Container.1.LifecyclePostStartHandlerExec.1": "touch",
            "Container.1.LifecyclePreStopHandlerHttpGetPath": "/q",
            "Container.1.LifecyclePreStopHandlerHttpGetPort": 80,
        },
    ),
    (
        "securityContext",
        _set(
            C + "securityContext",
            {"runAsUser": 1000, "readOnlyRootFilesystem": True, "capabilities": {"add": ["NET_ADMIN"]}},
        ),
        {
            "Container.1.SecurityContext.RunAsUser": 1000,
            "Container.1.SecurityContext.ReadOnlyRootFilesystem": True,
            "Container.1.SecurityContext.Capability.Add.1": "NET_ADMIN",
        },
    ),
    (
        "pod runAsUser and sysctls",
        _set("spec.securityContext", {"runAsUser": 7, "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
        {
            "Container.1.SecurityContext.RunAsUser": 7,
            "SecurityContext.Sysctl.1.Name": "net.core.somaxconn",
            "SecurityContext.Sysctl.1.Value": "1024",
        },
    ),
    (
        "env literal with expansion",
        _set(C + "env", [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$$"}]),
        {"Container.1.EnvironmentVar.1.Key": "A", "Container.1.EnvironmentVar.2.Value": "x-$"},
    ),
    (
        "env configMapKeyRef",
        _all(
            _set(C + "env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
            _res(config_maps={"cm": {"k": "v"}}),
        ),
        {"Container.1.EnvironmentVar.1.Value": "v"},
    ),
    (
        "env secretKeyRef",
        _all(
            _set(C + "env", [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}}]),
            _res(secrets={"s": {"pw": b"sekrit"}}),
        ),
        {"Container.1.EnvironmentVar.1.Value": "sekrit"},
    ),
    (
        "env optional missing",
        _set(
            C + "env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}}]
        ),
        {"Container.1.EnvironmentVar.1.Key": None},
    ),
    (
        "env fieldRef metadata",
        _set(
            C + "env",
            [
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            ],
        ),
        {
            "Container.1.EnvironmentVar.1.Value": "web",
            "Container.1.EnvironmentVar.2.Value": "web",
            "Container.1.EnvironmentVar.3.Value": "vk-node",
            "Container.1.EnvironmentVar.4.Value": "sa",
        },
    ),
    (
        "env fieldRef podIP",
        _set(C + "env", [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
        {"Container.1.EnvironmentVar.1.FieldRef.FieldPath": "status.podIP", "Container.1.EnvironmentVar.1.Value": None},
    ),
    (
        "env resourceFieldRef",
        _all(
            _set(C + "resources", {"limits": {"cpu": "1500m", "memory": "1Gi"}}),
            _set(
                C + "env",
                [
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                ],
            ),
        ),
        {"Container.1.EnvironmentVar.1.Value": "2", "Container.1.EnvironmentVar.2.Value": "1024"},
    ),
    (
        "envFrom prefix",
        _all(
            _set(C + "envFrom", [{"prefix": "P_", "configMapRef": {"name": "cm"}}]),
            _res(config_maps={"cm": {"a": "1", "bad key": "2"}}),
        ),
        {"Container.1.EnvironmentVar.1.Key": "P_a", "Container.1.EnvironmentVar.2.Key": None},
    ),
    (
        "service links",
        _res(service_env={"DB_SERVICE_HOST": "10.0.0.5"}),
        {"Container.1.EnvironmentVar.1.Key": "DB_SERVICE_HOST"},
    ),
    (
        "configMap volume items mode",
        _all(
            _set(
                "spec.volumes",
                [
                    {
                        "name": "cfg",
                        "configMap": {
                            "name": "cm",
                            "items": [{"key": "a", "path": "x/a.conf", "mode": 0o600}],
                            "defaultMode": 0o444,
                        },
                    }
                ],
            ),
            _set(C + "volumeMounts", [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}]),
            _res(config_maps={"cm": {"a": "hello", "b": "no"}}),
        ),
        {
            "Volume.1.Type": "ConfigFileVolume",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Path": "x/a.conf",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64("hello"),
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode": 0o600,
            "Volume.1.ConfigFileVolume.ConfigFileToPath.2.Path": None,
            "Volume.1.ConfigFileVolume.DefaultModel": 0o444,
            "Container.1.VolumeMount.1.MountPath": "/etc/cfg",
            "Container.1.VolumeMount.1.ReadOnly": True,
        },
    ),
    (
        "secret volume",
        _all(
            _set("spec.volumes", [{"name": "s", "secret": {"secretName": "tls"}}]),
            _res(secrets={"tls": {"tls.crt": b"CERT"}}),
        ),
        {
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Path": "tls.crt",
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64("CERT"),
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode": 0o644,
        },
    ),
    (
        "optional missing configMap volume",
        _set("spec.volumes", [{"name": "o", "configMap": {"name": "gone", "optional": True}}]),
        {"Volume.1.Type": "EmptyDirVolume"},
    ),
    (
        "downwardAPI volume",
        _set(
            "spec.volumes",
            [
                {
                    "name": "d",
                    "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
                }
            ],
        ),
        {"Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64('app="web"')},
    ),
    (
        "projected token",
        _all(
            _set(
                "spec.volumes",
                [
                    {
                        "name": "kube-api-access",
                        "projected": {
                            "sources": [
                                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                                {
                                    "configMap": {
                                        "name": "kube-root-ca.crt",
                                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                    }
                                },
                            ]
                        },
                    }
                ],
            ),
            _res(tokens={"kube-api-access/token": "jwt"}, config_maps={"kube-root-ca.crt": {"ca.crt": "CA"}}),
        ),
        {
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Content": b64("jwt"),
            "Volume.1.ConfigFileVolume.ConfigFileToPath.2.Path": "ca.crt",
        },
    ),
    (
        "emptyDir",
        _set("spec.volumes", [{"name": "e", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]),
        {
            "Volume.1.Type": "EmptyDirVolume",
            "Volume.1.EmptyDirVolume.Medium": "Memory",
            "Volume.1.EmptyDirVolume.SizeLimit": "64Mi",
        },
    ),
    (
        "nfs",
        _set("spec.volumes", [{"name": "n", "nfs": {"server": "nas.example", "path": "/share", "readOnly": True}}]),
        {"Volume.1.Type": "NFSVolume", "Volume.1.NFSVolume.Server": "nas.example", "Volume.1.NFSVolume.ReadOnly": True},
    ),
    (
        "imagePullSecrets",
        _all(_set("spec.imagePullSecrets", [{"name": "reg"}]), _res(secrets={"reg": {".dockerconfigjson": DOCKER}})),
        {
            "ImageRegistryCredential.1.Server": "registry.example.com",
            "ImageRegistryCredential.1.UserName": "u",
            "ImageRegistryCredential.1.Password": "p4ss",
        },
    ),
    (
        "dockercfg auth",
        _all(
            _set("spec.imagePullSecrets", [{"name": "old"}]),
            _res(secrets={"old": {".dockercfg": json.dumps({"r.io": {"auth": b64("me:pw")}}).encode()}}),
        ),
        {"ImageRegistryCredential.1.UserName": "me", "ImageRegistryCredential.1.Password": "pw"},
    ),
    ("restartPolicy", _set("spec.restartPolicy", "OnFailure"), {"RestartPolicy": "OnFailure"}),
    (
        "grace and deadline",
        _all(_set("spec.terminationGracePeriodSeconds", 45), _set("spec.activeDeadlineSeconds", 600)),
        {"TerminationGracePeriodSeconds": 45, "ActiveDeadlineSeconds": 600},
    ),
    (
        "dns ClusterFirst",
        lambda p, r: None,
        {
            "DnsConfig.NameServer.1": "10.96.0.10",
            "DnsConfig.Search.1": "default.svc.cluster.local",
            "DnsConfig.Option.1.Name": "ndots",
            "DnsConfig.Option.1.Value": "5",
        },
    ),
    (
        "dns None with config",
        _all(
            _set("spec.dnsPolicy", "None"),
            _set("spec.dnsConfig", {"nameservers": ["1.1.1.1"], "searches": ["corp"], "options": [{"name": "edns0"}]}),
        ),
        {
            "DnsConfig.NameServer.1": "1.1.1.1",
            "DnsConfig.Search.1": "corp",
            "DnsConfig.Option.1.Name": "edns0",
            "DnsConfig.NameServer.2": None,
        },
    ),
    (
        "hostAliases",
        _set("spec.hostAliases", [{"ip": "10.1.1.1", "hostnames": ["a", "b"]}]),
        {"HostAliase.1.Ip": "10.1.1.1", "HostAliase.1.Hostname.2": "b"},
    ),
    ("hostname", _set("spec.hostname", "db-0"), {"HostName": "db-0"}),
    (
        "init containers",
        _set(
            "spec.initContainers",
            [{"name": "init", "image": "busybox", "command": ["true"], "readinessProbe": {"exec": {"command": ["x"]}}}],
        ),
        {
            "InitContainer.1.Name": "init",
            "InitContainer.1.Command.1": "true",
            "InitContainer.1.ReadinessProbe.Exec.Command.1": None,
        },
    ),
    (
        "annotations",
        _set(
            "metadata.annotations",
            {
                "k8s.aliyun.com/eci-use-specs": "ecs.c6.large",
                "k8s.aliyun.com/eci-vswitch": "vsw-x,vsw-y",
                "k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo",
                "k8s.aliyun.com/eci-with-eip": "true",
                "k8s.aliyun.com/eci-extra-ephemeral-storage": "40Gi",
            },
        ),
        {
            "InstanceType": "ecs.c6.large",
            "Cpu": None,
            "VSwitchId": "vsw-x,vsw-y",
            "SpotStrategy": "SpotAsPriceGo",
            "AutoCreateEip": True,
            "EphemeralStorage": 40,
        },
    ),
    (
        "gpu",
        _all(
            _set(C + "resources", {"limits": {"nvidia.com/gpu": "1"}}),
            _set("metadata.annotations", {"k8s.aliyun.com/eci-use-specs": "ecs.gn6i-c4g1.xlarge"}),
        ),
        {"Container.1.Gpu": 1, "InstanceType": "ecs.gn6i-c4g1.xlarge"},
    ),
]


@pytest.mark.parametrize(("field", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_field(field: str, mutate: Mut, expected: dict[str, Any]) -> None:
    """Each pod field appears under its wire name (None = must be absent)."""
    pod, res = base_pod(), PodResources()
    mutate(pod, res)
    params = translate_pod(pod, res, SETTINGS, "vk-node").request.to_params()
    for key, value in expected.items():
        if value is None:
            assert key not in params, key
        else:
            assert params.get(key) == value, (key, params.get(key))


ERRORS: list[tuple[str, Mut, type[ProviderError], str]] = [
    ("hostPath", _set("spec.volumes", [{"name": "host", "hostPath": {"path": "/var"}}]), NotSupported, "volume host"),
    (
        "pvc",
        _set("spec.volumes", [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]),
        NotSupported,
        "volume data",
    ),
    ("daemonset", _set("metadata.ownerReferences", [{"kind": "DaemonSet", "name": "ds"}]), NotSupported, "DaemonSet"),
    (
        "mandatory configmap",
        _set(C + "env", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]),
        TransientError,
        "configmap 'cm' not found",
    ),
    (
        "mandatory secret volume",
        _set("spec.volumes", [{"name": "s", "secret": {"secretName": "nope"}}]),
        TransientError,
        "secret 'nope' not found",
    ),
    ("unknown named port", _set(C + "livenessProbe", {"httpGet": {"port": "web"}}), InvalidInput, "port 'web'"),
    ("privileged", _set(C + "securityContext", {"privileged": True}), NotSupported, "privileged"),
    (
        "bad annotation",
        _set("metadata.annotations", {"k8s.aliyun.com/eci-spot-strategy": "x"}),
        InvalidInput,
        "k8s.aliyun.com/eci-spot-strategy",
    ),
    (
        "mount of unknown volume",
        _set(C + "volumeMounts", [{"name": "ghost", "mountPath": "/g"}]),
        InvalidInput,
        "ghost",
    ),
    (
        "too many containers",
        _set("spec.containers", [{"name": f"c{i}", "image": "x"} for i in range(21)]),
        InvalidInput,
        "at most 20",
    ),
    (
        "sidecar init container",
        _set("spec.initContainers", [{"name": "side", "image": "x", "restartPolicy": "Always"}]),
        NotSupported,
        "sidecar",
    ),
    ("grpc probe", _set(C + "livenessProbe", {"grpc": {"port": 1}}), NotSupported, "livenessProbe"),
]


@pytest.mark.parametrize(("case", "mutate", "exc", "text"), ERRORS, ids=[e[0] for e in ERRORS])
def test_refusals(case: str, mutate: Mut, exc: type[ProviderError], text: str) -> None:
    """Unsupported or invalid specs are refused with a typed error whose message names the culprit."""
    pod, res = base_pod(), PodResources()
    mutate(pod, res)
    with pytest.raises(exc) as info:
        translate_pod(pod, res, SETTINGS, "vk-node")
    assert text in info.value.message


def test_startup_probe_is_a_warning() -> None:
    """startupProbe is dropped with a warning naming the container; the request is still built."""
    pod = base_pod()
    c0(pod)["startupProbe"] = {"exec": {"command": ["true"]}}
    result = translate_pod(pod, PodResources(), SETTINGS, "vk-node")
    assert any("startupProbe" in w and "app" in w for w in result.warnings)


def test_registry_password_not_in_repr() -> None:
    """The request's repr never shows a registry password."""
    pod = base_pod()
    pod["spec"]["imagePullSecrets"] = [{"name": "reg"}]
    req = translate_pod(pod, PodResources(secrets={"reg": {".dockerconfigjson": DOCKER}}), SETTINGS, "n").request
    assert "p4ss" not in repr(req) and "p4ss" not in str(req.model_dump())


def test_applies_to_the_sdk_request() -> None:
    """apply_to_sdk_request puts every parameter on CreateContainerGroupRequest, encoded for the wire."""
    from aliyunsdkeci.request.v20180808.CreateContainerGroupRequest import CreateContainerGroupRequest

    pod = copy.deepcopy(base_pod())
    c0(pod)["stdin"] = True
    params = translate_pod(pod, PodResources(), SETTINGS, "n").request.to_params()
    sdk_req = CreateContainerGroupRequest()
    apply_to_sdk_request(sdk_req, params)
    q = sdk_req.get_query_params()
    assert q["Container.1.Image"] == "nginx:1.25" and q["Container.1.Stdin"] == "true" and q["Cpu"] == "2.0"


def test_ignored_fields_are_warnings() -> None:
    """Fields ECI cannot honour but that need not stop the pod are named in warnings, never dropped silently."""
    pod = base_pod()
    pod["spec"]["securityContext"] = {"fsGroup": 2000}
    pod["spec"]["subdomain"] = "svc"
    c0(pod)["securityContext"] = {"capabilities": {"drop": ["ALL"]}, "runAsGroup": 3}
    c0(pod)["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    warnings = " | ".join(translate_pod(pod, PodResources(), SETTINGS, "n").warnings)
    for word in ("fsGroup", "subdomain", "capabilities.drop", "runAsGroup", "hostPort"):
        assert word in warnings
