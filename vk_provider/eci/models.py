"""ECI responses, parsed once at the edge into typed models.

Only the fields the provider reads are declared; anything else the service sends is ignored, so a
new field on the service side never breaks parsing. Field names are the service's (PascalCase).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=False)


def _empty_time_is_none(v: Any) -> Any:
    # The service sends "" for times that have not happened yet.
    if v == "" or v is None:
        return None
    return v


class Tag(_Wire):
    Key: str
    Value: str = ""


class ContainerState(_Wire):
    State: str = ""  # Waiting | Running | Terminated ("" when unknown)
    Reason: str = ""
    Message: str = ""
    DetailStatus: str = ""
    ExitCode: int | None = None
    Signal: int | None = None
    StartTime: datetime | None = None
    FinishTime: datetime | None = None

    _times = field_validator("StartTime", "FinishTime", mode="before")(_empty_time_is_none)


class Container(_Wire):
    Name: str
    Image: str = ""
    ImageId: str = ""
    ContainerId: str = ""
    Ready: bool = False
    RestartCount: int = 0
    CurrentState: ContainerState = Field(default_factory=ContainerState)
    PreviousState: ContainerState = Field(default_factory=ContainerState)


class GroupEvent(_Wire):
    Count: int = 1
    Type: str = "Normal"
    Name: str = ""
    Reason: str = ""
    Message: str = ""
    FirstTimestamp: datetime | None = None
    LastTimestamp: datetime | None = None

    _times = field_validator("FirstTimestamp", "LastTimestamp", mode="before")(_empty_time_is_none)


class ContainerGroup(_Wire):
    """One container group as DescribeContainerGroups returns it."""

    ContainerGroupId: str
    ContainerGroupName: str = ""
    Status: str = ""
    Cpu: float | None = None
    Memory: float | None = None
    InstanceType: str = ""
    ZoneId: str = ""
    VSwitchId: str = ""
    SecurityGroupId: str = ""
    IntranetIp: str = ""
    InternetIp: str = ""
    Ipv6Address: str = ""
    RestartPolicy: str = ""
    SpotStrategy: str = ""
    CreationTime: datetime | None = None
    SucceededTime: datetime | None = None
    FailedTime: datetime | None = None
    ExpiredTime: datetime | None = None
    Tags: list[Tag] = Field(default_factory=list)
    Events: list[GroupEvent] = Field(default_factory=list)
    Containers: list[Container] = Field(default_factory=list)
    InitContainers: list[Container] = Field(default_factory=list)

    _times = field_validator("CreationTime", "SucceededTime", "FailedTime", "ExpiredTime", mode="before")(
        _empty_time_is_none
    )

    def tag(self, key: str) -> str | None:
        for t in self.Tags:
            if t.Key == key:
                return t.Value
        return None


class DescribeContainerGroupsResponse(_Wire):
    RequestId: str = ""
    NextToken: str = ""
    TotalCount: int = 0
    ContainerGroups: list[ContainerGroup] = Field(default_factory=list)


class StatusItem(_Wire):
    """One entry of DescribeContainerGroupStatus: only the id and the group status word are relied on."""

    ContainerGroupId: str
    Status: str = ""
    Name: str = ""
    Namespace: str = ""


class DescribeContainerGroupStatusResponse(_Wire):
    RequestId: str = ""
    NextToken: str = ""
    Data: list[StatusItem] = Field(default_factory=list)


class EventItem(_Wire):
    """One event in DescribeContainerGroupEvents: only its reason is read (the group is then described)."""

    Reason: str = ""


class GroupEvents(_Wire):
    """One group's events in DescribeContainerGroupEvents."""

    ContainerGroupId: str
    Events: list[EventItem] = Field(default_factory=list)


class DescribeContainerGroupEventsResponse(_Wire):
    RequestId: str = ""
    NextToken: str = ""  # the request documents NextToken from the previous answer; the answer's model omits it
    Data: list[GroupEvents] = Field(default_factory=list)


class CreateContainerGroupResponse(_Wire):
    RequestId: str = ""
    ContainerGroupId: str


class DescribeContainerLogResponse(_Wire):
    RequestId: str = ""
    ContainerName: str = ""
    Content: str = ""


class ExecContainerCommandResponse(_Wire):
    RequestId: str = ""
    WebSocketUri: str = ""
    HttpUrl: str = ""
    SyncResponse: str = ""


class MetricCPU(_Wire):
    Limit: int | None = None
    Load: int | None = None
    UsageCoreNanoSeconds: int | None = None
    UsageNanoCores: int | None = None


class MetricMemory(_Wire):
    AvailableBytes: int | None = None
    Cache: int | None = None
    Rss: int | None = None
    UsageBytes: int | None = None
    WorkingSet: int | None = None


class ContainerMetric(_Wire):
    Name: str
    CPU: MetricCPU = Field(default_factory=MetricCPU)
    Memory: MetricMemory = Field(default_factory=MetricMemory)


class MetricRecord(_Wire):
    Timestamp: datetime
    CPU: MetricCPU = Field(default_factory=MetricCPU)
    Memory: MetricMemory = Field(default_factory=MetricMemory)
    Containers: list[ContainerMetric] = Field(default_factory=list)


class GroupMetrics(_Wire):
    ContainerGroupId: str
    Records: list[MetricRecord] = Field(default_factory=list)


class DescribeMultiContainerGroupMetricResponse(_Wire):
    RequestId: str = ""
    MonitorDatas: list[GroupMetrics] = Field(default_factory=list)


class ListUsageResponse(_Wire):
    """ListUsage as documented: ``Attributes`` maps quota names (``MaxCpu``, ``UsedCpu``, image and data
    cache counts) to numbers. No group-count quota is documented."""

    RequestId: str = ""
    Attributes: dict[str, Any] = Field(default_factory=dict)

    def capacity(self) -> dict[str, str]:
        """Node capacity from the quota: cpu from ``MaxCpu``; nothing else has a documented limit."""
        limit = self.Attributes.get("MaxCpu")
        if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0:
            return {"cpu": str(int(limit))}
        return {}
