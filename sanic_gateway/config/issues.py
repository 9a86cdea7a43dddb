"""The error types of configuration: one `ConfigIssue` per problem, all raised together.

A user fixing gateway.yaml wants every problem at once, each pointing at a file, a line and a
dotted path, so issues are plain data that any layer (validation, plugin loading) can produce.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

KeyPath = tuple[Any, ...]


def dotted(path: Sequence[Any]) -> str:
    """`("plugins", "audit", "routes", 0, "url")` -> `plugins.audit.routes[0].url`."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: Any, candidates: Iterable[Any]) -> str | None:
    """The closest candidate to a misspelt name, or None when nothing is close enough."""
    names = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return close[0] if close else None


def by_line(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    """Sorted by line, stable, those without a line last."""
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))


@dataclass
class ConfigIssue:
    """One problem in the configuration, printed as `file:line: dotted.path: message`."""

    file: str
    line: int | None
    path: KeyPath
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        at = dotted(self.path)
        text = f"{where}: {at}: {self.message}" if at else f"{where}: {self.message}"
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


class ConfigError(Exception):
    """Every problem found in a configuration, in the order of the file's lines (those without
    a line last); `str()` gives one issue per line. `warnings` are what `check` would print
    besides (an event never fired, ...): the user fixing the file wants them too."""

    def __init__(self, issues: list[ConfigIssue],
                 warnings: list[ConfigIssue] | None = None) -> None:
        self.issues = by_line(issues)
        self.warnings = by_line(warnings or [])
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
