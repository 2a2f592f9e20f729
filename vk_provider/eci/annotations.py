"""The ``k8s.aliyun.com/`` pod annotations ACK's virtual node understands, parsed and validated.

Each one applies at creation only. A bad value raises ``InvalidInput`` naming the annotation and
saying why, so the controller can put it in a Warning event and in the pod's status. Annotations
under the prefix that we do not act on are reported back as warnings, never silently dropped.
docs/annotations.md lists them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from vk_provider.eci.specs import GIB, SPEC_TABLE, SizeChoice, ceil_div, parse_quantity
from vk_provider.errors import InvalidInput

PREFIX = "k8s.aliyun.com/"

_VSWITCH = re.compile(r"^vsw-[a-z0-9]{1,64}$")
_SG = re.compile(r"^sg-[a-z0-9]{1,64}$")
_INSTANCE_TYPE = re.compile(r"^ecs\.[a-z0-9]+(?:-[a-z0-9]+)*\.[a-z0-9]+$")
_SPEC = re.compile(r"^([0-9]+(?:\.[0-9]+)?)-([0-9]+(?:\.[0-9]+)?)(?:Gi)?$")
_IMC = re.compile(r"^imc-[a-z0-9]{1,64}$")
_RG = re.compile(r"^rg-[a-z0-9]{1,64}$")
_RAM_ROLE = re.compile(r"^[A-Za-z0-9.\-]{1,64}$")
_PRICE = re.compile(r"^[0-9]+(?:\.[0-9]{1,3})?$")

SUPPORTED = (
    "eci-vswitch",
    "eci-schedule-strategy",
    "eci-security-group",
    "eci-resource-group-id",
    "eci-use-specs",
    "eci-instance-type",
    "eci-spot-strategy",
    "eci-spot-price-limit",
    "eci-spot-duration",
    "eci-spot-fallback",
    "eci-max-pending-minute",
    "eci-image-snapshot-id",
    "eci-auto-imc",
    "eci-image-cache",
    "eci-with-eip",
    "eip-bandwidth",
    "eci-ram-role-name",
    "eci-extra-ephemeral-storage",
)
# Written back on the pod by the daemon (pods/writeback.py), never read at creation: no warning for them.
WRITTEN_BACK = ("eci-instance-id", "eci-instance-spec", "eci-instance-zone")
MAX_PENDING_MINUTES = (10, 1440)  # ECI's documented range for eci-max-pending-minute


@dataclass
class PodAnnotations:
    """What the annotations ask for; None / empty means "use the settings' default"."""

    vswitch_ids: list[str] = field(default_factory=list)
    schedule_strategy: str | None = None
    security_group_ids: list[str] = field(default_factory=list)
    resource_group_id: str | None = None
    sizes: list[SizeChoice] = field(default_factory=list)
    spot_strategy: str | None = None
    spot_price_limit: float | None = None
    spot_duration: int | None = None
    spot_fallback: bool = False
    max_pending_minutes: int | None = None
    image_snapshot_id: str | None = None
    auto_match_image_cache: bool | None = None
    with_eip: bool | None = None
    eip_bandwidth: int | None = None
    ram_role_name: str | None = None
    extra_ephemeral_storage_gib: int | None = None
    warnings: list[str] = field(default_factory=list)


def _bad(name: str, why: str) -> InvalidInput:
    return InvalidInput(f"annotation {PREFIX}{name}: {why}", reason="InvalidAnnotation")


def _list(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise _bad(name, f"{value!r} is not a boolean (use true or false)")


def _spec(name: str, item: str) -> SizeChoice:
    if _INSTANCE_TYPE.match(item):
        return SizeChoice(instance_type=item)
    m = _SPEC.match(item)
    if not m:
        raise _bad(name, f"{item!r} is neither a <vCPU>-<memory>Gi spec (e.g. 2-4Gi) nor an ECS instance type")
    cpu, mem = float(m.group(1)), float(m.group(2))
    if cpu not in SPEC_TABLE or mem not in SPEC_TABLE[cpu]:
        raise _bad(
            name,
            f"{item!r} is not an ECI spec; with {cpu:g} vCPU the memory choices are "
            f"{', '.join(f'{x:g}Gi' for x in SPEC_TABLE.get(cpu, ())) or 'none'}",
        )
    return SizeChoice(cpu=cpu, memory=mem)


def parse_annotations(annotations: Mapping[str, str] | None) -> PodAnnotations:
    """Validate every supported annotation; raise InvalidInput on the first bad one."""
    out = PodAnnotations()
    ann = {k[len(PREFIX) :]: str(v) for k, v in (annotations or {}).items() if k.startswith(PREFIX)}

    if "eci-vswitch" in ann:
        ids = _list(ann["eci-vswitch"])
        if not ids or len(ids) > 10:
            raise _bad("eci-vswitch", "give 1 to 10 comma-separated vSwitch ids")
        for i in ids:
            if not _VSWITCH.match(i):
                raise _bad("eci-vswitch", f"{i!r} is not a vSwitch id (vsw-...)")
        out.vswitch_ids = ids
    if "eci-schedule-strategy" in ann:
        v = ann["eci-schedule-strategy"].strip()
        if v not in ("VSwitchOrdered", "VSwitchRandom"):
            raise _bad("eci-schedule-strategy", f"{v!r} must be VSwitchOrdered or VSwitchRandom")
        out.schedule_strategy = v
    if "eci-security-group" in ann:
        ids = _list(ann["eci-security-group"])
        if not ids or len(ids) > 5:
            raise _bad("eci-security-group", "give 1 to 5 comma-separated security group ids")
        for i in ids:
            if not _SG.match(i):
                raise _bad("eci-security-group", f"{i!r} is not a security group id (sg-...)")
        out.security_group_ids = ids
    if "eci-resource-group-id" in ann:
        v = ann["eci-resource-group-id"].strip()
        if not _RG.match(v):
            raise _bad("eci-resource-group-id", f"{v!r} is not a resource group id (rg-...)")
        out.resource_group_id = v
    if "eci-use-specs" in ann:
        items = _list(ann["eci-use-specs"])
        if not items or len(items) > 5:
            raise _bad("eci-use-specs", "give 1 to 5 comma-separated specs (2-4Gi) or ECS instance types")
        out.sizes = [_spec("eci-use-specs", i) for i in items]
    if "eci-instance-type" in ann:
        items = _list(ann["eci-instance-type"])
        if not items or len(items) > 5:
            raise _bad("eci-instance-type", "give 1 to 5 comma-separated ECS instance types")
        for i in items:
            if not _INSTANCE_TYPE.match(i):
                raise _bad("eci-instance-type", f"{i!r} is not an ECS instance type (e.g. ecs.c6.large)")
        if out.sizes:
            raise _bad("eci-instance-type", "cannot be combined with eci-use-specs; list the types there")
        out.sizes = [SizeChoice(instance_type=i) for i in items]
    if "eci-spot-strategy" in ann:
        v = ann["eci-spot-strategy"].strip()
        if v not in ("SpotAsPriceGo", "SpotWithPriceLimit", "NoSpot"):
            raise _bad("eci-spot-strategy", f"{v!r} must be SpotAsPriceGo or SpotWithPriceLimit")
        out.spot_strategy = v
    if "eci-spot-price-limit" in ann:
        v = ann["eci-spot-price-limit"].strip()
        if not _PRICE.match(v) or float(v) <= 0:
            raise _bad("eci-spot-price-limit", f"{v!r} must be a positive price with at most 3 decimals")
        out.spot_price_limit = float(v)
    if out.spot_strategy == "SpotWithPriceLimit" and out.spot_price_limit is None:
        raise _bad("eci-spot-strategy", "SpotWithPriceLimit needs k8s.aliyun.com/eci-spot-price-limit")
    if out.spot_price_limit is not None and out.spot_strategy != "SpotWithPriceLimit":
        raise _bad("eci-spot-price-limit", "only applies with eci-spot-strategy: SpotWithPriceLimit")
    if "eci-spot-duration" in ann:
        v = ann["eci-spot-duration"].strip()
        if not v.isdigit() or not 0 <= int(v) <= 6:
            raise _bad("eci-spot-duration", f"{v!r} must be a whole number of hours from 0 (no protection) to 6")
        out.spot_duration = int(v)
    if "eci-spot-fallback" in ann:
        out.spot_fallback = _bool("eci-spot-fallback", ann["eci-spot-fallback"])
    spot = out.spot_strategy not in (None, "NoSpot")
    for key, given in (("eci-spot-duration", out.spot_duration is not None), ("eci-spot-fallback", out.spot_fallback)):
        if given and not spot:
            raise _bad(key, "only applies with eci-spot-strategy: SpotAsPriceGo or SpotWithPriceLimit")
    if "eci-max-pending-minute" in ann:
        v = ann["eci-max-pending-minute"].strip()
        lo, hi = MAX_PENDING_MINUTES
        if not v.isdigit() or not lo <= int(v) <= hi:
            raise _bad("eci-max-pending-minute", f"{v!r} must be a whole number of minutes from {lo} to {hi}")
        out.max_pending_minutes = int(v)
    if "eci-image-snapshot-id" in ann:
        v = ann["eci-image-snapshot-id"].strip()
        if not _IMC.match(v):
            raise _bad("eci-image-snapshot-id", f"{v!r} is not an image cache id (imc-...)")
        out.image_snapshot_id = v
    for key in ("eci-auto-imc", "eci-image-cache"):
        if key in ann:
            flag = _bool(key, ann[key])
            if out.auto_match_image_cache is not None and out.auto_match_image_cache != flag:
                raise _bad(key, "contradicts the other of eci-auto-imc / eci-image-cache")
            out.auto_match_image_cache = flag
    if "eci-with-eip" in ann:
        out.with_eip = _bool("eci-with-eip", ann["eci-with-eip"])
    if "eip-bandwidth" in ann:
        v = ann["eip-bandwidth"].strip()
        if not v.isdigit() or not 1 <= int(v) <= 200:
            raise _bad("eip-bandwidth", f"{v!r} must be an integer number of Mbps from 1 to 200")
        out.eip_bandwidth = int(v)
    if "eci-ram-role-name" in ann:
        v = ann["eci-ram-role-name"].strip()
        if not _RAM_ROLE.match(v):
            raise _bad("eci-ram-role-name", f"{v!r} must be 1-64 letters, digits, '.' or '-'")
        out.ram_role_name = v
    if "eci-extra-ephemeral-storage" in ann:
        v = ann["eci-extra-ephemeral-storage"].strip()
        try:
            size = parse_quantity(v)
        except ValueError:
            raise _bad("eci-extra-ephemeral-storage", f"{v!r} is not a quantity (e.g. 50Gi)") from None
        gib = ceil_div(size, Decimal(GIB))
        if gib < 1 or gib > 2048:
            raise _bad("eci-extra-ephemeral-storage", f"{v!r} must be between 1Gi and 2048Gi")
        out.extra_ephemeral_storage_gib = gib

    for key in sorted(ann):
        if key not in SUPPORTED and key not in WRITTEN_BACK:
            out.warnings.append(f"annotation {PREFIX}{key} is not supported by this provider and was ignored")
    return out
