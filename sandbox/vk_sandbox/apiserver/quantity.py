"""Resource quantities in the canonical form the real API server stores ("10000" as "10k", "1024Mi" as "1Gi").

The rules are apimachinery's ``resource.Quantity``: the value is exact, rounded up (away from zero) to a
nano-unit; a quantity remembers its kind of suffix (binary ``Ki``..``Ei``, decimal ``n``..``E`` or none, or an
``e`` exponent) and is written back with the largest suffix of that kind that keeps the mantissa a whole number.
A binary quantity that is not a whole number, or is smaller than 1024 in magnitude, is written in decimal
suffixes instead (``0.5Ki`` is ``512``, ``1.5Ki`` is ``1536``); zero is ``0``.

``canonical_quantities`` rewrites every quantity field of a Pod, Node or workload template in place, as the real
server does when it decodes them (and, for a Node, copies ``capacity`` to an absent ``allocatable``; for a
container, a limit to its missing request, both API defaulting). A value that is not a quantity raises
``QuantityError`` with the real decoder's words (the request is a 400, as on the real server).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_FORM = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_BINARY = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {e: s for s, e in _DECIMAL.items()}
_NANO = 10**9
_LOOSE = re.compile(r"^[+-]?[0-9.]+[eEinumkKMGTP]*[-+]?[0-9]*$")  # the real parser's first split


class QuantityError(ValueError):
    """Not a quantity; the message is the real parser's."""


def _not_a_quantity(text: str) -> QuantityError:
    if _LOOSE.match(text):
        return QuantityError("unable to parse quantity's suffix")
    return QuantityError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def canonical(value: Any, *, milli: bool = True) -> str:
    """The stored text of a quantity (a string, or a JSON number); QuantityError when it is not one.

    ``milli``: rounded up to a thousandth, as API defaulting does to every resource list (else to a billionth).
    A text the real parser already considers canonical is kept as written ("1.", "+2", "1E3", "007Ki"), as the
    real Quantity keeps its original string then."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _not_a_quantity("")
    text = value if isinstance(value, str) else str(value)
    match = _FORM.match(text)
    if match is None or not (match.group(2) or match.group(3)):
        raise _not_a_quantity(text)
    sign, whole, frac, suffix = match.group(1), match.group(2), match.group(3), match.group(4) or ""
    digits = whole.lstrip("0") or "0"
    frac_digits = frac or ""
    binary = suffix in _BINARY[1:]
    exponent_form = suffix[:1] in ("e", "E")
    if binary:
        power = 10 * _BINARY.index(suffix)
        amount = Fraction(int(digits + frac_digits), 10 ** len(frac_digits)) * 2**power
    else:
        power = int(suffix[1:]) if exponent_form else _DECIMAL[suffix]
        amount = Fraction(int(digits + frac_digits), 10 ** len(frac_digits)) * Fraction(10) ** power
    if text != "0" and _kept_as_written(binary, power, digits, frac, milli):
        return text
    unit = 1000 if milli else _NANO
    units = math.ceil(amount * unit)  # rounded up to the smallest unit kept, as the real parser and defaulting
    if units == 0:
        return "0"
    minus = "-" if sign == "-" else ""
    if binary and units % unit == 0 and units >= 1024 * unit:
        mantissa, power = units // unit, 0
        while mantissa % 1024 == 0 and power < len(_BINARY) - 1:
            mantissa //= 1024
            power += 1
        return f"{minus}{mantissa}{_BINARY[power]}"
    mantissa, exponent = units, -3 if milli else -9
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    shift = exponent % 3  # down to a multiple of three
    mantissa, exponent = mantissa * 10**shift, exponent - shift
    if exponent_form:
        return f"{minus}{mantissa}" + (f"e{exponent}" if exponent else "")
    if exponent in _DECIMAL_SUFFIX:
        return f"{minus}{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    return f"{minus}{mantissa}e{exponent}"


def _kept_as_written(binary: bool, power: int, digits: str, frac: str | None, milli: bool) -> bool:
    """The real parser's fast path keeps the original text when it is already in canonical shape: a whole number
    of Ki..Ei not divisible by 8, or a decimal mantissa with no leading zero and no trailing "000" whose scale is
    a multiple of three (and not below the rounding unit)."""
    if binary:
        return frac is None and 15 - len(digits) - power * 3 // 10 - 1 >= 0 and int(digits) & 7 != 0
    frac_digits = frac or ""
    scale = power - len(frac_digits)
    shifted = digits + frac_digits
    return (
        18 - len(shifted) >= 0
        and scale >= (-3 if milli else -9)
        and scale % 3 == 0
        and not shifted.endswith("000")
        and not shifted.startswith("0")
    )


def _canonical_list(resources: Any) -> None:
    if not isinstance(resources, dict):
        return
    for name, value in resources.items():
        resources[name] = canonical(value)


def _container(c: Any, requests_from_limits: bool) -> None:
    res = c.get("resources") if isinstance(c, dict) else None
    if not isinstance(res, dict):
        return
    limits, requests = res.get("limits"), res.get("requests")
    _canonical_list(limits)
    _canonical_list(requests)
    if requests_from_limits and isinstance(limits, dict) and isinstance(requests or {}, dict) and limits:
        res["requests"] = {**limits, **(requests or {})}


def pod_spec_quantities(spec: Any, *, requests_from_limits: bool) -> None:
    """Containers' limits and requests, pod-level resources, overhead and emptyDir size limits. A Pod's (not a
    template's) container request defaults to its limit."""
    if not isinstance(spec, dict):
        return
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            _container(c, requests_from_limits)
    _canonical_list(spec.get("overhead"))
    pod_resources = spec.get("resources")
    if isinstance(pod_resources, dict):
        _canonical_list(pod_resources.get("limits"))
        _canonical_list(pod_resources.get("requests"))
    for volume in spec.get("volumes") or []:
        empty_dir = volume.get("emptyDir") if isinstance(volume, dict) else None
        if isinstance(empty_dir, dict) and empty_dir.get("sizeLimit") is not None:
            empty_dir["sizeLimit"] = canonical(empty_dir["sizeLimit"], milli=False)


def pod_status_quantities(status: Any) -> None:
    """What a kubelet reports per container: allocated resources and the resources in effect."""
    if not isinstance(status, dict):
        return
    for field in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(field) or []:
            if not isinstance(cs, dict):
                continue
            _canonical_list(cs.get("allocatedResources"))
            res = cs.get("resources")
            if isinstance(res, dict):
                _canonical_list(res.get("limits"))
                _canonical_list(res.get("requests"))


def node_status_quantities(status: Any) -> None:
    """Capacity and allocatable; an absent allocatable is the capacity (API defaulting)."""
    if not isinstance(status, dict):
        return
    _canonical_list(status.get("capacity"))
    _canonical_list(status.get("allocatable"))
    if isinstance(status.get("capacity"), dict) and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])
