"""packing.py: deflate/inflate give back every byte, and the dictionary pays for a pod that shares its defaults."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from vk_provider import jsoncodec
from vk_provider.packing import DICTIONARY, deflate, inflate


@given(st.binary(max_size=4096))
def test_inflate_gives_back_what_deflate_was_given(data: bytes) -> None:
    assert inflate(deflate(data)) == data


def test_a_defaulted_pod_deflates_far_better_with_the_dictionary() -> None:
    # A pod of no workload the dictionary knows: its own names and values, the API server's defaults.
    pod = {
        "metadata": {"name": "web-7d4b9c-x2x9p", "namespace": "shop", "uid": "5e1f0c3a-9b2e-4f7d-a1c2-3d4e5f6a7b8c"},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example/shop/web:1.4.2",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
    }
    data = jsoncodec.dumps(pod)
    assert len(deflate(data)) < len(zlib.compress(data, 1)) * 0.8 < len(data)
    assert b"busybox" not in DICTIONARY and b"bench" not in DICTIONARY  # nothing of the benchmarks' workload
