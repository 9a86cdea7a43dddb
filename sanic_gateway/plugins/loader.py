"""Find, import and instantiate the plugins gateway.yaml lists, reporting every problem at once."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from .. import __version__
from ..config import Config, ConfigIssue

log = logging.getLogger("sanic_gateway.plugins")

ENTRY_POINT_GROUP = "sanic_gateway"
NAME_CHARS = "A-Za-z0-9_-"


@dataclass
class LoadedPlugin:
    name: str
    obj: Any  # the instance (or the module) that gateway.yaml's function names refer to
    source: str  # how to name it in messages: "handlers.audit:AuditPlugin"
    spec: dict[str, Any]  # the plugin's normalized gateway.yaml section
    version: str | None = None


def load_plugins(config: Config, issues: list[ConfigIssue]) -> list[LoadedPlugin]:
    """Load each plugin of `config` in file order; problems are appended to `issues`."""
    base = str(config.base_dir)
    if base not in sys.path:
        sys.path.insert(0, base)
    loaded = []
    for name, spec in config.data.get("plugins", {}).items():
        where = ("plugins", name)
        try:
            if spec.get("module"):
                target, source, version = _from_module(spec["module"]), spec["module"], None
            elif spec.get("path"):
                target, source, version = _from_path(config, name, spec["path"])
            else:
                target, source, version = _from_entry_point(spec["entry_point"])
        except _LoadError as exc:
            key = next(k for k in ("module", "path", "entry_point") if spec.get(k))
            issues.append(config.issue((*where, key), exc.message, exc.suggestion))
            continue
        try:
            obj = target() if inspect.isclass(target) else target
        except Exception as exc:
            issues.append(config.issue(where, f"cannot instantiate {source}: "
                                       f"{type(exc).__name__}: {exc}"))
            continue
        loaded.append(LoadedPlugin(name, obj, source, spec, version))
    return loaded


class _LoadError(Exception):
    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise _LoadError(
                f"cannot import {module_name!r}: no module named {exc.name!r}") from exc
        raise _LoadError(f"cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise _LoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc


def _attribute(module: Any, attr: str, where: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=1)
        raise _LoadError(f"no {attr!r} in {where}", close[0] if close else None) from None


def _from_module(reference: str) -> Any:
    """`pkg.mod:Class` (a class, instantiated) or `pkg.mod` (the module is the plugin)."""
    module_name, _, attr = reference.partition(":")
    module = _import(module_name)
    return _attribute(module, attr, module_name) if attr else module


def _from_entry_point(name: str) -> tuple[Any, str, str | None]:
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in found:
        if ep.name == name:
            try:
                target = ep.load()
            except Exception as exc:
                raise _LoadError(f"cannot load entry point {name!r} ({ep.value}): "
                                 f"{type(exc).__name__}: {exc}") from exc
            version = ep.dist.version if ep.dist is not None else None
            return target, f"entry point {name} ({ep.value})", version
    close = difflib.get_close_matches(name, [ep.name for ep in found], n=1)
    raise _LoadError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r} "
                     f"(installed: {', '.join(sorted(ep.name for ep in found)) or 'none'})",
                     close[0] if close else None)


def _read_manifest(folder: Path) -> dict[str, Any]:
    for file_name in ("manifest.json", "manifest.yaml", "manifest.yml"):
        file = folder / file_name
        if file.is_file():
            try:
                text = file.read_text(encoding="utf-8")
                data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
            except (ValueError, yaml.YAMLError) as exc:
                raise _LoadError(f"cannot read {file}: {exc}") from exc
            if not isinstance(data, dict):
                raise _LoadError(f"{file} must hold an object with 'name' and 'gatewayVersion'")
            return data
    raise _LoadError(f"no manifest.json in {folder}")


def _check_version(required: Any, folder: Path) -> None:
    current = Version(__version__)
    if required is None:
        log.warning("plugin in %s: its manifest has no 'gatewayVersion'; taken to support "
                    "sanic-gateway %d.x", folder, current.major)
        required = f">={current.major},<{current.major + 1}"
    try:
        specifier = SpecifierSet(str(required))
    except InvalidSpecifier as exc:
        raise _LoadError(f"invalid gatewayVersion {required!r} in {folder}/manifest.json "
                         "(a PEP 440 specifier, e.g. '>=0.1,<1')") from exc
    if not specifier.contains(current, prereleases=True):
        raise _LoadError(f"the plugin in {folder} requires sanic-gateway {required}; "
                         f"this is {current}")


def _from_path(config: Config, name: str, folder_name: str) -> tuple[Any, str, str | None]:
    """A folder with manifest.json and a Python package (`__init__.py`)."""
    folder = (config.base_dir / folder_name).resolve()
    if not folder.is_dir():
        raise _LoadError(f"no folder {folder}")
    manifest = _read_manifest(folder)
    manifest_name = manifest.get("name")
    if not isinstance(manifest_name, str) or not manifest_name:
        raise _LoadError(f"{folder}/manifest.json: a 'name' is required")
    if not all(c.isascii() and (c.isalnum() or c in "_-") for c in manifest_name):
        raise _LoadError(f"{folder}/manifest.json: invalid name {manifest_name!r} "
                         f"(letters, digits, '-' and '_' only)")
    if manifest_name != name:
        log.warning("plugin %r: its manifest names it %r; gateway.yaml's name is used",
                    name, manifest_name)
    _check_version(manifest.get("gatewayVersion"), folder)
    init_file = folder / "__init__.py"
    if not init_file.is_file():
        raise _LoadError(f"no __init__.py in {folder}: a plugin folder is a Python package")
    package = f"sanic_gateway_plugins.{name.replace('-', '_')}"
    module = _exec_package(package, init_file, folder)
    reference = manifest.get("module")
    if reference:
        sub, _, attr = str(reference).partition(":")
        module = _import(f"{package}.{sub}") if sub else module
        target = _attribute(module, attr, str(reference)) if attr else module
    else:
        target = getattr(module, "Plugin", module)
    return target, f"{folder_name} ({manifest_name})", manifest.get("version")


def _exec_package(package: str, init_file: Path, folder: Path) -> Any:
    if "sanic_gateway_plugins" not in sys.modules:
        namespace = importlib.util.module_from_spec(
            importlib.machinery.ModuleSpec("sanic_gateway_plugins", None, is_package=True))
        namespace.__path__ = []
        sys.modules["sanic_gateway_plugins"] = namespace
    spec = importlib.util.spec_from_file_location(
        package, init_file, submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[package]
        raise _LoadError(f"cannot import {init_file}: {type(exc).__name__}: {exc}") from exc
    return module
