"""The TTL controller: every node carries ``node.alpha.kubernetes.io/ttl``, the seconds a kubelet may cache the
objects its pods use, chosen by the cluster's size as the real controller's table (0 up to 100 nodes, 15 up to 500,
30, 60, 300, then 600), with its overlap so a cluster near a bound does not flap: the step goes up when the node
count passes the step's upper bound and down when it falls below its lower one.
"""

from __future__ import annotations

from ..errors import ApiError
from ._common import JSON, Context, guarded, log, meta, watch_forever

ANNOTATION = "node.alpha.kubernetes.io/ttl"
# (lowest node count, highest node count, ttl seconds), overlapping as upstream's ttlBoundaries.
STEPS = [(0, 100, 0), (90, 500, 15), (450, 1000, 30), (900, 2000, 60), (1800, 10000, 300), (9000, 2**31, 600)]


def next_step(step: int, nodes: int) -> int:
    """The step for ``nodes`` nodes, moving from ``step`` only when the count leaves its range."""
    while step + 1 < len(STEPS) and nodes > STEPS[step][1]:
        step += 1
    while step > 0 and nodes < STEPS[step][0]:
        step -= 1
    return step


async def ttl_controller(ctx: Context) -> None:
    """Annotate each node as it appears or changes, and every node when the cluster's step changes."""
    names: set[str] = set()
    step = 0

    def annotate(name: str) -> None:
        ttl = str(STEPS[step][2])
        node = ctx.store.get("nodes", None, name)
        if node is None or (meta(node).get("annotations") or {}).get(ANNOTATION) == ttl:
            return

        def set_ttl(n: JSON) -> JSON:
            n["metadata"]["annotations"] = {**(n["metadata"].get("annotations") or {}), ANNOTATION: ttl}
            return n

        try:
            ctx.store.mutate_now("nodes", None, name, set_ttl)
        except ApiError as exc:
            log.debug("node ttl write skipped", node=name, error=exc.message)

    def on_node(etype: str, node: JSON) -> None:
        nonlocal step
        name = str(meta(node).get("name"))
        if etype == "DELETED":
            names.discard(name)
        else:
            names.add(name)
        new_step = next_step(step, len(names))
        if new_step != step:
            step = new_step
            for other in sorted(names):
                guarded("ttl", other, lambda: annotate(other))  # noqa: B023
        elif etype != "DELETED" and (meta(node).get("annotations") or {}).get(ANNOTATION) != str(STEPS[step][2]):
            guarded("ttl", name, lambda: annotate(name))

    await watch_forever(ctx.store, "nodes", on_node)
