"""Write-backs: the pod names its container group, the size it is billed as and its zone.

Once the backend has placed the group (a zone, or Running), the pod gets, in one PATCH:
``k8s.aliyun.com/eci-instance-id`` (the group id), ``k8s.aliyun.com/eci-instance-spec`` (``2-4Gi``
or the ECS instance type) and ``k8s.aliyun.com/eci-instance-zone``, so users, tools and ``doctor``
can find a pod's group. Written again only if the group id changes (never in steady state). When the
pod's status changes in the same pass (mostly it does: the group turned Running) they ride on the status
PATCH (``StatusSync.write_status``; kube-apiserver keeps the metadata of a pods/status write), otherwise
``write_back`` sends a metadata PATCH of their own.

The zone is an annotation, not the ``topology.kubernetes.io/zone`` label: that label is a Node's
(schedulers and spread constraints read it there), and a pod label could collide with a selector.
"""

from __future__ import annotations

from vk_provider.kube.client import MERGE_PATCH, KubeAPI, KubeError
from vk_provider.pods.state import Held, PodState, meta, uid
from vk_provider.provider import Pod

INSTANCE_ID = "k8s.aliyun.com/eci-instance-id"
INSTANCE_SPEC = "k8s.aliyun.com/eci-instance-spec"
INSTANCE_ZONE = "k8s.aliyun.com/eci-instance-zone"


def write_backs(pod: Pod, group: Held) -> dict[str, str] | None:
    """The annotations to write, or None when there is nothing (new) to say yet."""
    if not group.group_id or not (group.zone or group.group_status == "Running"):
        return None
    annotations = meta(pod).get("annotations") or {}
    if annotations.get(INSTANCE_ID) == group.group_id:
        return None
    out = {INSTANCE_ID: group.group_id}
    if group.size:
        out[INSTANCE_SPEC] = group.size
    if group.zone:
        out[INSTANCE_ZONE] = group.zone
    return out


async def write_back(api: KubeAPI, state: PodState, pod: Pod, group: Held) -> bool:
    """PATCH the write-backs onto the pod if due; True when written. A pod gone meanwhile is not an error."""
    annotations = write_backs(pod, group)
    if annotations is None:
        return False
    m = meta(pod)
    path = f"/api/v1/namespaces/{m.get('namespace')}/pods/{m.get('name')}"
    body = {"metadata": {"uid": uid(pod), "annotations": annotations}}
    try:
        written = await api.request("PATCH", path, body=body, content_type=MERGE_PATCH)
    except KubeError as exc:
        if exc.not_found or exc.conflict:
            return False
        raise
    state.cache_written(pod, written)
    return True
