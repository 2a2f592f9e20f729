"""Reading groups from ECI (listing.py): every NextToken listing stops the same way, at an empty token, an
empty page or its page bound. Through the real SDK client against the scripted ECI endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.eci.conftest import FakeECI, make_settings
from vk_provider.eci import names
from vk_provider.eci.client import ECIClient
from vk_provider.eci.listing import Listing, describe_by_tags, describe_ids, tag_params
from vk_provider.eci.models import DescribeContainerGroupStatusResponse


@pytest.fixture
async def client(fake_eci: FakeECI) -> AsyncIterator[ECIClient]:
    c = ECIClient(make_settings(fake_eci.endpoint))
    yield c
    await c.close()


def _status(*ids: str, token: str = "") -> tuple[int, dict[str, object]]:
    return 200, {"Data": [{"ContainerGroupId": i, "Status": "Running"} for i in ids], "NextToken": token}


async def test_walks_pages_with_the_token_until_it_is_empty(fake_eci: FakeECI, client: ECIClient) -> None:
    """Each page after the first carries the previous page's NextToken; an empty NextToken ends the listing."""
    fake_eci.script(
        "DescribeContainerGroupStatus", _status("a", "b", token="t1"), _status("c", token="t2"), _status("d")
    )
    listing = Listing(client.call, DescribeContainerGroupStatusResponse, {"Limit": 2})
    pages = [[i.ContainerGroupId for i in page.Data] async for page, _ in listing.pages_left()]
    assert pages == [["a", "b"], ["c"], ["d"]]
    assert [p.get("NextToken") for _, p in fake_eci.calls] == [None, "t1", "t2"]
    assert listing.done and listing.pages == 3 and [p["Limit"] for _, p in fake_eci.calls] == ["2"] * 3


async def test_an_empty_page_ends_the_listing_and_the_raw_answer_comes_along(
    fake_eci: FakeECI, client: ECIClient
) -> None:
    """A page with no items ends the listing even with a NextToken; each page also comes as received."""
    fake_eci.script("DescribeContainerGroupStatus", _status("a", token="t1"), _status(token="t2"))
    listing = Listing(client.call, DescribeContainerGroupStatusResponse, {})
    raws = [raw async for _, raw in listing.pages_left()]
    assert listing.done and len(fake_eci.calls) == 2
    assert raws[0]["Data"] == [{"ContainerGroupId": "a", "Status": "Running"}]


async def test_a_listing_stops_at_its_page_bound_and_resumes_page_by_page(fake_eci: FakeECI, client: ECIClient) -> None:
    """next_page fetches one page at a time from where the listing stands; max_pages bounds a listing
    that never ends."""
    fake_eci.script("DescribeContainerGroupStatus", lambda p: _status("x", token=p.get("NextToken", "") + "+"))
    paced = Listing(client.call, DescribeContainerGroupStatusResponse, {})
    await paced.next_page()
    assert not paced.done and paced.token == "+"
    await paced.next_page()
    assert paced.token == "++" and paced.pages == 2
    bounded = Listing(client.call, DescribeContainerGroupStatusResponse, {}, max_pages=5)
    assert len([page async for page in bounded.pages_left()]) == 5 and bounded.done


async def test_describe_by_tags_and_by_id(fake_eci: FakeECI, client: ECIClient) -> None:
    """describe_by_tags lists every page of the tagged groups (20 per page); describe_ids asks 20 ids per call."""
    groups = [{"ContainerGroupId": f"eci-{i}"} for i in range(3)]
    fake_eci.script(
        "DescribeContainerGroups",
        (200, {"ContainerGroups": groups[:2], "NextToken": "n"}),
        (200, {"ContainerGroups": groups[2:], "NextToken": ""}),
    )
    params = tag_params("c", "vk", {names.TAG_UID: "u-1"})
    found = await describe_by_tags(client.call, params)
    assert [g.ContainerGroupId for g in found] == ["eci-0", "eci-1", "eci-2"]
    first = fake_eci.calls[0][1]
    assert first["Limit"] == "20" and first["Tag.3.Key"] == names.TAG_UID and first["Tag.3.Value"] == "u-1"
    fake_eci.calls.clear()
    fake_eci.script("DescribeContainerGroups", (200, {"ContainerGroups": [], "NextToken": ""}))
    await describe_ids(client.call, [f"eci-{i}" for i in range(45)])
    assert [len(json.loads(p["ContainerGroupIds"])) for _, p in fake_eci.calls] == [20, 20, 5]
