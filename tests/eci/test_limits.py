"""ECI's documented configuration limits, checked by translate_pod before any call."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.eci.conftest import make_settings
from vk_provider.eci.limits import MAX_CONFIG_FILE_BYTES, MAX_CONFIG_VOLUME_BYTES, MAX_VOLUMES, decoded_size
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import InvalidInput
from vk_provider.provider import PodResources

SETTINGS = make_settings("http://127.0.0.1:1")
KIB = 1024


def pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    mounts = [{"name": v["name"], "mountPath": f"/etc/{v['name']}"} for v in volumes]
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "volumeMounts": mounts}], "volumes": volumes},
    }


def translate(volumes: list[dict[str, Any]], res: PodResources) -> Any:
    return translate_pod(pod(volumes), res, SETTINGS, "vk")


def test_files_at_the_limits_are_sent() -> None:
    """A 32 KiB file, and two 30 KiB files making exactly 60 KiB, are within ECI's limits."""
    res = PodResources(config_maps={"one": {"a": "x" * MAX_CONFIG_FILE_BYTES}, "two": {"a": "y" * 30 * KIB}})
    res.secrets["s"] = {"b": b"z" * 30 * KIB, "c": b"w" * 30 * KIB}
    vols = [{"name": "one", "configMap": {"name": "one"}}, {"name": "two", "configMap": {"name": "two"}}]
    result = translate([*vols, {"name": "sec", "secret": {"secretName": "s"}}], res)
    sizes = {v.name: sum(decoded_size(f.content) for f in v.files) for v in result.request.volumes}
    assert sizes == {"one": MAX_CONFIG_FILE_BYTES, "two": 30 * KIB, "sec": MAX_CONFIG_VOLUME_BYTES}


def test_a_file_over_32_kib_is_config_too_large() -> None:
    """The message names the volume, its ConfigMap, the file and both numbers; no content leaks."""
    res = PodResources(config_maps={"bigconf": {"app.conf": "q" * 200 * KIB}})
    with pytest.raises(InvalidInput) as info:
        translate([{"name": "conf", "configMap": {"name": "bigconf"}}], res)
    err = info.value
    assert err.reason == "ConfigTooLarge"
    assert 'volume "conf" (ConfigMap bigconf)' in err.message and "file app.conf is 200.0 KiB" in err.message
    assert "32.0 KiB per file" in err.message and "60.0 KiB per volume" in err.message
    assert "qqqq" not in err.message


def test_a_volume_over_60_kib_is_config_too_large() -> None:
    """Each file fits, the volume does not: the message gives the total and says how to split it."""
    res = PodResources(secrets={"db": {f"k{i}": b"s" * 25 * KIB for i in range(3)}})
    with pytest.raises(InvalidInput) as info:
        translate([{"name": "db", "secret": {"secretName": "db"}}], res)
    assert info.value.reason == "ConfigTooLarge"
    assert 'volume "db" (Secret db): its 3 files are 75.0 KiB together' in info.value.message
    assert "Split the keys" in info.value.message


def test_more_than_20_volumes_is_refused() -> None:
    """ECI mounts at most 20 volumes per group."""
    vols = [{"name": f"v{i}", "emptyDir": {}} for i in range(MAX_VOLUMES + 1)]
    with pytest.raises(InvalidInput) as info:
        translate(vols, PodResources())
    assert info.value.reason == "TooManyVolumes" and "21 volumes" in info.value.message
    translate(vols[:MAX_VOLUMES], PodResources())


@given(st.binary(max_size=300))
def test_decoded_size_matches_decoding(data: bytes) -> None:
    assert decoded_size(base64.b64encode(data).decode()) == len(data)
