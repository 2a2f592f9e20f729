"""Property: any valid pod translates to a request the ECI simulator accepts (DryRun), or to a clear
InvalidInput / NotSupported naming what is wrong. ECIClient (the real SDK) sends the request."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.eci.conftest import make_settings
from vk_provider.eci.client import ECIClient, error_code
from vk_provider.eci.translate import translate_pod
from vk_provider.errors import InvalidInput, NotSupported, PermanentError
from vk_provider.provider import PodResources
from vk_sandbox.eci.server import ECISimulator


class _SimThread:
    """The simulator on its own event loop in a thread, so a sync hypothesis test can call it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ready = threading.Event()
        self.sim: ECISimulator | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        async with ECISimulator(directory=self.directory, runtime="virtual") as sim:
            self.sim = sim
            self.ready.set()
            await self.stop.wait()


class _Sender:
    """An ECIClient to the simulator; ``call`` runs it on the simulator's loop for a sync hypothesis test."""

    def __init__(self, client: ECIClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop

    def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self.client.call(action, params), self.loop).result(60)


@pytest.fixture(scope="module")
def sim_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Sender]:
    st_ = _SimThread(tmp_path_factory.mktemp("sim"))
    st_.thread.start()
    assert st_.ready.wait(30)
    assert st_.sim is not None and st_.loop is not None and st_.stop is not None
    client = ECIClient(
        make_settings(
            st_.sim.endpoint,
            access_key_id=st_.sim.access_key_id,
            access_key_secret=SecretStr(st_.sim.access_key_secret),
            region=st_.sim.region,
        )
    )
    yield _Sender(client, st_.loop)
    asyncio.run_coroutine_threadsafe(client.close(), st_.loop).result(30)
    st_.loop.call_soon_threadsafe(st_.stop.set)
    st_.thread.join(30)


_label = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x7E), max_size=30)
_env_name = st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True)


@st.composite
def containers(draw: st.DrawFn, name: str) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": draw(st.sampled_from(["busybox", "nginx:1.25", "r.io/a/b@sha256:" + "a" * 64])),
    }
    if draw(st.booleans()):
        c["command"] = draw(st.lists(_text, min_size=1, max_size=3))
    if draw(st.booleans()):
        c["args"] = draw(st.lists(_text, max_size=3))
    if draw(st.booleans()):
        c["env"] = [{"name": n, "value": v} for n, v in draw(st.dictionaries(_env_name, _text, max_size=4)).items()]
    if draw(st.booleans()):
        ports = draw(st.lists(st.integers(1, 65535), max_size=3, unique=True))
        c["ports"] = [{"containerPort": p, "protocol": draw(st.sampled_from(["TCP", "UDP"]))} for p in ports]
    if draw(st.booleans()):
        c["resources"] = {
            draw(st.sampled_from(["requests", "limits"])): {
                "cpu": f"{draw(st.integers(10, 8000))}m",
                "memory": f"{draw(st.integers(16, 16384))}Mi",
            }
        }
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["exec", "tcp", "http"]))
        probe: dict[str, Any] = {"periodSeconds": draw(st.integers(1, 60))}
        if kind == "exec":
            probe["exec"] = {"command": draw(st.lists(_text, min_size=1, max_size=3))}
        elif kind == "tcp":
            probe["tcpSocket"] = {"port": draw(st.integers(1, 65535))}
        else:
            probe["httpGet"] = {"path": "/" + draw(_label), "port": draw(st.integers(1, 65535))}
        c[draw(st.sampled_from(["livenessProbe", "readinessProbe"]))] = probe
    return c


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))
    names = draw(st.lists(_label, min_size=n, max_size=n, unique=True))
    spec: dict[str, Any] = {"containers": [draw(containers(nm)) for nm in names]}
    spec["restartPolicy"] = draw(st.sampled_from(["Always", "OnFailure", "Never"]))
    vols = []
    for i, kind in enumerate(draw(st.lists(st.sampled_from(["emptyDir", "configMap", "hostPath", "nfs"]), max_size=3))):
        v: dict[str, Any] = {"name": f"v{i}"}
        if kind == "emptyDir":
            v["emptyDir"] = {"sizeLimit": "64Mi"} if draw(st.booleans()) else {}
        elif kind == "configMap":
            v["configMap"] = {"name": "cm"}
        elif kind == "hostPath":
            v["hostPath"] = {"path": "/var/log"}
        else:
            v["nfs"] = {"server": "nas.example.com", "path": "/x"}
        vols.append(v)
    if vols:
        spec["volumes"] = vols
        spec["containers"][0]["volumeMounts"] = [{"name": v["name"], "mountPath": f"/mnt/{v['name']}"} for v in vols]
    meta = {"name": draw(_label), "namespace": draw(_label), "uid": draw(st.uuids()).hex}
    if draw(st.booleans()):
        meta["annotations"] = {"k8s.aliyun.com/eci-use-specs": draw(st.sampled_from(["2-4Gi", "1-2Gi,4-8Gi", "3-3Gi"]))}
    return {"metadata": meta, "spec": spec}


SETTINGS = make_settings("http://127.0.0.1:1")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(pod=pods())
def test_any_pod_is_accepted_or_clearly_refused(sim_client: _Sender, pod: dict[str, Any]) -> None:
    """translate_pod either raises InvalidInput/NotSupported with a message, or gives params that pass DryRun."""
    res = PodResources(config_maps={"cm": {"a.conf": "x=1"}})
    try:
        req = translate_pod(pod, res, SETTINGS, "vk").request
    except (InvalidInput, NotSupported) as exc:
        assert exc.message
        return
    params = req.to_params()
    params["DryRun"] = True
    with pytest.raises(PermanentError) as info:
        sim_client.call("CreateContainerGroup", params)
    assert error_code(info.value) == "DryRunOperation", (info.value.message, json.dumps(pod))
