"""``translate_pod`` as a dry run: would ECI refuse this pod? (The burst controller asks before it moves a
pod to the virtual node, through ``Backend.validate``.)

The pod's ConfigMaps, Secrets and tokens are not fetched for this: every reference is taken as present
with every key, so only what translation refuses for the pod itself (a hostPath or PVC volume, host
namespaces, a DaemonSet owner, too many containers, a size over ECI's limits ...) is reported. A missing
reference is not a refusal: the pod controller retries it after the binding, as a kubelet would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from vk_provider.eci.translate import translate_pod
from vk_provider.errors import InvalidInput, NotSupported, TransientError
from vk_provider.provider import Pod, PodResources
from vk_provider.settings import ECISettings


class _EveryKey(Mapping[str, Any]):
    """A ConfigMap or Secret that has every key (value empty) but lists none."""

    def __init__(self, empty: str | bytes) -> None:
        self._empty = empty

    def __getitem__(self, key: str) -> Any:
        return self._empty

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _Present(dict[str, Any]):
    """Every name resolves (to ``_EveryKey``); a plain dict otherwise, as PodResources expects."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self._value = value

    def get(self, key: str, default: Any = None) -> Any:
        return self._value


def refusal(pod: Pod, settings: ECISettings, node_name: str) -> str | None:
    """Why ECI translation would refuse the pod, or None when it would be created."""
    resources = PodResources(config_maps=_Present(_EveryKey("")), secrets=_Present(_EveryKey(b"")), tokens=_Present(""))
    if not (pod.get("metadata") or {}).get("uid"):
        pod = {**pod, "metadata": {**(pod.get("metadata") or {}), "uid": "dry-run"}}
    try:
        translate_pod(pod, resources, settings, node_name)
    except (InvalidInput, NotSupported) as exc:
        return str(exc)
    except TransientError:
        return None
    return None
