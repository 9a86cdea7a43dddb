"""The part of an invalid gateway.yaml that can still be checked further.

`check` should show every problem in one run, including those only importing the plugins
reveals (a misspelt function, a module that does not import). Those checks need a normalized
document, so each value an issue points at is replaced by its default, and an entry with no
default (a plugin, a custom protocol, a role, an unknown key) is left out: its own problems
are already reported, and the rest of the file is checked as if it were right.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .issues import ConfigIssue, KeyPath
from .validate import validate

_MISSING = object()


def defaults() -> dict[str, Any]:
    """The normalized document of an empty gateway.yaml."""
    document, _ = validate({}, lambda *args, **kwargs: None)
    return document


def checkable(document: dict[str, Any], issues: Iterable[ConfigIssue]) -> dict[str, Any] | None:
    """A copy of `document` without what `issues` point at; None if nothing is left to check
    (the file is not a mapping, or does not parse)."""
    clean, base = copy.deepcopy(document), defaults()
    for issue in issues:
        if not issue.path:
            return None
        _forget(clean, base, issue.path)
    return clean


def _forget(clean: dict[str, Any], base: dict[str, Any], path: KeyPath) -> None:
    # the longest prefix of `path` that has a default: its value is reset, or the entry below
    # it (which has none) is removed
    known = 0
    while known < len(path) and _at(base, path[:known + 1]) is not _MISSING:
        known += 1
    if known == 0:
        clean.pop(path[0], None)
        return
    parent = _at(clean, path[:known - 1])
    if known < len(path):
        holder = _at(clean, path[:known])
        if isinstance(holder, dict):
            holder.pop(path[known], None)
            return
    if isinstance(parent, dict):
        parent[path[known - 1]] = copy.deepcopy(_at(base, path[:known]))
    else:  # a section that is not even a mapping
        clean[path[0]] = copy.deepcopy(base[path[0]])


def _at(document: Any, path: KeyPath) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document
