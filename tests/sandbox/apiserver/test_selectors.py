"""Label and field selector parsing and matching."""

from __future__ import annotations

import pytest

from vk_sandbox.apiserver.errors import ApiError
from vk_sandbox.apiserver.resources import RESOURCES
from vk_sandbox.apiserver.selectors import field_predicate, label_predicate

OBJ = {
    "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "front"}},
    "spec": {"nodeName": "n1"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app in (web, db)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("!tier", False),
        ("missing!=x", True),
        ("!missing", True),
        ("app=web,tier=back", False),
        ("app in (db),tier", False),
        ("", True),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    """Every operator of the label selector grammar matches as the real server's."""
    pred = label_predicate(selector)
    assert (pred is None or pred(OBJ)) is matches


@pytest.mark.parametrize("selector", ["app in (", "=x", "a=(b)", "app in web", "a,", "bad key!=x", "-x=y", "a=b c"])
def test_bad_label_selectors_are_400(selector: str) -> None:
    """Malformed label selectors are a 400 BadRequest, never an exception of another kind."""
    with pytest.raises(ApiError) as exc:
        label_predicate(selector)
    assert exc.value.code == 400


def test_field_selectors_for_pods() -> None:
    """Pods accept their real field labels with =, == and != (comma is AND); others are 400."""
    fields = RESOURCES["pods"].field_labels
    assert field_predicate("spec.nodeName=n1,status.phase!=Failed", "pods", fields)(OBJ)  # type: ignore[misc]
    assert not field_predicate("metadata.name==q", "pods", fields)(OBJ)  # type: ignore[misc]
    assert field_predicate("spec.hostNetwork=false", "pods", fields)(OBJ)  # type: ignore[misc]
    with pytest.raises(ApiError) as exc:
        field_predicate("spec.containers=x", "pods", fields)
    assert exc.value.code == 400 and "field label not supported" in exc.value.message
    with pytest.raises(ApiError):
        field_predicate("status.phase", "pods", fields)
