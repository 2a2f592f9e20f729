"""vk_provider.jsoncodec: orjson where it agrees with ``json``, ``json`` itself where orjson refuses, and the
differences the module's docstring accepts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vk_provider import jsoncodec


def _stdlib(obj: Any, **kw: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), **kw).encode()


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {}}, "spec": {"containers": []}},
        [1, -1, 0, 2**63 - 1, -(2**63), 2**64 - 1, 0.5, -0.0, 1.5e300, True, False, None, "", 'a"b\\c\n\t'],
        {"nested": [[[[{"deep": [None]}]]]], "ctrl": "\x00\x1f"},
        "plain",
        ("a", "tuple"),
    ],
)
def test_ascii_json_is_written_as_json_writes_it(obj: Any) -> None:
    assert jsoncodec.dumps(obj) == _stdlib(obj)
    assert jsoncodec.dumps_str(obj) == _stdlib(obj).decode()
    assert jsoncodec.loads(jsoncodec.dumps(obj)) == json.loads(_stdlib(obj))


def test_what_orjson_refuses_to_write_is_written_by_json() -> None:
    big = {"n": 2**64, "m": -(2**63) - 1}
    assert jsoncodec.dumps(big) == _stdlib(big)
    keys = {2: "int", 2.5: "float", True: "bool", None: "none"}
    assert jsoncodec.dumps(keys) == b'{"2":"int","2.5":"float","true":"bool","null":"none"}' == _stdlib(keys)
    surrogate = {"s": "\ud800"}
    assert jsoncodec.dumps(surrogate) == b'{"s":"\\ud800"}' == _stdlib(surrogate)
    assert jsoncodec.loads(jsoncodec.dumps(surrogate)) == surrogate


def test_objects_json_cannot_write_raise_type_error_or_go_to_default() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    when = dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC)
    for obj in (when, when.date(), Point(1), {1, 2}, object()):
        with pytest.raises(TypeError):
            json.dumps(obj)
        with pytest.raises(TypeError):
            jsoncodec.dumps({"v": obj})
    # ``default`` sees datetimes and dataclasses as json's ``default`` does (orjson would format them itself).
    assert jsoncodec.dumps({"t": when, "p": Point(1)}, default=str) == _stdlib({"t": when, "p": Point(1)}, default=str)
    assert jsoncodec.dumps({"s": {3}}, default=sorted) == b'{"s":[3]}'


def test_sort_keys() -> None:
    obj = {"b": 1, "a": {"d": 2, "c": [{"f": 0, "e": 1}]}}
    assert jsoncodec.dumps(obj, sort_keys=True) == _stdlib(obj, sort_keys=True)
    assert jsoncodec.dumps({2: "x", 1: "y"}, sort_keys=True) == _stdlib({2: "x", 1: "y"}, sort_keys=True)


@pytest.mark.parametrize(
    "text",
    [b"NaN", b"[Infinity, -Infinity]", b'"\\ud800"', b"\xef\xbb\xbf{}", '{"a": 1}'.encode("utf-16"), b"1e400"],
)
def test_what_orjson_refuses_to_read_is_read_by_json(text: bytes) -> None:
    got, want = jsoncodec.loads(text), json.loads(text)
    assert repr(got) == repr(want)  # repr: nan != nan


@pytest.mark.parametrize("text", [b"", b"{", b'{"a":}', b"[1,]", b"\xff", b"null x", "{'a': 1}"])
def test_not_json_raises_what_json_raises(text: bytes | str) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        jsoncodec.loads(text)
    assert type(got.value) is type(want.value)  # JSONDecodeError; UnicodeDecodeError for bytes not UTF-8
    assert str(got.value) == str(want.value)


def test_loads_takes_what_json_loads_takes() -> None:
    doc = b'{"a":[1,2.5,"x"],"a2":null}'
    for form in (doc, bytearray(doc), memoryview(doc), doc.decode()):
        assert jsoncodec.loads(form) == {"a": [1, 2.5, "x"], "a2": None}
    assert jsoncodec.loads(b'{"k":1,"k":2}') == {"k": 2}  # the last duplicate wins, as in json
    assert type(jsoncodec.loads(b"1.0")) is float and type(jsoncodec.loads(b"-0")) is int


def test_the_accepted_differences() -> None:
    """What the module's docstring says differs from json, pinned so that a change of orjson shows."""
    assert jsoncodec.dumps("é ☃") == '"é ☃"'.encode()  # json: "\u00e9 \u2603", the same string
    assert json.loads(jsoncodec.dumps("é ☃")) == "é ☃"
    assert jsoncodec.dumps([1e-7, 1e-5]) == b"[1e-7,0.00001]"  # json: [1e-07,1e-05], the same numbers
    assert json.loads(jsoncodec.dumps([1e-7, 1e-5])) == [1e-7, 1e-5]
    assert jsoncodec.dumps("\x7f") == b'"\x7f"'  # json: "\u007f", the same string
    assert jsoncodec.dumps([math.nan, math.inf]) == b"[null,null]"  # json: [NaN,Infinity], not JSON
    assert jsoncodec.loads(b"18446744073709551616") == 18446744073709551616.0  # json: an int

    class Colour(enum.Enum):
        RED = "red"

    assert jsoncodec.dumps([Colour.RED]) == b'["red"]'  # json: TypeError


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(_json_values)
def test_round_trips_agree_with_json(obj: Any) -> None:
    written = jsoncodec.dumps(obj)
    assert json.loads(written) == json.loads(_stdlib(obj))
    assert jsoncodec.loads(written) == json.loads(written)
    assert jsoncodec.loads(_stdlib(obj)) == json.loads(_stdlib(obj))


def test_dumps_holds_no_more_memory_than_its_length() -> None:
    # orjson's own bytes keep the buffer they grew in (at least 1 KB); the caches hold dumps' output for as
    # long as a pod lives, so it must be right-sized.
    pod = {"metadata": {"name": "p" * 20}, "spec": {"image": "x" * 100}, "status": {"message": "z" * 1500}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [jsoncodec.dumps(pod) for _ in range(200)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1.3 * sum(len(b) + 33 for b in held) + 4096
