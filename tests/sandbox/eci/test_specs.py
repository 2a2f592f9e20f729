"""Spec rounding to the ECI table."""

from __future__ import annotations

import pytest

from vk_sandbox.eci.specs import round_spec
from vk_sandbox.eci.wire import ApiError


@pytest.mark.parametrize(
    ("asked", "got"),
    [
        ((0, 0), (2.0, 4.0)),
        ((0.25, 0.5), (0.25, 0.5)),
        ((0.3, 0.1), (0.5, 1.0)),
        ((1, 9), (2.0, 16.0)),
        ((3, 3), (4.0, 4.0)),
        ((2, 20), (4.0, 32.0)),
        ((60, 500), (64.0, 512.0)),
    ],
)
def test_rounds_up_to_the_smallest_covering_spec(asked: tuple[float, float], got: tuple[float, float]) -> None:
    """A size is rounded to the listed spec with the fewest vCPU, then the least memory, covering both."""
    assert round_spec(*asked) == got


def test_beyond_the_largest_spec_is_invalid() -> None:
    """More than 64 vCPU or 512 GiB is InvalidParameter."""
    for asked in ((65, 1), (1, 513)):
        with pytest.raises(ApiError) as info:
            round_spec(*asked)
        assert info.value.code == "InvalidParameter"
