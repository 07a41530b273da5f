"""Type checks shared by the constructors' argument validation."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_finite_number(value: Any) -> bool:
    """Return whether value is a finite real number (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(value))


def is_integer(value: Any) -> bool:
    """Return whether value is an integer (bool excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_pair(value: Any) -> bool:
    """Return whether value is a sequence of exactly two finite numbers."""
    try:
        items = list(value)
    except TypeError:
        return False
    return len(items) == 2 and all(is_finite_number(item) for item in items)


def validate_action(action: Any, size: int) -> np.ndarray:
    """Return the action as a float64 vector of length size, or raise ValueError.

    A NaN or infinite entry would spread into the simulated state without an error, so it
    is rejected here, before any simulation.
    """
    array = np.asarray(action, dtype=np.float64)
    if array.size != size:
        raise ValueError(f"action has {array.size} values, expected {size}: {action!r}")
    array = array.reshape(size)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"action contains NaN or infinite values: {action!r}")
    return array
