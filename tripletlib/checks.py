"""Small checks of argument values, shared by the modules that validate what they are given."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_fraction(value: Any) -> bool:
    """A finite number (not a bool) in [0, 1]: a Rank-k or mAP value."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


def integer(
    value: Any, name: str, minimum: int = 1, *, allow_none: bool = False, whole_float: bool = False
) -> int | None:
    """`value` as an int, or a ValueError naming it: an integer (not a bool; with `whole_float` a
    float such as 2.0 too) of at least `minimum`; None passes when `allow_none`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        ok = False
    elif whole_float:
        ok = isinstance(value, int | float | np.integer | np.floating) and float(value).is_integer()
    else:
        ok = isinstance(value, int | np.integer)
    if not ok or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)
