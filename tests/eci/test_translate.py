"""translate_pod: one table row per pod and container field, checked on the flat wire parameters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.eci.translation import SETTINGS, C, Mut, all_of, base_pod, c0, check_fields, check_refusal, set_at
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import InvalidInput, NotSupported, ProviderError
from vk_provider.provider import PodResources

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
        set_at(C + "command", ["/bin/sh", "-c"]),
        {"Container.1.Command.1": "/bin/sh", "Container.1.Command.2": "-c"},
    ),
    (
        "args only",
        set_at(C + "args", ["--port", "80"]),
        {"Container.1.Arg.1": "--port", "Container.1.Arg.2": "80", "Container.1.Command.1": None},
    ),
    ("workingDir", set_at(C + "workingDir", "/srv"), {"Container.1.WorkingDir": "/srv"}),
    (
        "ports",
        set_at(C + "ports", [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]),
        {"Container.1.Port.1.Port": 80, "Container.1.Port.1.Protocol": "TCP", "Container.1.Port.2.Protocol": "UDP"},
    ),
    (
        "stdin tty",
        all_of(set_at(C + "stdin", True), set_at(C + "tty", True)),
        {"Container.1.Stdin": True, "Container.1.Tty": True},
    ),
    ("imagePullPolicy", set_at(C + "imagePullPolicy", "Always"), {"Container.1.ImagePullPolicy": "Always"}),
    (
        "container resources",
        set_at(C + "resources", {"requests": {"cpu": "250m", "memory": "512Mi"}}),
        {"Container.1.Cpu": 0.25, "Container.1.Memory": 0.5, "Cpu": 0.25, "Memory": 0.5},
    ),
    (
        "exec probe",
        set_at(C + "livenessProbe", {"exec": {"command": ["cat", "/ok"]}, "periodSeconds": 5}),
        {"Container.1.LivenessProbe.Exec.Command.2": "/ok", "Container.1.LivenessProbe.PeriodSeconds": 5},
    ),
    (
        "http probe named port",
        all_of(
            set_at(C + "ports", [{"name": "http", "containerPort": 8080}]),
            set_at(C + "readinessProbe", {"httpGet": {"path": "/healthz", "port": "http"}}),
        ),
        {
            "Container.1.ReadinessProbe.HttpGet.Port": 8080,
            "Container.1.ReadinessProbe.HttpGet.Path": "/healthz",
            "Container.1.ReadinessProbe.HttpGet.Scheme": "HTTP",
        },
    ),
    (
        "tcp probe",
        set_at(C + "readinessProbe", {"tcpSocket": {"port": 5432}, "failureThreshold": 7}),
        {"Container.1.ReadinessProbe.TcpSocket.Port": 5432, "Container.1.ReadinessProbe.FailureThreshold": 7},
    ),
    (
        "postStart preStop",
        set_at(
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
        set_at(
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
        set_at("spec.securityContext", {"runAsUser": 7, "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
        {
            "Container.1.SecurityContext.RunAsUser": 7,
            "SecurityContext.Sysctl.1.Name": "net.core.somaxconn",
            "SecurityContext.Sysctl.1.Value": "1024",
        },
    ),
    ("restartPolicy", set_at("spec.restartPolicy", "OnFailure"), {"RestartPolicy": "OnFailure"}),
    (
        "grace and deadline",
        all_of(set_at("spec.terminationGracePeriodSeconds", 45), set_at("spec.activeDeadlineSeconds", 600)),
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
        all_of(
            set_at("spec.dnsPolicy", "None"),
            set_at(
                "spec.dnsConfig", {"nameservers": ["1.1.1.1"], "searches": ["corp"], "options": [{"name": "edns0"}]}
            ),
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
        set_at("spec.hostAliases", [{"ip": "10.1.1.1", "hostnames": ["a", "b"]}]),
        {"HostAliase.1.Ip": "10.1.1.1", "HostAliase.1.Hostname.2": "b"},
    ),
    ("hostname", set_at("spec.hostname", "db-0"), {"HostName": "db-0"}),
    (
        "init containers",
        set_at(
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
        set_at(
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
        all_of(
            set_at(C + "resources", {"limits": {"nvidia.com/gpu": "1"}}),
            set_at("metadata.annotations", {"k8s.aliyun.com/eci-use-specs": "ecs.gn6i-c4g1.xlarge"}),
        ),
        {"Container.1.Gpu": 1, "InstanceType": "ecs.gn6i-c4g1.xlarge"},
    ),
]


@pytest.mark.parametrize(("field", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_field(field: str, mutate: Mut, expected: dict[str, Any]) -> None:
    """Each pod field appears under its wire name (None = must be absent)."""
    check_fields(mutate, expected)


ERRORS: list[tuple[str, Mut, type[ProviderError], str]] = [
    ("daemonset", set_at("metadata.ownerReferences", [{"kind": "DaemonSet", "name": "ds"}]), NotSupported, "DaemonSet"),
    ("unknown named port", set_at(C + "livenessProbe", {"httpGet": {"port": "web"}}), InvalidInput, "port 'web'"),
    ("privileged", set_at(C + "securityContext", {"privileged": True}), NotSupported, "privileged"),
    (
        "bad annotation",
        set_at("metadata.annotations", {"k8s.aliyun.com/eci-spot-strategy": "x"}),
        InvalidInput,
        "k8s.aliyun.com/eci-spot-strategy",
    ),
    (
        "mount of unknown volume",
        set_at(C + "volumeMounts", [{"name": "ghost", "mountPath": "/g"}]),
        InvalidInput,
        "ghost",
    ),
    (
        "too many containers",
        set_at("spec.containers", [{"name": f"c{i}", "image": "x"} for i in range(21)]),
        InvalidInput,
        "at most 20",
    ),
    (
        "sidecar init container",
        set_at("spec.initContainers", [{"name": "side", "image": "x", "restartPolicy": "Always"}]),
        NotSupported,
        "sidecar",
    ),
    ("grpc probe", set_at(C + "livenessProbe", {"grpc": {"port": 1}}), NotSupported, "livenessProbe"),
]


@pytest.mark.parametrize(("case", "mutate", "exc", "text"), ERRORS, ids=[e[0] for e in ERRORS])
def test_refusals(case: str, mutate: Mut, exc: type[ProviderError], text: str) -> None:
    """Unsupported or invalid specs are refused with a typed error whose message names the culprit."""
    check_refusal(mutate, exc, text)


def test_startup_probe_is_a_warning() -> None:
    """startupProbe is dropped with a warning naming the container; the request is still built."""
    pod = base_pod()
    c0(pod)["startupProbe"] = {"exec": {"command": ["true"]}}
    result = translate_pod(pod, PodResources(), SETTINGS, "vk-node")
    assert any("startupProbe" in w and "app" in w for w in result.warnings)


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
