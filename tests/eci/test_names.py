"""Group names, identity tags and client tokens."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from vk_provider.eci import names

_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])$")


def test_simple_name_is_kept() -> None:
    """A namespace/name that already fits the pattern is used as <ns>-<name> with no hash."""
    assert names.group_name("default", "web-1") == "default-web-1"


def test_dots_and_case_get_a_hash_suffix() -> None:
    """Dots and upper case are sanitised, and a hash suffix keeps a.b and a-b apart."""
    a, b = names.group_name("ns", "a.b"), names.group_name("ns", "a-b")
    assert _PATTERN.match(a) and a != b and a.startswith("ns-a-b-")


def test_long_names_are_shortened_with_hash() -> None:
    """A 253-character pod name gives a 128-character name; two such names differing at the end differ."""
    n1 = names.group_name("team", "x" * 252 + "1")
    n2 = names.group_name("team", "x" * 252 + "2")
    assert len(n1) == 128 and _PATTERN.match(n1) and n1 != n2


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=253),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63),
)
def test_any_pod_name_gives_a_valid_group_name(name: str, namespace: str) -> None:
    """Every namespace/name pair maps to a name matching the service's pattern."""
    assert _PATTERN.match(names.group_name(namespace, name))


def test_client_token_is_stable_and_bounded() -> None:
    """The create token depends only on the UID (idempotent across restarts) and fits 64 ASCII chars."""
    t = names.client_token("0b9c-uid")
    assert t == names.client_token("0b9c-uid") and t != names.client_token("other")
    assert len(t) <= 64 and t.isascii()
    assert names.client_token("0b9c-uid", "delete") != t


def test_identity_round_trip() -> None:
    """Identity tags written for a pod are read back only for the same cluster and node."""
    pod = {"metadata": {"namespace": "ns", "name": "p", "uid": "u1"}}
    tags = names.identity_tags(pod, cluster="c", node="n")
    assert names.identity_from_tags(tags, cluster="c", node="n") == ("ns", "p", "u1")
    assert names.identity_from_tags(tags, cluster="other", node="n") is None
    assert names.identity_from_tags(tags, cluster="c", node="other") is None
