"""k8s.aliyun.com/ annotations: one valid and one invalid case per annotation."""

from __future__ import annotations

import pytest

from vk_provider.eci.annotations import parse_annotations
from vk_provider.eci.specs import SizeChoice
from vk_provider.errors import InvalidInput

P = "k8s.aliyun.com/"


@pytest.mark.parametrize(
    ("key", "value", "attr", "expected"),
    [
        ("eci-vswitch", "vsw-a, vsw-b", "vswitch_ids", ["vsw-a", "vsw-b"]),
        ("eci-schedule-strategy", "VSwitchRandom", "schedule_strategy", "VSwitchRandom"),
        ("eci-security-group", "sg-1,sg-2", "security_group_ids", ["sg-1", "sg-2"]),
        ("eci-resource-group-id", "rg-abc", "resource_group_id", "rg-abc"),
        (
            "eci-use-specs",
            "2-4Gi,ecs.c6.large",
            "sizes",
            [SizeChoice(cpu=2, memory=4), SizeChoice(instance_type="ecs.c6.large")],
        ),
        ("eci-instance-type", "ecs.g6.xlarge", "sizes", [SizeChoice(instance_type="ecs.g6.xlarge")]),
        ("eci-image-snapshot-id", "imc-123", "image_snapshot_id", "imc-123"),
        ("eci-auto-imc", "true", "auto_match_image_cache", True),
        ("eci-image-cache", "false", "auto_match_image_cache", False),
        ("eci-with-eip", "true", "with_eip", True),
        ("eip-bandwidth", "10", "eip_bandwidth", 10),
        ("eci-ram-role-name", "my.role", "ram_role_name", "my.role"),
        ("eci-extra-ephemeral-storage", "50Gi", "extra_ephemeral_storage_gib", 50),
        ("eci-max-pending-minute", "10", "max_pending_minutes", 10),
    ],
)
def test_valid_values(key: str, value: str, attr: str, expected: object) -> None:
    """Each supported annotation's valid value lands in the parsed result."""
    assert getattr(parse_annotations({P + key: value}), attr) == expected


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("eci-vswitch", "subnet-1", "not a vSwitch id"),
        ("eci-vswitch", ",".join(f"vsw-{i}" for i in range(11)), "1 to 10"),
        ("eci-schedule-strategy", "Fastest", "VSwitchOrdered or VSwitchRandom"),
        ("eci-security-group", "sg-1,sg-2,sg-3,sg-4,sg-5,sg-6", "1 to 5"),
        ("eci-resource-group-id", "group", "resource group id"),
        ("eci-use-specs", "3-5Gi", "not an ECI spec"),
        ("eci-use-specs", "big", "neither"),
        ("eci-instance-type", "c6.large", "ECS instance type"),
        ("eci-spot-strategy", "Cheap", "SpotAsPriceGo or SpotWithPriceLimit"),
        ("eci-spot-price-limit", "-1", "positive price"),
        ("eci-image-snapshot-id", "snap-1", "image cache id"),
        ("eci-auto-imc", "maybe", "not a boolean"),
        ("eci-with-eip", "yes please", "not a boolean"),
        ("eip-bandwidth", "0", "1 to 200"),
        ("eci-ram-role-name", "role with spaces", "1-64"),
        ("eci-extra-ephemeral-storage", "lots", "not a quantity"),
        ("eci-max-pending-minute", "9", "from 10 to 1440"),
        ("eci-max-pending-minute", "1441", "from 10 to 1440"),
        ("eci-spot-duration", "1", "only applies with eci-spot-strategy"),
        ("eci-spot-fallback", "true", "only applies with eci-spot-strategy"),
    ],
)
def test_invalid_values_name_the_annotation(key: str, value: str, why: str) -> None:
    """A bad value raises InvalidInput whose message names the annotation and says why."""
    with pytest.raises(InvalidInput) as info:
        parse_annotations({P + key: value})
    assert P + key in info.value.message and why in info.value.message


def test_spot_with_price_limit_needs_the_limit() -> None:
    """SpotWithPriceLimit without eci-spot-price-limit is refused; with it, both are kept."""
    with pytest.raises(InvalidInput):
        parse_annotations({P + "eci-spot-strategy": "SpotWithPriceLimit"})
    out = parse_annotations({P + "eci-spot-strategy": "SpotWithPriceLimit", P + "eci-spot-price-limit": "0.25"})
    assert (out.spot_strategy, out.spot_price_limit) == ("SpotWithPriceLimit", 0.25)


def test_unknown_annotations_become_warnings() -> None:
    """An unsupported k8s.aliyun.com/ annotation is reported as a warning; other prefixes are ignored."""
    out = parse_annotations({P + "eci-ntp-server": "1.2.3.4", "example.com/x": "y"})
    assert out.warnings == [f"annotation {P}eci-ntp-server is not supported by this provider and was ignored"]


def test_spot_duration_and_fallback() -> None:
    """With a spot strategy: eci-spot-duration 0-6 hours and eci-spot-fallback a boolean; bad values refused."""
    spot = {P + "eci-spot-strategy": "SpotAsPriceGo"}
    out = parse_annotations({**spot, P + "eci-spot-duration": "0", P + "eci-spot-fallback": "true"})
    assert (out.spot_duration, out.spot_fallback) == (0, True)
    for key, value, why in (
        ("eci-spot-duration", "7", "from 0 (no protection) to 6"),
        ("eci-spot-duration", "1.5", "whole number"),
        ("eci-spot-fallback", "sometimes", "not a boolean"),
    ):
        with pytest.raises(InvalidInput) as info:
            parse_annotations({**spot, P + key: value})
        assert P + key in info.value.message and why in info.value.message


def test_written_back_annotations_are_not_warned_about() -> None:
    """The annotations the daemon writes back (eci-instance-id ...) are not 'unsupported' on a copied pod."""
    assert parse_annotations({P + "eci-instance-id": "eci-1", P + "eci-instance-zone": "z"}).warnings == []
