"""Reading this node's groups from ECI: by id, ``PAGE`` per call, and listings by tag, page by page.

``Listing`` is the one NextToken loop. The incremental poll, the sweeps (full resync, presence check,
walked a page at a time or all at once) and the lookup of a pod's group by its UID tag all go through
it, so every listing stops the same way: at an empty NextToken, at an empty page, or at its page bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from vk_provider.eci import names
from vk_provider.eci.models import (
    ContainerGroup,
    DescribeContainerGroupEventsResponse,
    DescribeContainerGroupsResponse,
    DescribeContainerGroupStatusResponse,
)

PAGE = 20  # DescribeContainerGroups' maximum page
STATUS_PAGE = 200  # DescribeContainerGroupStatus' maximum page
MAX_PAGES = 100_000  # a listing's bound: 2M groups at 20 per page

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""An ECI call: action and parameters in, the parsed JSON answer out (the provider's ``_call``)."""

Page = TypeVar(
    "Page", DescribeContainerGroupsResponse, DescribeContainerGroupStatusResponse, DescribeContainerGroupEventsResponse
)

_ACTIONS: dict[type[Any], str] = {
    DescribeContainerGroupsResponse: "DescribeContainerGroups",
    DescribeContainerGroupStatusResponse: "DescribeContainerGroupStatus",
    DescribeContainerGroupEventsResponse: "DescribeContainerGroupEvents",
}


def tag_params(cluster: str, node: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The Tag.N.Key/Value parameters that select this cluster's and node's groups (and ``extra`` tags)."""
    tags = {names.TAG_CLUSTER: cluster, names.TAG_NODE: node, **(extra or {})}
    params: dict[str, Any] = {}
    for i, (k, v) in enumerate(tags.items(), 1):
        params[f"Tag.{i}.Key"] = k
        params[f"Tag.{i}.Value"] = v
    return params


class Listing(Generic[Page]):
    """One listing (DescribeContainerGroups, DescribeContainerGroupStatus or DescribeContainerGroupEvents with
    ``params``), walked with NextToken: a page at a time (``next_page``, the poller's paced sweeps) or to its
    end (``pages_left``).
    Each page comes as (parsed answer, raw answer): the incremental poll fingerprints the raw items."""

    def __init__(self, call: Call, response: type[Page], params: dict[str, Any], *, max_pages: int = MAX_PAGES) -> None:
        self._call = call
        self._response: type[Page] = response
        self._params = params
        self._max_pages = max_pages
        self.token = ""
        self.pages = 0  # pages fetched so far
        self.done = False

    async def next_page(self) -> tuple[Page, dict[str, Any]]:
        params = {**self._params, "NextToken": self.token} if self.token else self._params
        data = await self._call(_ACTIONS[self._response], params)
        page = self._response.model_validate(data)
        items: list[Any] = page.ContainerGroups if isinstance(page, DescribeContainerGroupsResponse) else page.Data
        self.pages += 1
        self.token = page.NextToken
        self.done = not page.NextToken or not items or self.pages >= self._max_pages
        return page, data

    async def pages_left(self) -> AsyncIterator[tuple[Page, dict[str, Any]]]:
        """The pages not fetched yet, up to the end of the listing."""
        while not self.done:
            yield await self.next_page()


async def describe_pages(call: Call, ids: list[str]) -> AsyncIterator[list[ContainerGroup]]:
    """The groups of ``ids`` that exist, ``PAGE`` per call, a page at a time: a caller that applies each page
    before the next holds 20 decoded groups rather than thousands (a burst's poll describes that many)."""
    for i in range(0, len(ids), PAGE):
        batch = ids[i : i + PAGE]
        data = await call("DescribeContainerGroups", {"ContainerGroupIds": batch, "Limit": PAGE})
        yield DescribeContainerGroupsResponse.model_validate(data).ContainerGroups


async def describe_ids(call: Call, ids: list[str]) -> list[ContainerGroup]:
    """The groups of ``ids`` that exist, ``PAGE`` per call."""
    return [g async for page in describe_pages(call, ids) for g in page]


async def describe_by_tags(call: Call, params: dict[str, Any]) -> list[ContainerGroup]:
    """Every group with the tags of ``params`` (from ``tag_params``)."""
    listing = Listing(call, DescribeContainerGroupsResponse, {**params, "Limit": PAGE})
    return [g async for page, _ in listing.pages_left() for g in page.ContainerGroups]
