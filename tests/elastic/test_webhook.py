"""The webhook's review: the patch applies to the pod and does what the mode says; nothing is ever refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch

from vk_provider.elastic.profiles import Profile
from vk_provider.elastic.target import VirtualNode, toleration_for
from vk_provider.elastic.webhook import review_pod
from vk_provider.settings import ElasticSettings

NODE = VirtualNode("vk", dict, toleration_for("virtual-kubelet.io/provider=alibabacloud:NoSchedule"))
PROFILE = Profile(tuple(ElasticSettings().rules))
NS = {"srv": {"vk-eci.io/mode": "serverless"}, "bur": {"vk-eci.io/mode": "burst"}}


def _review(pod: dict[str, Any], ns: str, operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": operation,
            "namespace": ns,
            "object": pod,
        },
    }


def _mutated(pod: dict[str, Any], ns: str) -> tuple[dict[str, Any], str]:
    answer, action = review_pod(_review(pod, ns), PROFILE.decide, lambda n: NS.get(n, {}), NODE)
    resp = answer["response"]
    assert resp["uid"] == "u" and resp["allowed"] is True
    if "patch" not in resp:
        return pod, action
    patch = json.loads(base64.b64decode(resp["patch"]))
    return jsonpatch.apply_patch(pod, patch), action


def test_serverless_adds_the_node_selector_and_toleration_keeping_the_users() -> None:
    pod = {
        "metadata": {"name": "p", "annotations": {"a": "b"}},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "x", "operator": "Exists"}],
            "containers": [],
        },
    }
    out, action = _mutated(pod, "srv")
    assert action == "serverless"
    assert out["spec"]["nodeSelector"] == {"disk": "ssd", "kubernetes.io/hostname": "vk"}
    assert out["spec"]["tolerations"][1]["key"] == "virtual-kubelet.io/provider"
    assert out["metadata"]["annotations"] == {"a": "b", "vk-eci.io/elastic-rule": "serverless-namespaces"}
    bare, _ = _mutated({"metadata": {"name": "p"}, "spec": {"containers": []}}, "srv")
    assert bare["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "vk"} and len(bare["spec"]["tolerations"]) == 1


def test_burst_only_marks_the_pod_and_others_are_untouched() -> None:
    out, action = _mutated({"metadata": {"name": "p"}, "spec": {"containers": []}}, "bur")
    assert action == "burst" and out["metadata"]["annotations"] == {"vk-eci.io/elastic-rule": "burst-namespaces"}
    assert "nodeSelector" not in out["spec"]
    plain = {"metadata": {"name": "p"}, "spec": {"containers": []}}
    assert _mutated(plain, "other") == (plain, "none")
    bound = {"metadata": {"name": "p"}, "spec": {"nodeName": "w1", "containers": []}}
    assert _mutated(bound, "srv") == (bound, "none")


def test_anything_but_a_pod_create_is_allowed_unchanged() -> None:
    answer, action = review_pod(
        _review({"metadata": {}}, "srv", operation="UPDATE"), PROFILE.decide, lambda n: NS[n], NODE
    )
    assert action == "none" and answer["response"] == {"uid": "u", "allowed": True}
