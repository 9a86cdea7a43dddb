"""Resolve the function names gateway.yaml gives and check they can be called as promised."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..config.issues import did_you_mean

# kind: (the call the gateway makes, the positional argument counts it accepts)
CALLS: dict[str, tuple[str, tuple[int, ...]]] = {
    "hook": ("fn(payload, event)", (2, 1)),
    "pipe": ("fn(payload, event)", (2, 1)),
    "action": ("fn(request)", (1,)),
    "init": ("init(config, context)", (2, 1, 0)),
}


class FunctionError(Exception):
    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def public_callables(obj: Any) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]


def missing(obj: Any, source: str, fname: str) -> FunctionError:
    """No `fname` in the plugin: the closest name, else the names there are."""
    names = public_callables(obj)
    close = did_you_mean(fname, names)
    message = f"no function {fname!r} in {source}"
    if close is None:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        message += f" (its functions: {shown or 'none'})"
    return FunctionError(message, close)


def resolve(obj: Any, source: str, fname: str, kind: str,
            arg_counts: tuple[int, ...] | None = None, call: str | None = None,
            ) -> tuple[Callable[..., Any], int]:
    """The bound function `fname` of `obj` and how many positional arguments to pass it."""
    default_call, default_counts = CALLS.get(kind, ("", ()))
    call = call or default_call
    counts = arg_counts or default_counts
    fn = getattr(obj, fname, None)
    if fn is None:
        raise missing(obj, source, fname)
    if not callable(fn):
        raise FunctionError(f"{fname!r} in {source} is a {type(fn).__name__}, not a function")
    if not counts:  # the caller checks the signature itself
        return fn, 0
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn, counts[0]  # builtins without a signature: trust the declaration
    for count in counts:
        try:
            signature.bind(*([None] * count))
        except TypeError:
            continue
        return fn, count
    raise FunctionError(f"{fname}{signature} in {source} cannot be called as "
                        f"{article(kind)} {kind}: the gateway calls {call}")

