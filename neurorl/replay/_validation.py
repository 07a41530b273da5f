"""Argument checks shared by the replay classes.

Every check raises ValueError naming the argument, the value received and what to pass instead.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Return whether value is an integer and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """Return whether value is a real number and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def positive_int_problem(name: str, value: Any) -> str | None:
    """Return a problem description unless value is an int >= 1."""
    if is_int(value) and value >= 1:
        return None
    return f"{name} must be an int >= 1, got {value!r}"


def nonnegative_int_problem(name: str, value: Any) -> str | None:
    """Return a problem description unless value is an int >= 0."""
    if is_int(value) and value >= 0:
        return None
    return f"{name} must be an int >= 0, got {value!r}"


def choice_problem(name: str, value: Any, choices: tuple[str, ...]) -> str | None:
    """Return a problem description unless value is one of choices."""
    if isinstance(value, str) and value in choices:
        return None
    options = ", ".join(repr(choice) for choice in choices)
    return f"{name} must be one of {options}, got {value!r}"


def raise_problems(owner: str, problems: list[str | None]) -> None:
    """Raise one ValueError that lists every problem found, or return when there is none."""
    found = [problem for problem in problems if problem is not None]
    if not found:
        return
    if len(found) == 1:
        raise ValueError(f"invalid {owner} argument: {found[0]}")
    listing = "\n  - ".join(found)
    raise ValueError(f"invalid {owner} arguments ({len(found)} problems):\n  - {listing}")


def first_non_finite(name: str, array: np.ndarray) -> str:
    """Describe the first NaN or inf entry of array, for an error message."""
    bad = np.argwhere(~np.isfinite(array))
    where = tuple(int(i) for i in bad[0]) if bad.size else ()
    value = array[where] if where else array
    location = f" at index {where if len(where) > 1 else where[0]}" if where else ""
    return f"{name} contains a non-finite value ({float(value)}){location}"


def as_flag(name: str, value: Any) -> bool:
    """Convert a terminated or truncated flag to bool, accepting bool, numpy bool and 0/1."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.bool_:
        return bool(value)
    if is_int(value) and value in (0, 1):
        return bool(value)
    raise ValueError(
        f"{name} must be a bool (or 0/1), got {value!r}; pass the flag returned by env.step"
    )
