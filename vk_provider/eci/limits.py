"""ECI's documented limits on a group's configuration, checked before any call.

A pod over a limit fails at once with a reason and a message that names the volume (and its source),
the file and the numbers, instead of an answer from the service that may quote the request (and so
Secret values). The limits and their sources are listed in docs/limitations.md:

- a ConfigFile volume's file holds at most 32 KiB, and all its files together at most 60 KiB
  ("Mount a ConfigFile volume", ECI user guide);
- a group has at most 20 volumes ("Limits", ECI product overview).

ECI documents no limit on environment variables, command and arguments, or the request as a whole;
nothing is checked for them here (the client sends every parameter in a POST body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vk_provider.errors import InvalidInput

if TYPE_CHECKING:
    from vk_provider.eci.request import CreateRequest, VolumeSpec

KIB = 1024
MAX_CONFIG_FILE_BYTES = 32 * KIB
MAX_CONFIG_VOLUME_BYTES = 60 * KIB
MAX_VOLUMES = 20

_SOURCES = (
    ("configMap", "ConfigMap"),
    ("secret", "Secret"),
    ("projected", "projected"),
    ("downwardAPI", "downwardAPI"),
)


def decoded_size(b64: str) -> int:
    """The byte length of base64 text without decoding it."""
    padding = len(b64) - len(b64.rstrip("="))
    return len(b64) * 3 // 4 - padding


def _kib(n: int) -> str:
    return f"{n / KIB:.1f} KiB"


def _source(pod_volumes: Mapping[str, Mapping[str, Any]], name: str) -> str:
    vol = pod_volumes.get(name) or {}
    for key, label in _SOURCES:
        src = vol.get(key)
        if isinstance(src, Mapping):
            ref = src.get("name") or src.get("secretName")
            return f"{label} {ref}" if ref else label
    return "volume"


def _check_config_volume(vol: VolumeSpec, source: str) -> None:
    where = f'volume "{vol.name}" ({source})'
    total = 0
    for f in vol.files:
        size = decoded_size(f.content)
        total += size
        if size > MAX_CONFIG_FILE_BYTES:
            raise InvalidInput(
                f"{where}: file {f.path} is {_kib(size)}; ECI mounts at most {_kib(MAX_CONFIG_FILE_BYTES)} per file "
                f"and {_kib(MAX_CONFIG_VOLUME_BYTES)} per volume. Split it, or put it in an image or on NAS",
                reason="ConfigTooLarge",
            )
    if total > MAX_CONFIG_VOLUME_BYTES:
        raise InvalidInput(
            f"{where}: its {len(vol.files)} files are {_kib(total)} together; ECI mounts at most "
            f"{_kib(MAX_CONFIG_VOLUME_BYTES)} per volume. Split the keys over several volumes (items), or put the "
            "files in an image or on NAS",
            reason="ConfigTooLarge",
        )


def check_request(req: CreateRequest, pod_spec: Mapping[str, Any]) -> None:
    """Raise InvalidInput (reason ConfigTooLarge or TooManyVolumes) when ``req`` is over a documented limit."""
    if len(req.volumes) > MAX_VOLUMES:
        raise InvalidInput(
            f"the pod has {len(req.volumes)} volumes; ECI allows at most {MAX_VOLUMES} per group",
            reason="TooManyVolumes",
        )
    pod_volumes = {str(v.get("name")): v for v in pod_spec.get("volumes") or [] if isinstance(v, Mapping)}
    for vol in req.volumes:
        if vol.type == "ConfigFileVolume":
            _check_config_volume(vol, _source(pod_volumes, vol.name))
