"""Find and check the protocols gateway.yaml enables under `server.protocols`.

Built-in ones (websocket, mqtt) are loaded by module reference like any custom one, so they
go through the same contract check. Custom ones come from `module:`, `path:` (a folder with a
manifest.json, as plugins) or `entry_point:` (group `sanic_gateway.protocols`).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
from typing import Any

from ..config import Config, ConfigIssue
from ..plugins.loader import _from_module, _from_path, _LoadError
from .base import LoadedProtocol, check_methods

ENTRY_POINT_GROUP = "sanic_gateway.protocols"
BUILTIN = {
    "websocket": "sanic_gateway.protocols.websocket:WebSocketProtocol",
    "mqtt": "sanic_gateway.protocols.mqtt:MqttProtocol",
}
SOURCES = ("module", "path", "entry_point")


def load_protocols(config: Config, issues: list[ConfigIssue]) -> list[LoadedProtocol]:
    """Every enabled protocol but HTTP (served by the Sanic app itself), instantiated and
    checked; problems are appended to `issues`."""
    loaded = []
    for name, spec in config.data["server"]["protocols"].items():
        if name == "http" or not spec.get("enabled", True):
            continue
        where = ("server", "protocols", name)
        key = next((k for k in SOURCES if spec.get(k)), None)
        try:
            if name in BUILTIN and key is None:
                target, source = _from_module(BUILTIN[name]), BUILTIN[name]
            elif key == "module":
                target, source = _from_module(spec["module"]), spec["module"]
            elif key == "path":
                target, source, _ = _from_path(config, name, spec["path"])
            elif key == "entry_point":
                target, source = _from_entry_point(spec["entry_point"])
            else:
                continue  # the config checks reported it
        except _LoadError as exc:
            issues.append(config.issue((*where, key) if key else where, exc.message,
                                       exc.suggestion))
            continue
        try:
            obj = target() if inspect.isclass(target) else target
        except Exception as exc:
            issues.append(config.issue(where, f"cannot instantiate {source}: "
                                       f"{type(exc).__name__}: {exc}"))
            continue
        problems, legacy = check_methods(obj)
        for problem in problems:
            issues.append(config.issue(where, f"protocol {source}: {problem}"))
        if not problems:
            loaded.append(LoadedProtocol(name, obj, source, dict(spec), legacy))
    return loaded


def _from_entry_point(name: str) -> tuple[Any, str]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in found:
        if ep.name == name:
            try:
                return ep.load(), f"entry point {name} ({ep.value})"
            except Exception as exc:
                raise _LoadError(f"cannot load entry point {name!r} ({ep.value}): "
                                 f"{type(exc).__name__}: {exc}") from exc
    names = sorted(ep.name for ep in found)
    close = difflib.get_close_matches(name, names, n=1)
    raise _LoadError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r} "
                     f"(installed: {', '.join(names) or 'none'})", close[0] if close else None)
