"""Backend.validate on ECI: the translator's own refusals, without the pod's references being fetched."""

from __future__ import annotations

from vk_provider.eci.dryrun import refusal
from vk_provider.settings import ECISettings

SETTINGS = ECISettings()


def _pod(**spec: object) -> dict[str, object]:
    containers = [{"name": "c", "image": "nginx"}]
    return {"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": containers, **spec}}


def test_what_translation_refuses_is_reported() -> None:
    assert "hostPath" in str(refusal(_pod(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), SETTINGS, "vk"))
    assert "persistentVolumeClaim" in str(
        refusal(_pod(volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]), SETTINGS, "vk")
    )
    assert "hostNetwork" in str(refusal(_pod(hostNetwork=True), SETTINGS, "vk"))
    ds = _pod()
    ds["metadata"] = {"name": "p", "ownerReferences": [{"kind": "DaemonSet", "name": "fluentd"}]}
    assert "DaemonSet" in str(refusal(ds, SETTINGS, "vk"))


def test_references_are_assumed_present() -> None:
    """ConfigMap and Secret references (with items and keys) are not refusals: they are resolved at create."""
    pod = _pod(
        volumes=[
            {"name": "cm", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "p"}]}},
            {"name": "s", "secret": {"secretName": "sec"}},
            {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
        ]
    )
    pod["spec"]["containers"][0]["env"] = [  # type: ignore[index]
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "x"}}}
    ]
    assert refusal(pod, SETTINGS, "vk") is None
