"""Small checks of argument values, shared by the modules that validate what they are given."""

from __future__ import annotations

import math
from typing import Any


def is_fraction(value: Any) -> bool:
    """A finite number (not a bool) in [0, 1]: a Rank-k or mAP value."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )
