"""`load_config` and the `Config` it returns: the validated document plus where each key was.

Later stages (plugin loading, function resolution) find problems the file itself cannot show,
and must report them like validation does, at the right line: `Config.issue` is how.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .issues import ConfigError, ConfigIssue, KeyPath
from .partial import checkable
from .validate import validate
from .yaml_loader import load_yaml


class Config:
    """A validated gateway.yaml: `data` (normalized), `path`, `base_dir`, and its lines."""

    def __init__(self, data: dict[str, Any], path: str | os.PathLike[str] = "gateway.yaml",
                 lines: Mapping[KeyPath, int] | None = None) -> None:
        self.data = data
        self.path = Path(path).resolve()
        # Plugins' `module:` imports and `path:` folders are relative to the file, not the cwd.
        self.base_dir = self.path.parent
        self.file = _display_name(path)
        self.lines: dict[KeyPath, int] = dict(lines or {})
        # load_config(keep_going=True): the file's problems, left for Gateway.build to report
        # with those of the plugins (then `data` is normalized as far as it could be)
        self.issues: list[ConfigIssue] = []

    def __repr__(self) -> str:
        return f"Config({str(self.path)!r})"

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def line_of(self, path: Sequence[Any]) -> int | None:
        """The line of the key or item at `path`, else of its nearest ancestor that has one."""
        path = tuple(path)
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def issue(self, path: Sequence[Any], message: str, suggestion: str | None = None, *,
              line: int | None = None) -> ConfigIssue:
        """An issue about `path`, located in this file (at `line` if given, else found)."""
        path = tuple(path)
        return ConfigIssue(self.file, line if line is not None else self.line_of(path), path,
                           message, suggestion)

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike[str] = "gateway.yaml") -> Config:
        """Validate an in-memory document (tests, embedding); issues carry no line numbers."""
        config = cls({}, path)
        config.data = config._validated(data, [])
        return config

    def _validated(self, raw: Any, issues: list[ConfigIssue],
                   keep_going: bool = False) -> dict[str, Any]:
        document, found = validate(raw, self.issue)
        reported = {i.path for i in issues}  # e.g. an unset ${VAR}: its emptiness is no news
        issues += [i for i in found if i.path not in reported]
        if issues and not keep_going:
            raise ConfigError(issues)
        self.issues = issues
        return document

    def checkable(self) -> Config | None:
        """This file without the parts `issues` point at, to check the rest further (plugins
        imported, functions resolved); None when nothing is left to check."""
        document = checkable(self.data, self.issues)
        if document is None:
            return None
        config = Config(document, self.path, self.lines)
        config.file, config.base_dir = self.file, self.base_dir
        return config


def load_config(path: str | os.PathLike[str] = "gateway.yaml",
                env: Mapping[str, str] | None = None, *, keep_going: bool = False) -> Config:
    """Read, substitute `${VAR}` from `env` (default os.environ), validate and normalize.

    Raises ConfigError listing every problem found, never anything else for a bad file.
    With `keep_going`, a file that parses is returned with its problems in `Config.issues`
    (Gateway.build then reports them with the plugins' own).
    """
    config = Config({}, path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([config.issue((), "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([config.issue((), "is a directory, not a YAML file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([config.issue((), f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ConfigError([config.issue((), f"cannot read: {exc.strerror or exc}")]) from None
    loaded = load_yaml(text, os.environ if env is None else env, config.issue)
    if loaded.fatal:
        raise ConfigError(loaded.issues)
    config.lines = loaded.lines
    config.data = config._validated(loaded.data, loaded.issues, keep_going)
    return config


def _display_name(path: str | os.PathLike[str]) -> str:
    """The file as the user named it: relative stays relative, absolute stays absolute."""
    given = os.fspath(path)
    return given if os.path.isabs(given) else os.path.normpath(given)
