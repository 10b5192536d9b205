"""Parsing of human-friendly durations ("500ms", "10s", "5m", "1h").

Durations appear in decorator arguments (``timeout=``, ``backoff=``). They are
accepted either as a string made of a non-negative decimal number followed by
one unit (``ms``, ``s``, ``m`` or ``h``), or as a plain number of seconds.
Everything is normalised to a ``float`` number of seconds.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "format_seconds"]

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)\s*$")


def parse_duration(value: object, *, field: str, allow_zero: bool = False) -> float:
    """Return ``value`` as a number of seconds.

    :param value: a duration string such as ``"500ms"``, ``"10s"``, ``"5m"``,
        ``"1h"`` (decimals such as ``"1.5s"`` are allowed), or an ``int`` /
        ``float`` number of seconds.
    :param field: name of the argument being parsed, used in error messages.
    :param allow_zero: accept a zero duration (e.g. a retry backoff of ``0``).
    :raises ValueError: if the value is not a valid, finite, positive (or
        non-negative when ``allow_zero``) duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a duration such as '10s' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"{field}: invalid duration {value!r}; expected a number followed by one of "
                "'ms', 's', 'm', 'h' (e.g. '500ms', '10s', '5m', '1h') or a number of seconds"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(
            f"{field}: expected a duration such as '10s' or a number of seconds, got {type(value).__name__}"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"{field}: duration must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{field}: duration must be {bound}, got {value!r}")
    return seconds


def format_seconds(seconds: float) -> str:
    """Format a number of seconds compactly for messages (``300 -> "300s"``, ``0.5 -> "0.5s"``)."""
    return f"{seconds:g}s"
