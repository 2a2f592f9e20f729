"""A pod's volumes on ECI: configMap, secret, downwardAPI and projected volumes become ConfigFileVolumes
(each file's content carried in the request), emptyDir and nfs map to their ECI types; anything else is
refused with ``VolumeNotSupported``. An optional source that is missing or empty mounts an empty
directory, as on a kubelet."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from vk_provider.eci.references import TranslateContext, config_map, field_value, resource_value, secret
from vk_provider.eci.request import ConfigFile, VolumeSpec
from vk_provider.eci.specs import parse_quantity
from vk_provider.errors import InvalidInput, NotSupported, TransientError


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _mode(value: Any) -> int | None:
    return None if value is None else int(value)


def _keyed_files(
    data: Mapping[str, str | bytes] | None,
    items: list[Mapping[str, Any]] | None,
    default_mode: int | None,
    optional: bool,
    what: str,
    reason: str,
) -> list[ConfigFile]:
    if data is None:
        return []
    files = []
    if items:
        for it in items:
            key = str(it.get("key"))
            if key not in data:
                if optional:
                    continue
                raise TransientError(f"{what}: key {key!r} not found", reason=reason)
            files.append(
                ConfigFile(path=str(it.get("path")), content=_b64(data[key]), mode=_mode(it.get("mode", default_mode)))
            )
    else:
        for key, value in sorted(data.items()):
            files.append(ConfigFile(path=key, content=_b64(value), mode=default_mode))
    return files


def _downward_files(
    ctx: TranslateContext, items: list[Mapping[str, Any]], default_mode: int | None, what: str
) -> list[ConfigFile]:
    files = []
    containers = ctx.spec.get("containers") or []
    for it in items:
        if it.get("fieldRef"):
            path = str(it["fieldRef"].get("fieldPath"))
            value = field_value(ctx, path, f"{what}: {it.get('path')}")
        elif it.get("resourceFieldRef"):
            c = containers[0] if containers else {}
            value = resource_value(ctx, c, it["resourceFieldRef"], f"{what}: {it.get('path')}")
        else:
            raise InvalidInput(f"{what}: item {it.get('path')!r} needs fieldRef or resourceFieldRef")
        files.append(
            ConfigFile(path=str(it.get("path")), content=_b64(value), mode=_mode(it.get("mode", default_mode)))
        )
    return files


def pod_volumes(ctx: TranslateContext) -> list[VolumeSpec]:
    out = []
    for v in ctx.spec.get("volumes") or []:
        name = str(v.get("name"))
        what = f"volume {name}"
        if "configMap" in v:
            src = v["configMap"]
            optional = bool(src.get("optional"))
            mode = _mode(src.get("defaultMode", 0o644))
            data = ctx.resources.config_maps.get(str(src.get("name")))
            if data is None and not optional:
                raise TransientError(f"{what}: configmap {src.get('name')!r} not found", reason="FailedMount")
            files = _keyed_files(data, src.get("items"), mode, optional, what, "FailedMount")
            out.append(_config_volume(name, files, mode))
        elif "secret" in v:
            src = v["secret"]
            optional = bool(src.get("optional"))
            mode = _mode(src.get("defaultMode", 0o644))
            sdata = ctx.resources.secrets.get(str(src.get("secretName")))
            if sdata is None and not optional:
                raise TransientError(f"{what}: secret {src.get('secretName')!r} not found", reason="FailedMount")
            files = _keyed_files(sdata, src.get("items"), mode, optional, what, "FailedMount")
            out.append(_config_volume(name, files, mode))
        elif "downwardAPI" in v:
            src = v["downwardAPI"]
            mode = _mode(src.get("defaultMode", 0o644))
            out.append(_config_volume(name, _downward_files(ctx, src.get("items") or [], mode, what), mode))
        elif "projected" in v:
            out.append(_projected(ctx, name, v["projected"], what))
        elif "emptyDir" in v:
            src = v["emptyDir"] or {}
            medium = src.get("medium") or None
            if medium not in (None, "Memory"):
                raise NotSupported(
                    f'{what}: emptyDir medium {medium!r} is not supported ("" or Memory)', reason="VolumeNotSupported"
                )
            size = src.get("sizeLimit")
            if size is not None:
                try:
                    parse_quantity(size)
                except ValueError:
                    raise InvalidInput(f"{what}: emptyDir sizeLimit {size!r} is not a quantity") from None
            out.append(
                VolumeSpec(
                    name=name, type="EmptyDirVolume", medium=medium, size_limit=None if size is None else str(size)
                )
            )
        elif "nfs" in v:
            src = v["nfs"]
            out.append(
                VolumeSpec(
                    name=name,
                    type="NFSVolume",
                    nfs_server=str(src.get("server")),
                    nfs_path=str(src.get("path")),
                    nfs_read_only=bool(src.get("readOnly", False)),
                )
            )
        else:
            kind = next((k for k in v if k != "name"), "unknown")
            raise NotSupported(
                f"{what}: {kind} volumes are not supported on ECI "
                "(configMap, secret, downwardAPI, projected, emptyDir and nfs are)",
                reason="VolumeNotSupported",
            )
    return out


def _config_volume(name: str, files: list[ConfigFile], mode: int | None) -> VolumeSpec:
    if not files:
        # An optional source that is missing or empty mounts an empty directory, as on a kubelet.
        return VolumeSpec(name=name, type="EmptyDirVolume")
    return VolumeSpec(name=name, type="ConfigFileVolume", files=files, default_mode=mode)


def _projected(ctx: TranslateContext, name: str, src: Mapping[str, Any], what: str) -> VolumeSpec:
    mode = _mode(src.get("defaultMode", 0o644))
    files: list[ConfigFile] = []
    for s in src.get("sources") or []:
        if s.get("configMap"):
            ref = s["configMap"]
            optional = bool(ref.get("optional"))
            data = config_map(ctx, str(ref.get("name")), optional, what)
            files += _keyed_files(data, ref.get("items"), mode, optional, what, "FailedMount")
        elif s.get("secret"):
            ref = s["secret"]
            optional = bool(ref.get("optional"))
            sdata = secret(ctx, str(ref.get("name")), optional, what)
            files += _keyed_files(sdata, ref.get("items"), mode, optional, what, "FailedMount")
        elif s.get("downwardAPI"):
            files += _downward_files(ctx, s["downwardAPI"].get("items") or [], mode, what)
        elif s.get("serviceAccountToken"):
            path = str(s["serviceAccountToken"].get("path"))
            token = ctx.resources.tokens.get(f"{name}/{path}")
            if token is None:
                raise TransientError(
                    f"{what}: service account token for {path!r} is not issued yet", reason="FailedMount"
                )
            files.append(ConfigFile(path=path, content=_b64(token), mode=mode))
        else:
            kind = next(iter(s), "unknown")
            raise NotSupported(f"{what}: projected source {kind} is not supported", reason="VolumeNotSupported")
    return _config_volume(name, files, mode)


__all__ = ["pod_volumes"]
