"""Durations and sizes as people write them (`500ms`, `1h30m`, `1MB`), read into numbers.

Every time in gateway.yaml is float seconds and every size int bytes once loaded, so the rest of the
gateway never parses units. Errors are ValueErrors whose message is meant for the user as is.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_WHOLE = re.compile(r"(?:\s*(?:\d+(?:\.\d+)?|\.\d+)\s*(?:ms|s|m|h|d))+\s*", re.IGNORECASE)

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|(b))?\s*", re.IGNORECASE)


def _is_number(value: object) -> bool:
    # bool is an int in Python, but `true` is never what someone meant by a time or a size.
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: object, *, allow_unlimited: bool = False) -> float:
    """Seconds from a number (seconds) or a string like `5s`, `500ms`, `1.5s`, `2m`, `1h`, `1d`.

    With `allow_unlimited`, -1 (or "-1") is accepted and kept as -1.0, meaning "no limit".
    """
    bad = ValueError(f"invalid duration {value!r} (use e.g. 500ms, 5s, 1h)")
    if allow_unlimited and ((value == -1 and not isinstance(value, bool)) or value == "-1"):
        return -1.0
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and _DURATION_WHOLE.fullmatch(value):
        seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in
                      _DURATION_PART.findall(value))
    elif isinstance(value, str) and value.strip():
        try:
            seconds = float(value.strip())
        except ValueError:
            raise bad from None
    else:
        raise bad
    if seconds < 0 or not math.isfinite(seconds):
        raise bad
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number (bytes) or a string like `100B`, `512KB`, `10kb`, `1MB`, `1GB`.

    Units are 1024-based and case-insensitive; `K`, `KB` and `KiB` mean the same.
    """
    bad = ValueError(f"invalid size {value!r} (use e.g. 512KB, 1MB, 1GB)")
    if _is_number(value):
        number, factor = float(value), 1  # type: ignore[arg-type]
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        number = float(match.group(1))
        factor = _SIZE_UNITS[(match.group(2) or match.group(3) or "").lower()]
    else:
        raise bad
    if number < 0 or not math.isfinite(number):
        raise bad
    return int(number * factor)
