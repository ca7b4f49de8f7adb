"""Sizing rules (common/sizing.py): pure, every result rounded down to the lot, a zero reported."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.errors import InvalidOrder
from common.sizing import CapitalProportional, Fixed, Multiplier, Sized, SizingInputs, size


def test_fixed_is_the_same_quantity_everywhere_rounded_down_to_the_lot() -> None:
    assert size(Fixed(100), SizingInputs("a", lot_size=1)) == Sized(100)
    assert size(Fixed(100), SizingInputs("a", lot_size=75)) == Sized(75)  # never more than asked
    assert size(Fixed(150), SizingInputs("a", lot_size=75)) == Sized(150)


def test_multiplier_uses_the_groups_multiplier_or_an_explicit_mapping() -> None:
    assert size(Multiplier(75), SizingInputs("a", lot_size=75, multiplier=Decimal(3))) == Sized(225)
    assert size(Multiplier(10), SizingInputs("a", multiplier=Decimal("0.5"))) == Sized(5)
    explicit = Multiplier(10, {"a": 2})
    assert size(explicit, SizingInputs("a", multiplier=Decimal(5))) == Sized(20)  # the mapping wins
    assert size(explicit, SizingInputs("b", multiplier=Decimal(5))) == Sized(10)  # not named: 1


def test_capital_proportional_scales_the_base_by_margin_over_the_reference_capital() -> None:
    rule = CapitalProportional(base_quantity=100, reference_capital=200_000)
    assert rule.needs_funds
    assert size(rule, SizingInputs("a", available_margin=Decimal(500_000))) == Sized(250)
    assert size(rule, SizingInputs("a", available_margin=Decimal(50_000))) == Sized(25)
    # 100 x 350000 / 200000 = 175 units: two lots of 75, rounded down
    assert size(rule, SizingInputs("a", lot_size=75, available_margin=Decimal(350_000))) == Sized(150)


def test_a_share_under_one_lot_or_unknown_funds_is_zero_with_the_reason() -> None:
    got = size(Multiplier(75), SizingInputs("a", lot_size=75, multiplier=Decimal("0.5")))
    assert got.quantity == 0 and "37.5 units, under one lot of 75" in got.reason
    rule = CapitalProportional(1, 1_000_000)
    assert size(rule, SizingInputs("a", available_margin=Decimal(-5))).quantity == 0  # a margin call: nothing
    no_funds = size(rule, SizingInputs("a", available_margin=None))
    assert no_funds.quantity == 0 and "no funds snapshot" in no_funds.reason


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Fixed(0), "sizing.quantity"),
        (lambda: Fixed(1.5), "sizing.quantity"),  # type: ignore[arg-type]
        (lambda: Multiplier(-1), "sizing.base_quantity"),
        (lambda: Multiplier(10, {"a": 0}), "sizing.multipliers.a"),
        (lambda: CapitalProportional(1, 0), "sizing.reference_capital"),
        (lambda: CapitalProportional(1, "lots"), "sizing.reference_capital"),
        (lambda: CapitalProportional(True, 100), "sizing.base_quantity"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters_are_refused_naming_the_field(make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidOrder) as e:
        make()
    assert e.value.field == field
