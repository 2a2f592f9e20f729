"""Reconcile one pod with its container group: create, update (image change), delete, and fail.

Level-triggered: every reconcile compares the pod as it is now with the group as last seen, so a
missed event or a restart costs one extra comparison, never a duplicate group. Identity is the pod
UID: the backend tags groups with it and derives the ClientToken from it.

Until adoption is done (``PodState.adopted``) a reconcile does status work only: a pod without a
known group may have one on ECI, so creates wait, and so do updates and deletes (see adoption.py).

Delete: a pod with deletionTimestamp gets its group deleted, then the pod object is removed with
grace 0 and a UID precondition once the group is gone or terminal. A pod removed outright (force
delete) has its group deleted from the watch's DELETED event.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from vk_provider.errors import InvalidInput, NotSupported, PermanentError, ProviderError
from vk_provider.kube.client import KubeAPI, KubeError
from vk_provider.kube.events import EventRecorder
from vk_provider.kube.watch import object_key
from vk_provider.pods.disruption import Disruptions
from vk_provider.pods.resources import (
    EXTENDED_TOKEN_SECONDS,
    ExpiringToken,
    Missing,
    MissingReferences,
    ResourceResolver,
)
from vk_provider.pods.state import Held, Known, PodState, hold, images, meta, phase, uid
from vk_provider.pods.status import (
    TERMINAL_GROUP_STATES,
    TERMINAL_PHASES,
    failed_status,
    pending_status,
)
from vk_provider.pods.sync import StatusSync
from vk_provider.pods.writeback import write_back
from vk_provider.provider import Pod, PodLifecycle

log = structlog.get_logger("vk_provider.pods")

VANISHED_REASON = "ContainerGroupVanished"
BID_FAILED_REASON = "BidFailed"
VANISHED_EXIT_CODE = 137
TOKEN_NOT_ROTATED_REASON = "TokenNotRotated"


class Requeue(Exception):
    """Reconcile could not finish now; try the key again after backoff (counted as a failure)."""


def _is_daemonset_pod(pod: Pod) -> bool:
    return any(ref.get("kind") == "DaemonSet" for ref in meta(pod).get("ownerReferences") or [])


class Reconciler:
    """``reconcile(key)``: what a worker does with one key of the queue."""

    def __init__(
        self,
        state: PodState,
        sync: StatusSync,
        api: KubeAPI,
        provider: PodLifecycle,
        recorder: EventRecorder,
        resolver: ResourceResolver,
        disruptions: Disruptions,
        *,
        delete_poll_max_seconds: float,
    ) -> None:
        self.state = state
        self.sync = sync
        self.api = api
        self.provider = provider
        self.recorder = recorder
        self.resolver = resolver
        self.disruptions = disruptions
        self.delete_poll_max_seconds = delete_poll_max_seconds
        self._delete_polls: dict[str, int] = {}  # uid -> polls since delete_pod
        self._failed: set[str] = set()  # uids failed for good by us (no recreate)

    async def reconcile(self, key: str) -> None:
        state = self.state
        if not state.adopted.is_set():
            await self._reconcile_before_adoption(key)
            return
        pod = state.informer.cache.get(key)
        seen = state.seen.pop(key, None)
        gone = state.deleted.pop(key, None)
        if gone is not None and (pod is None or uid(pod) != uid(gone)):
            await self._reconcile_removed(gone)
        if pod is None:
            state.queue.discard(key)
            return
        pod_uid = uid(pod)
        if meta(pod).get("deletionTimestamp"):
            await self._reconcile_delete(key, pod)
            return
        if phase(pod) in TERMINAL_PHASES:
            await self.sync.mirror_events(pod)
            return
        if pod_uid in state.vanished:
            await self._fail_vanished(pod, state.vanished[pod_uid])
            return
        if _is_daemonset_pod(pod):
            await self._refuse_daemonset(pod)
            return
        known = state.groups.get(pod_uid)
        if known is None:
            if pod_uid not in self._failed:
                await self._create(pod, seen)
            return
        group = known.group
        if group.interruption is not None:
            self.disruptions.notice(pod, group.group_id, group.interruption)
        await self._maybe_update(key, pod, group)
        # The status first: it is what users and controllers wait for; the group's events (up to four
        # Event writes for a new pod) follow in the same pass.
        # The write-backs go with the status write when there is one; otherwise on their own.
        if not await self.sync.sync_status(pod, group):
            await write_back(self.api, self.state, pod, group)
        await self.sync.mirror_events(pod)

    async def _reconcile_before_adoption(self, key: str) -> None:
        """Existing groups are not known yet: status work only. A pod without a known group may have
        one on ECI, so creates wait, and so do updates and deletes (a removed pod stays in
        ``PodState.deleted``); adoption requeues every key when it is done."""
        pod = self.state.informer.cache.get(key)
        if pod is None or meta(pod).get("deletionTimestamp"):
            return
        if phase(pod) in TERMINAL_PHASES:
            await self.sync.mirror_events(pod)
            return
        if _is_daemonset_pod(pod):
            await self._refuse_daemonset(pod)
            return
        known = self.state.groups.get(uid(pod))
        if known is not None:  # reported by the status stream meanwhile
            await self.sync.sync_status(pod, known.group)
            await self.sync.mirror_events(pod)

    # ---- create / update -------------------------------------------------------------------------
    async def _missing_events(self, pod: Pod, missing: list[Missing]) -> None:
        for m in missing:
            kind = "ConfigMap" if m.kind == "ConfigMap" else "Secret"
            reason = ("Optional" if m.optional else "Mandatory") + kind + "NotFound"
            what = f"{kind.lower()} {m.name!r}" + (f" (key {m.key!r})" if m.key else "")
            msg = f"{'optional' if m.optional else 'required'} {what} not found"
            if m.optional:
                await self.sync.announce(pod, f"missing:{reason}:{m.name}:{m.key}", "Warning", reason, msg)
            else:
                await self.recorder.record(pod, "Warning", reason, msg + "; the pod will start once it exists")

    async def _create(self, pod: Pod, seen: float | None) -> None:
        """``seen``: when the watch brought the pod, on its first reconcile (reads sent since may serve it)."""
        pod_uid = uid(pod)
        try:
            resolution = await self.resolver.resolve(pod, not_before=seen)
        except MissingReferences as exc:
            await self._missing_events(pod, exc.missing)
            raise Requeue(str(exc)) from None
        await self._missing_events(pod, resolution.missing)
        try:
            await self.provider.create_pod(pod, resolution.resources)
        except (PermanentError, InvalidInput, NotSupported) as exc:
            reason, message = exc.reason, exc.message
            await self.recorder.record(pod, "Warning", "ProviderCreateFailed", f"{reason}: {message}")
            self._failed.add(pod_uid)
            await self.sync.write_status(pod, lambda p: failed_status(p, reason, message))
            return
        except ProviderError as exc:
            await self.recorder.record(
                pod, "Warning", "ProviderCreateFailed", f"{exc.reason}: {exc.message} (retrying)"
            )
            raise
        m = meta(pod)
        placeholder = Held(
            namespace=str(m.get("namespace")), name=str(m.get("name")), uid=pod_uid, group_id="", group_status="Pending"
        )
        self.state.groups.setdefault(pod_uid, Known(placeholder))
        self.state.spec_images[pod_uid] = images(pod)
        await self.recorder.record(pod, "Normal", "ProviderCreateSuccess", "container group created")
        if resolution.expiring_tokens:
            msg = _tokens_not_rotated(resolution.expiring_tokens)
            await self.sync.announce(pod, "token-not-rotated", "Warning", TOKEN_NOT_ROTATED_REASON, msg)

    async def _maybe_update(self, key: str, pod: Pod, group: Held) -> None:
        """An image change on a running pod is the one spec change sent to the backend.

        Projected service-account tokens are not rotated: on ECI replacing a mounted file means
        UpdateContainerGroup, which restarts the group's containers (see ``_tokens_not_rotated``).
        """
        pod_uid = uid(pod)
        spec_images = self.state.spec_images
        new_images = images(pod)
        image_changed = pod_uid in spec_images and spec_images[pod_uid] != new_images
        if not image_changed or group.group_status in TERMINAL_GROUP_STATES:
            return
        if group.group_status not in ("Running", "Pending", "Restarting"):
            # Scheduling/Updating/Terminating: try again shortly.
            self.state.queue.add_after(key, 2.0)
            return
        try:
            resolution = await self.resolver.resolve(pod)
        except MissingReferences as exc:
            await self._missing_events(pod, exc.missing)
            raise Requeue(str(exc)) from None
        try:
            await self.provider.update_pod(pod, resolution.resources)
        except (PermanentError, InvalidInput, NotSupported) as exc:
            await self.recorder.record(pod, "Warning", "ProviderUpdateFailed", f"{exc.reason}: {exc.message}")
            spec_images[pod_uid] = new_images  # do not retry a rejected update forever
            return
        spec_images[pod_uid] = new_images
        await self.recorder.record(pod, "Normal", "ProviderUpdateSuccess", "container group updated: image changed")

    # ---- refusals and failures -------------------------------------------------------------------
    async def _refuse_daemonset(self, pod: Pod) -> None:
        msg = "DaemonSet pods are not run on the virtual node (a container group per node has no meaning on ECI)"
        await self.sync.announce(pod, "daemonset", "Warning", "DaemonSetPodNotSupported", msg)
        await self.sync.write_status(pod, lambda p: pending_status(p, "DaemonSetPodNotSupported", msg))

    async def _fail_vanished(self, pod: Pod, group_id: str) -> None:
        """GC found the group gone without our delete (``PodState.vanished``): fail the pod, no recreate.
        A group that went after a release notice was reclaimed: the pod fails with BidFailed instead."""
        notice = self.disruptions.notice_for(uid(pod))
        if notice is not None and notice.group_id == group_id:
            self._failed.add(uid(pod))
            released = notice.interruption.released_message(group_id)
            await self.sync.write_status(pod, lambda p: failed_status(p, BID_FAILED_REASON, released, exit_code=137))
            return
        msg = (
            f"the container group {group_id or '(unknown id)'} disappeared from ECI without a delete from vk-eci "
            "(deleted in the console or by another tool, or expired); the pod is not recreated"
        )
        await self.sync.announce(pod, "vanished", "Warning", VANISHED_REASON, msg)
        self._failed.add(uid(pod))
        await self.sync.write_status(
            pod, lambda p: failed_status(p, VANISHED_REASON, msg, exit_code=VANISHED_EXIT_CODE)
        )

    # ---- delete ----------------------------------------------------------------------------------
    async def _reconcile_removed(self, gone: Pod) -> None:
        """The pod object is gone (force delete, or our own final delete): its group must go too."""
        pod_uid = uid(gone)
        known = self.state.groups.pop(pod_uid, None)
        self._forget(pod_uid)
        if known is not None and pod_uid not in self.state.delete_requested:
            await self.provider.delete_pod(gone)
            log.info("deleted the group of a removed pod", pod=object_key(gone), uid=pod_uid)
        self.state.delete_requested.discard(pod_uid)

    def _forget(self, pod_uid: str) -> None:
        self.state.spec_images.pop(pod_uid, None)
        self.state.vanished.pop(pod_uid, None)
        self._failed.discard(pod_uid)
        self._delete_polls.pop(pod_uid, None)
        self.sync.forget(pod_uid)
        self.disruptions.forget(pod_uid)

    async def _reconcile_delete(self, key: str, pod: Pod) -> None:
        pod_uid = uid(pod)
        known = self.state.groups.get(pod_uid)
        if known is None:
            await self._delete_pod_object(pod)  # never got a group: nothing to wait for
            return
        if pod_uid not in self.state.delete_requested:
            await self.provider.delete_pod(pod)
            self.state.delete_requested.add(pod_uid)
            await self.recorder.record(pod, "Normal", "ProviderDeleteSuccess", "container group deletion requested")
        if known.group.group_status not in TERMINAL_GROUP_STATES:
            fresh = await self.provider.backend_pod(pod)
            if fresh is not None and fresh.group_status not in TERMINAL_GROUP_STATES:
                known.group = hold(fresh)
                polls = self._delete_polls.get(pod_uid, 0)
                self._delete_polls[pod_uid] = polls + 1
                self.state.queue.add_after(key, min(self.delete_poll_max_seconds, 0.25 * (2**polls)))
                return
        await self._delete_pod_object(pod)

    async def _delete_pod_object(self, pod: Pod) -> None:
        m = meta(pod)
        path = f"/api/v1/namespaces/{m.get('namespace')}/pods/{m.get('name')}"
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid(pod)},
        }
        try:
            await self.api.request("DELETE", path, query={"gracePeriodSeconds": 0}, body=body)
        except KubeError as exc:
            if not (exc.not_found or exc.conflict):
                raise


def _tokens_not_rotated(tokens: list[ExpiringToken]) -> str:
    """The TokenNotRotated message: which token files stop working when, why, and what to do."""
    parts = [
        f"{t.volume}/{t.path} (expirationSeconds {t.seconds}) expires at "
        f"{datetime.fromtimestamp(t.expires_at, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        for t in tokens
    ]
    return (
        f"service account token not renewed: {'; '.join(parts)}. ECI cannot replace a mounted file without "
        f"restarting the container group; use the default lifetime (expirationSeconds {EXTENDED_TOKEN_SECONDS}, "
        "no audience), which the API server extends, or restart the pod before then"
    )
