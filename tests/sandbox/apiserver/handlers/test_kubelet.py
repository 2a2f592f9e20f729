"""Mapping pods/log|exec|attach to the kubelet: the container a request without ?container= reaches."""

from __future__ import annotations

from vk_sandbox.apiserver.handlers.kubelet import default_container


def test_default_container() -> None:
    """The default container is the annotation's, else the first."""
    pod = {"metadata": {}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    assert default_container(pod) == "a"
    pod["metadata"] = {"annotations": {"kubectl.kubernetes.io/default-container": "b"}}
    assert default_container(pod) == "b"
    assert default_container({"spec": {}}) == ""
