"""Doctor's ECI checks, every call through the product's ``ECIClient`` (one attempt each, no retries).

In order: the endpoint answers, the credentials sign, the clocks agree, a ``DryRun`` CreateContainerGroup
with the configured vSwitches and security group passes, and each action the daemon calls is allowed.
A check that cannot be asked because an earlier one failed is skipped with that reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vk_provider.doctor.report import Check
from vk_provider.eci.client import ECIClient, Probe, credential_kind, error_code
from vk_provider.eci.names import TAG_CLUSTER, TAG_NODE
from vk_provider.settings import Settings

# The service refuses a request whose Timestamp is 15 minutes off; doctor fails well before that.
MAX_SKEW_SECONDS = 300.0
SERVICE_SKEW_LIMIT_SECONDS = 900.0

# An id no group has: reads and writes on it answer "not found" once RAM allowed the call.
PROBE_GROUP_ID = "eci-vkdoctor00000000000"

_NETWORK_CODES = frozenset({"Network", "SDK.HttpError", "SDK.ServerUnreachable", "SDK.UnknownServerError"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidAccessKeySecret",
        "IncompleteSignature",
        "MetadataUnavailable",
    }
)
_CLOCK_CODES = frozenset({"InvalidTimeStamp.Expired", "RequestTimeTooSkewed"})
_TRANSIENT = frozenset({"InternalError", "ServiceUnavailable", "UnknownError", "SystemBusy", "ServiceBusy"})


def _denied(code: str) -> bool:
    """A RAM refusal: the credentials are fine, the policy does not allow the action."""
    return code.startswith(("Forbidden", "NoPermission")) or code in ("NotAuthorized", "Unauthorized")


def _ram_fix(action: str) -> str:
    return (
        f"allow eci:{action} in the RAM policy of these credentials "
        "(docs/operations.md lists the actions the daemon calls)"
    )


def _tags(settings: Settings) -> dict[str, Any]:
    node = settings.node.name
    return {
        "Tag.1.Key": TAG_CLUSTER,
        "Tag.1.Value": settings.eci.cluster_name,
        "Tag.2.Key": TAG_NODE,
        "Tag.2.Value": node,
    }


def _credential_fix(settings: Settings, code: str) -> str:
    eci = settings.eci
    if eci.ram_role_name:
        return (
            f"the ECS metadata server has no credentials for RAM role {eci.ram_role_name!r}: check "
            "eci.ram_role_name and that the role is attached to the node's ECS instance"
        )
    if eci.security_token is not None and code.startswith("InvalidSecurityToken"):
        return "the STS token expired or is invalid: get a new one (eci.security_token) and restart the daemon"
    if code.startswith("InvalidAccessKeyId"):
        return "the AccessKey id is unknown or disabled: check eci.access_key_id (RAM console, AccessKey management)"
    return "the AccessKey secret does not match the id: check eci.access_key_secret (or eci.credentials_file)"


def _skew(probe: Probe) -> float | None:
    """Local clock minus the service's, in seconds, from the answer's Date header (1 s resolution)."""
    if probe.server_date is None:
        return None
    middle = (probe.started + probe.finished) / 2
    return middle - probe.server_date.astimezone(UTC).timestamp()


def _clock_check(probe: Probe) -> Check:
    skew = _skew(probe)
    name = "eci.clock"
    if skew is None:
        return Check.skipped(name, "the answer carried no Date header to compare clocks with")
    local = datetime.fromtimestamp(probe.finished, UTC).strftime("%H:%M:%S")
    detail = f"local clock {skew:+.0f} s from the service's ({local} UTC here)"
    data = {"skew_seconds": round(skew, 1)}
    if abs(skew) > MAX_SKEW_SECONDS:
        refused = (
            " (the service refuses requests off by more than 15 min)" if abs(skew) > SERVICE_SKEW_LIMIT_SECONDS else ""
        )
        return Check.fail(
            name,
            detail + refused,
            "synchronise this machine's clock (NTP/chrony; on ECS the Alibaba Cloud NTP servers): requests more than "
            "15 minutes off are refused",
            data=data,
        )
    return Check.ok(name, detail, data=data)


def _first_call_checks(settings: Settings, client: ECIClient, probe: Probe) -> list[Check]:
    """Endpoint, credentials and clock, read from one DescribeContainerGroupStatus answer."""
    kind = credential_kind(settings.eci)
    elapsed_ms = (probe.finished - probe.started) * 1000
    err = probe.error
    code = error_code(err) if err is not None else ""
    if err is not None and code in _NETWORK_CODES:
        return [
            Check.fail(
                "eci.endpoint",
                f"{client.endpoint} did not answer: {err}",
                "check eci.region (and eci.endpoint when set), DNS and that this network may reach the endpoint "
                "on its port (443 for the service); a proxy is not used",
            ),
            Check.skipped("eci.credentials", "the endpoint did not answer"),
            Check.skipped("eci.clock", "the endpoint did not answer"),
        ]
    checks = [Check.ok("eci.endpoint", f"{client.endpoint} answered in {elapsed_ms:.0f} ms")]
    if err is not None and code in _CLOCK_CODES:
        checks.append(Check.skipped("eci.credentials", "the service refused the request's timestamp first"))
        clock = _clock_check(probe)
        if clock.status != "fail":
            clock = Check.fail(
                "eci.clock",
                f"the service refused the request's timestamp ({code})",
                "synchronise this machine's clock (NTP)",
            )
        checks.append(clock)
        return checks
    if err is not None and (code in _CREDENTIAL_CODES or code.startswith("InvalidSecurityToken")):
        checks.append(Check.fail("eci.credentials", f"{kind}: {err}", _credential_fix(settings, code)))
    elif err is not None and not _denied(code):
        checks.append(
            Check.fail(
                "eci.credentials",
                f"{kind}: could not be verified: {err}",
                "see the error; a 5xx or Throttling answer passes on its own, run doctor again",
            )
        )
    else:
        checks.append(Check.ok("eci.credentials", f"{kind} accepted by the service"))
    checks.append(_clock_check(probe))
    return checks


def _dry_run_params(settings: Settings) -> dict[str, Any]:
    eci = settings.eci
    params: dict[str, Any] = {
        "RegionId": eci.region,
        "ContainerGroupName": "vk-doctor-dry-run",
        "Cpu": 1,
        "Memory": 2,
        "RestartPolicy": "Never",
        "Container.1.Name": "doctor",
        "Container.1.Image": "busybox",
        "Container.1.Command.1": "true",
        **_tags(settings),
        "DryRun": True,
    }
    if eci.vswitch_ids:
        params["VSwitchId"] = ",".join(eci.vswitch_ids)
    if eci.security_group_id:
        params["SecurityGroupId"] = eci.security_group_id
    return params


def _dry_run_fix(settings: Settings, code: str) -> str:
    eci = settings.eci
    low = code.lower()
    if "vswitch" in low:
        return (
            f"eci.vswitch_ids ({', '.join(eci.vswitch_ids) or 'none'}): use vSwitches that exist in region "
            f"{eci.region} (VPC console, or `aliyun vpc DescribeVSwitches`)"
        )
    if "securitygroup" in low:
        return (
            f"eci.security_group_id ({eci.security_group_id or 'none'}): use a security group of the vSwitches' VPC "
            f"in region {eci.region}"
        )
    if "stock" in low:
        return "the vSwitches' zones have no stock for this size now: add vSwitches in other zones to eci.vswitch_ids"
    if _denied(code):
        return _ram_fix("CreateContainerGroup")
    if "region" in low:
        return f"eci.region ({eci.region}) is not a region ECI serves to this account"
    return "see the error: the daemon's creates would fail the same way"


async def _dry_run(settings: Settings, client: ECIClient) -> Check:
    name = "eci.create-dry-run"
    eci = settings.eci
    vswitches = ", ".join(eci.vswitch_ids) or "(service default)"
    where = f"vSwitches {vswitches}, security group {eci.security_group_id or '(service default)'}"
    probe = await client.probe("CreateContainerGroup", _dry_run_params(settings))
    if probe.error is None:
        group = str((probe.data or {}).get("ContainerGroupId") or "")
        if group:
            # The service ignored DryRun: do not leave a group behind.
            await client.probe("DeleteContainerGroup", {"RegionId": eci.region, "ContainerGroupId": group})
        return Check.fail(
            name,
            f"the service answered a DryRun create without DryRunOperation (group {group or 'none'}, deleted)",
            "report this: the endpoint may not be ECI's",
        )
    code = error_code(probe.error)
    if code == "DryRunOperation":
        return Check.ok(name, f"a 1 vCPU / 2 GiB group would be accepted ({where})")
    return Check.fail(name, f"{where}: {probe.error}", _dry_run_fix(settings, code))


def _read_calls(settings: Settings) -> list[tuple[str, dict[str, Any], bool]]:
    """(action, harmless parameters, required) for every other action the daemon calls."""
    region = {"RegionId": settings.eci.region}
    one = {"ContainerGroupId": PROBE_GROUP_ID}
    return [
        ("DescribeContainerGroups", {**region, **_tags(settings), "Limit": 1}, True),
        (
            "DescribeContainerGroupEvents",
            {**region, **_tags(settings), "SinceSecond": 60, "Limit": 1},
            settings.eci.spot_notice_poll_interval_seconds > 0,
        ),
        ("DescribeContainerLog", {**region, **one, "ContainerName": "doctor", "Tail": 1}, True),
        (
            "DescribeMultiContainerGroupMetric",
            {**region, "ContainerGroupIds": [PROBE_GROUP_ID], "MetricType": "summary"},
            True,
        ),
        ("ExecContainerCommand", {**region, **one, "ContainerName": "doctor", "Command": ["true"], "Sync": True}, True),
        ("UpdateContainerGroup", {**region, **one}, True),
        ("DeleteContainerGroup", {**region, **one}, True),
        ("ListUsage", dict(region), settings.node.capacity_from_quota),
    ]


async def _actions(settings: Settings, client: ECIClient) -> list[Check]:
    """Each action on an id no group has: "not found" (or an empty answer) means RAM allowed the call."""
    out = []
    for action, params, required in _read_calls(settings):
        name = f"eci.allow.{action}"
        probe = await client.probe(action, params)
        out.append(_allowed(name, action, probe, required=required))
    return out


def _allowed(name: str, action: str, probe: Probe, *, required: bool = True) -> Check:
    if probe.error is None:
        return Check.ok(name, "allowed", required=required)
    code = error_code(probe.error)
    if _denied(code):
        return Check.fail(name, f"refused: {probe.error}", _ram_fix(action), required=required)
    if code in _NETWORK_CODES or code.startswith(("Throttling", "SDK.")) or code in _TRANSIENT:
        return Check.fail(
            name, f"could not be asked: {probe.error}", "run doctor again; see the error", required=required
        )
    # The service validated the call past authorization: a missing group or a refused parameter.
    return Check.ok(name, f"allowed (answered {code} for a group that does not exist)", required=required)


async def run_eci_checks(settings: Settings) -> list[Check]:
    client = ECIClient(settings.eci)
    try:
        first = await client.probe(
            "DescribeContainerGroupStatus", {"RegionId": settings.eci.region, **_tags(settings), "Limit": 1}
        )
        checks = _first_call_checks(settings, client, first)
        code = error_code(first.error) if first.error is not None else ""
        status_check = _allowed("eci.allow.DescribeContainerGroupStatus", "DescribeContainerGroupStatus", first)
        if code in _NETWORK_CODES | _CREDENTIAL_CODES | _CLOCK_CODES or code.startswith("InvalidSecurityToken"):
            reason = "the service cannot be called yet (see above)"
            return [*checks, Check.skipped("eci.create-dry-run", reason), Check.skipped("eci.allow.*", reason)]
        return [*checks, await _dry_run(settings, client), status_check, *await _actions(settings, client)]
    finally:
        await client.close()
