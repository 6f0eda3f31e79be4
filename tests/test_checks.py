"""tripletlib.checks: the shared argument checks."""

import math

import numpy as np
import pytest

from tripletlib import checks


@pytest.mark.parametrize("value", [0.0, 0.5, 1, 1.0, np.float64(0.25)])
def test_a_fraction_is_a_finite_number_in_zero_one(value):
    assert checks.is_fraction(value)


@pytest.mark.parametrize("value", [-0.1, 1.01, math.nan, math.inf, True, "0.5", None])
def test_anything_else_is_no_fraction(value):
    assert not checks.is_fraction(value)


def test_integer_returns_an_int_at_or_above_the_minimum():
    assert checks.integer(3, "k") == 3 and type(checks.integer(np.int64(3), "k")) is int
    assert checks.integer(0, "seed", 0) == 0
    assert checks.integer(None, "steps", allow_none=True) is None
    assert checks.integer(2.0, "k", whole_float=True) == 2


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        (0, {}, "k must be an integer >= 1, got 0"),
        (True, {}, "k must be an integer >= 1, got True"),
        (2.0, {}, "k must be an integer >= 1, got 2.0"),
        (2.5, {"whole_float": True}, "k must be an integer >= 1, got 2.5"),
        (-1, {"minimum": 0}, "k must be an integer >= 0, got -1"),
        (None, {}, "k must be an integer >= 1, got None"),
        ("3", {"allow_none": True}, "k must be an integer >= 1 or None, got '3'"),
    ],
)
def test_integer_names_the_value_and_what_was_expected(value, options, message):
    with pytest.raises(ValueError) as raised:
        checks.integer(value, "k", **options)
    assert str(raised.value) == message
