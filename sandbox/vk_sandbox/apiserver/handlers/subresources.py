"""Subresources that are requests of their own: pods/binding (and the bindings resource), pods/eviction,
serviceaccounts/token and the scale of Deployments and ReplicaSets."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vk_sandbox.apiserver import patch
from vk_sandbox.apiserver.budgets import check_eviction
from vk_sandbox.apiserver.context import SubresourceContext
from vk_sandbox.apiserver.errors import bad_request, conflict, field_invalid, method_not_allowed, not_found
from vk_sandbox.apiserver.handlers.deletes import delete_object
from vk_sandbox.apiserver.handlers.request import Target, dry_run, read_body
from vk_sandbox.apiserver.handlers.response import json_response, success
from vk_sandbox.apiserver.store import now_rfc3339


class Subresources:
    def __init__(self, ctx: SubresourceContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    async def _pod_request(self, request: web.Request, t: Target) -> tuple[dict[str, Any], dict[str, Any], str]:
        """The body of a Binding or Eviction, its metadata and the pod's name (from the URL, else the body)."""
        body, _ = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        raw_meta = body.get("metadata")
        body_meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        name = t.name or str(body_meta.get("name") or "")
        if not name:
            raise bad_request("metadata.name is required in a Binding")
        return body, body_meta, name

    async def eviction(self, request: web.Request, t: Target) -> web.Response:
        """Delete the pod with the Eviction's DeleteOptions if its PodDisruptionBudget allows (else 429)."""
        body, _, name = await self._pod_request(request, t)
        opts = body.get("deleteOptions") or {}
        if not isinstance(opts, dict):
            raise bad_request("deleteOptions must be an object")
        pod = self.store.get("pods", t.namespace, name)
        if pod is None:
            raise not_found("pods", "", name)
        dry = dry_run(request) or bool(opts.get("dryRun"))
        check_eviction(self.store, pod, dry_run=dry)
        delete_object(self.store, t.rt, t.namespace, name, opts, dry=dry)
        return success()

    async def binding(self, request: web.Request, t: Target) -> web.Response:
        """Assign the pod to the Binding's target node (POST pods/NAME/binding or the bindings collection), with the
        Binding's annotations merged into the pod's."""
        body, body_meta, name = await self._pod_request(request, t)
        target = body.get("target")
        if not isinstance(target, dict) or not target.get("name"):
            raise field_invalid("Binding", name, "target.name", "Required value", reason="FieldValueRequired")
        node = str(target["name"])
        # As the real registry's setPodHostAndAnnotations: the Binding's annotations are merged into the pod's.
        notes = body_meta.get("annotations") or {}
        if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
            raise bad_request("metadata.annotations must map strings to strings")

        def bind(pod: dict[str, Any]) -> dict[str, Any]:
            if pod["metadata"].get("deletionTimestamp"):
                raise conflict("pods", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                raise conflict("pods", "", name, f'pod {name} is already assigned to node "{current}"')
            want_uid = body_meta.get("uid")
            if want_uid and want_uid != pod["metadata"]["uid"]:
                raise conflict("pods", "", name, "Precondition failed: UID in precondition does not match")
            pod.setdefault("spec", {})["nodeName"] = node
            if notes:
                pod["metadata"]["annotations"] = {**(pod["metadata"].get("annotations") or {}), **notes}
            status = pod.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
            )
            status["conditions"] = conds
            return pod

        await self.store.mutate("pods", t.namespace, name, bind, subresource="binding")
        return success()

    async def token_request(self, request: web.Request, t: Target) -> web.Response:
        """A TokenRequest: a JWT for the ServiceAccount, bound to a pod when ``boundObjectRef`` names one."""
        assert t.name is not None and t.namespace is not None
        body, _ = await read_body(request)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        sa = self.store.get("serviceaccounts", t.namespace, t.name)
        if sa is None:
            raise not_found("serviceaccounts", "", t.name)
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise bad_request("spec must be an object")
        exp = spec.get("expirationSeconds") or 3600
        if not isinstance(exp, int) or exp < 600:
            why = "may not specify a duration less than 10 minutes"
            raise field_invalid("TokenRequest", t.name, "spec.expirationSeconds", why, summary=f"Invalid value: {why}")
        audiences = spec.get("audiences") or None
        pod = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref.get("kind") == "Pod":
            p = self.store.get("pods", t.namespace, str(ref.get("name", "")))
            if p is None:
                raise not_found("pods", "", str(ref.get("name", "")))
            pod = {"name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}
        token = self.ctx.signer.mint(
            t.namespace, t.name, sa_uid=sa["metadata"]["uid"], audiences=audiences, expiration_seconds=exp, pod=pod
        )
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": None},
            "spec": {
                "audiences": audiences or ["https://kubernetes.default.svc.cluster.local"],
                "expirationSeconds": exp,
                "boundObjectRef": ref if isinstance(ref, dict) else None,
            },
            "status": {"token": token, "expirationTimestamp": now_rfc3339(exp)},
        }
        return json_response(out, status=201)

    async def scale(self, request: web.Request, t: Target) -> web.Response:
        """GET, PUT or PATCH the autoscaling/v1 Scale of a Deployment or ReplicaSet."""
        assert t.name is not None
        obj = self.store.get(t.rt.key, t.namespace, t.name)
        if obj is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        if request.method == "GET":
            return json_response(_to_scale(obj))
        if request.method == "PUT":
            body, _ = await read_body(request)
        elif request.method == "PATCH":
            raw, ctype = await read_body(request, allow_patch=True)
            current = _to_scale(obj)
            if ctype == patch.JSON_PATCH:
                body = patch.apply_json_patch(current, raw)
            elif ctype == patch.MERGE_PATCH:
                body = patch.json_merge_patch(current, raw)
            else:
                body = patch.strategic_merge(current, raw)
        else:
            raise method_not_allowed()
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise bad_request("a Scale object with spec is required")
        replicas = body["spec"].get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise field_invalid("Scale", t.name, "spec.replicas", "must be greater than or equal to 0")
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if request.method == "PUT" and want_rv and want_rv != obj["metadata"]["resourceVersion"]:
            raise conflict(
                t.rt.plural,
                t.rt.group,
                t.name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )

        def set_replicas(o: dict[str, Any]) -> dict[str, Any]:
            o.setdefault("spec", {})["replicas"] = replicas
            return o

        updated = await self.store.mutate(t.rt.key, t.namespace, t.name, set_replicas)
        return json_response(_to_scale(updated))


def _to_scale(o: dict[str, Any]) -> dict[str, Any]:
    sel = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    m = o["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m},
        "spec": {"replicas": (o.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (o.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sel.items()),
        },
    }
