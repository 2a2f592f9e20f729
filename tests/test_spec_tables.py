"""The product and the ECI simulator each write ECI's documented tables down on their own (eci-notes.md "Specs",
"Limits", "Mount a ConfigFile volume"); they stay independent, and this test catches a typo in either by comparing
them entry by entry, and by checking that both round a requested size the same way."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vk_provider.eci import limits as product_limits
from vk_provider.eci import logs as product_logs
from vk_provider.eci import names as product_names
from vk_provider.eci import specs as product_specs
from vk_provider.eci import translate as product_translate
from vk_provider.errors import InvalidInput
from vk_sandbox.eci import actions as sim_actions
from vk_sandbox.eci import specs as sim_specs
from vk_sandbox.eci import translate as sim_translate
from vk_sandbox.eci.wire import ApiError

ALL_CPUS = sorted(set(product_specs.SPEC_TABLE) | set(sim_specs.SPECS))


@pytest.mark.parametrize("cpu", ALL_CPUS)
def test_both_spec_tables_list_the_same_memory_for_each_vcpu(cpu: float) -> None:
    assert cpu in product_specs.SPEC_TABLE, f"{cpu} vCPU only in the simulator's table"
    assert cpu in sim_specs.SPECS, f"{cpu} vCPU only in the product's table"
    product = tuple(float(m) for m in product_specs.SPEC_TABLE[cpu])
    sim = tuple(float(m) for m in sim_specs.SPECS[cpu])
    assert product == sim, f"{cpu} vCPU: product {product}, simulator {sim}"


def test_both_tables_are_sorted_and_have_no_duplicates() -> None:
    for name, table in (("product", product_specs.SPEC_TABLE), ("simulator", sim_specs.SPECS)):
        assert list(table) == sorted(table), name
        for cpu, mems in table.items():
            assert list(mems) == sorted(set(mems)), f"{name}: {cpu} vCPU {mems}"


def test_both_default_to_the_same_spec() -> None:
    assert tuple(map(float, product_specs.DEFAULT_SPEC)) == tuple(map(float, sim_specs.DEFAULT_SPEC)) == (2.0, 4.0)


def test_the_default_spec_is_listed() -> None:
    cpu, mem = product_specs.DEFAULT_SPEC
    assert mem in product_specs.SPEC_TABLE[cpu] and mem in sim_specs.SPECS[cpu]


def sim_round(cpu: float, mem: float) -> tuple[float, float] | None:
    try:
        return sim_specs.round_spec(cpu, mem)
    except ApiError:
        return None


def product_round(cpu: float, mem: float) -> tuple[float, float] | None:
    try:
        return product_specs.round_to_spec(cpu, mem)
    except InvalidInput:
        return None


@pytest.mark.parametrize(
    ("cpu", "mem"),
    [(0, 0), (0.1, 0), (0, 3), (1, 1), (2, 16), (2, 17), (12, 10), (50, 1), (64, 512), (64, 513), (65, 1)]
    + [(c, m) for c, ms in product_specs.SPEC_TABLE.items() for m in ms],
)
def test_both_round_listed_and_boundary_sizes_alike(cpu: float, mem: float) -> None:
    assert product_round(cpu, mem) == sim_round(cpu, mem)


@given(
    st.floats(min_value=0, max_value=70, allow_nan=False),
    st.floats(min_value=0, max_value=600, allow_nan=False),
)
def test_both_round_any_size_alike(cpu: float, mem: float) -> None:
    product, sim = product_round(cpu, mem), sim_round(cpu, mem)
    if product != sim:
        # The product forgives 1e-9 of float noise (a quantity like "0.1" summed three times); nothing else differs.
        assert sim is not None and product is not None
        assert product[0] <= sim[0] and product[1] <= sim[1]
        assert math.isclose(product[0], cpu, abs_tol=1e-9) or math.isclose(product[1], mem, abs_tol=1e-9)


def test_both_enforce_the_same_group_limits() -> None:
    assert product_translate.MAX_CONTAINERS == sim_translate.MAX_CONTAINERS == 20
    assert product_limits.MAX_VOLUMES == sim_translate.MAX_VOLUMES == 20
    assert product_limits.MAX_CONFIG_FILE_BYTES == sim_translate.MAX_CONFIG_FILE_BYTES == 32 * 1024
    assert product_limits.MAX_CONFIG_VOLUME_BYTES == sim_translate.MAX_CONFIG_VOLUME_BYTES == 60 * 1024


def test_both_cap_a_log_read_alike() -> None:
    assert product_logs.MAX_LIMIT_BYTES == sim_actions.MAX_LOG_BYTES == 1 << 20


@given(st.text(alphabet="abcXYZ019-._/ é", min_size=1, max_size=300), st.text(min_size=1, max_size=80))
def test_every_group_name_the_product_makes_is_one_the_simulator_accepts(name: str, namespace: str) -> None:
    group = product_names.group_name(namespace, name)
    assert sim_translate.NAME_RE.fullmatch(group), group
    assert len(group) <= product_names.MAX_NAME
