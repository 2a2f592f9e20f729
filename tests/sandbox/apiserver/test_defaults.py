"""Defaults, shape checks and validation: any JSON body gives a stored object or an ApiError, never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.patch import strategic_merge
from vk_sandbox.apiserver.resources import RESOURCES
from vk_sandbox.apiserver.store import Store

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "x", "Bad_Name", "c"]))
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "image",
                    "containers",
                    "spec",
                    "labels",
                    "template",
                    "selector",
                    "resources",
                    "limits",
                    "ports",
                    "env",
                    "rules",
                    "subjects",
                    "data",
                    "status",
                    "conditions",
                    "finalizers",
                    "metadata",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
_FIELDS = ["spec", "status", "data", "rules", "subjects", "roleRef", "involvedObject", "type", "secrets"]


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    key = draw(st.sampled_from(sorted(k for k, r in RESOURCES.items() if "create" in r.verbs and "update" in r.verbs)))
    body: dict[str, Any] = {
        "metadata": {"name": draw(st.sampled_from(["ok", "a.b", "Bad_Name"])), "namespace": "default"}
    }
    for field in draw(st.lists(st.sampled_from(_FIELDS), max_size=3)):
        body[field] = draw(_JSON)
    if draw(st.booleans()):
        body["metadata"][draw(st.sampled_from(["labels", "annotations", "finalizers", "ownerReferences"]))] = draw(
            _JSON
        )
    return key, body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies(), _JSON)
@example(("certificatesigningrequests.certificates.k8s.io", {"metadata": {"name": "ok"}}), {"status": True})
def test_random_bodies_never_crash_the_store(case: tuple[str, dict[str, Any]], patch_body: Any) -> None:
    """Create, then strategic-merge-patch, with arbitrary JSON: each step either works or raises ApiError."""
    key, body = case
    store = Store()
    store.create_now("namespaces", {"metadata": {"name": "default"}})
    try:
        created = store.create_now(key, body)
    except ApiError as err:
        assert 400 <= err.code < 500
        return
    name = created["metadata"]["name"]
    ns = created["metadata"].get("namespace")
    try:
        store.mutate_now(key, ns, name, lambda cur: strategic_merge(cur, patch_body))
        store.mutate_now(key, ns, name, lambda cur: strategic_merge(cur, patch_body), subresource="status")
        store.delete_now(key, ns, name)
    except ApiError as err:
        assert 400 <= err.code < 500


def _job(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"template": template, **spec},
    }


def test_job_defaults_and_labels_as_v1_36() -> None:
    """As kube-apiserver v1.36.3: manualSelector, suspend, podReplacementPolicy and completionMode are stored; a Job
    without labels carries its template's (the generated selector labels included), one with labels keeps its own."""
    store = Store()
    store.namespace_guard = False
    bare = store.create_now("jobs.batch", _job("bare"))
    uid = bare["metadata"]["uid"]
    generated = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "bare",
        "controller-uid": uid,
        "job-name": "bare",
    }
    spec = bare["spec"]
    assert {k: v for k, v in spec.items() if k != "template"} == {
        "backoffLimit": 6,
        "completionMode": "NonIndexed",
        "completions": 1,
        "manualSelector": False,
        "parallelism": 1,
        "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
        "suspend": False,
    }
    assert spec["template"]["metadata"]["labels"] == generated
    assert bare["metadata"]["labels"] == generated
    own = store.create_now("jobs.batch", _job("own", {"mine": "x"}))
    assert own["metadata"]["labels"] == {"mine": "x"}
    manual = _job("manual", manualSelector=True, selector={"matchLabels": {"q": "r"}})
    manual["spec"]["template"]["metadata"] = {"labels": {"q": "r"}}
    stored = store.create_now("jobs.batch", manual)
    assert stored["metadata"]["labels"] == {"q": "r"} and stored["spec"]["manualSelector"] is True
    with_policy = store.create_now("jobs.batch", _job("policy", podFailurePolicy={"rules": []}))
    assert with_policy["spec"]["podReplacementPolicy"] == "Failed"


def test_pod_ips_follow_pod_ip() -> None:
    """A status write with podIP only gets podIPs (and the reverse); podIP wins when they differ, as the real
    server's conversion; hostIP alone is left alone."""
    store = Store()
    store.namespace_guard = False
    store.create_now("pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})

    def write(status: dict[str, Any]) -> dict[str, Any]:
        pod = store.get("pods", "default", "p")
        assert pod is not None
        pod["status"] = {**pod["status"], **status}
        return store.update_now("pods", pod, subresource="status")["status"]  # type: ignore[no-any-return]

    assert write({"podIP": "10.1.2.3", "hostIP": "10.0.0.1"})["podIPs"] == [{"ip": "10.1.2.3"}]
    assert "hostIPs" not in write({})
    assert write({"podIP": "10.1.2.4"})["podIPs"] == [{"ip": "10.1.2.4"}]
    assert write({"podIP": None, "podIPs": [{"ip": "10.1.2.9"}]})["podIP"] == "10.1.2.9"
