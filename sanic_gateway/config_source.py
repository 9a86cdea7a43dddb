"""gateway.yaml turned into a Gateway, and again on a reload, with fresh plugin code.

Building imports the plugins. A reload must see their edited files, so the modules a build
imported from outside the Python installation (the user's plugin modules, their own helper
modules, editable installs) are forgotten before the next build; libraries from
site-packages and the standard library stay (some cannot be imported twice). The same list
tells `run --reload` which files to watch.
"""

from __future__ import annotations

import importlib
import sys
import sysconfig
from pathlib import Path

from . import logs
from .config import ConfigError, load_config
from .gateway import Gateway

_INSTALLED = tuple({str(Path(p).resolve()) for key in ("stdlib", "platstdlib", "purelib",
                                                         "platlib")
                    if (p := sysconfig.get_paths().get(key))})


class ConfigSource:
    def __init__(self, path: Path, *, dev: bool = False, log_format: str | None = None,
                 access_log: bool = False) -> None:
        self.path, self.dev = path, dev
        # the command line's --log-format and --access-log, which override the file's keys
        self.log_format, self.access_log = log_format, access_log
        self.modules: dict[str, str] = {}  # plugin module name -> its file

    def build(self) -> Gateway:
        """A Gateway for the file as it is now; ConfigError lists every problem found."""
        for name in self.modules:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        before = set(sys.modules)
        try:
            config = load_config(self.path, keep_going=True)
            if not config.issues:  # else Gateway.build raises: nothing is logged nor served
                logs.register_config_secrets(config.data)
            if (self.log_format is None and not config.issues
                    and config.data["server"]["log_format"] != "text"):
                logs.configure(self.dev, fmt=config.data["server"]["log_format"])
            gateway = Gateway.build(config, dev=self.dev)
            gateway.access_log = gateway.access_log or self.access_log
            return gateway
        finally:
            found = {name: file for name in set(sys.modules) - before
                     if (file := _user_file(sys.modules.get(name)))}
            self.modules.update(found)

    def files(self) -> list[Path]:
        """gateway.yaml and the plugin files the last build imported."""
        return [self.path.resolve(), *sorted({Path(f) for f in self.modules.values()})]


def _user_file(module: object) -> str | None:
    file = getattr(module, "__file__", None)
    name = getattr(module, "__name__", "")
    if not file or name == "sanic_gateway" or name.startswith("sanic_gateway."):
        return None
    resolved = str(Path(file).resolve())
    return None if resolved.startswith(_INSTALLED) else resolved


def error_lines(exc: ConfigError, path: str) -> list[str]:
    """What `check` prints for an invalid configuration: one line per problem, then its
    warnings (as `check` prints them when the file is valid), then a count."""
    count = f"{len(exc.issues)} error(s)"
    if exc.warnings:
        count += f" and {len(exc.warnings)} warning(s)"
    return [*str(exc).splitlines(), *(f"warning: {w}" for w in exc.warnings),
            f"{count} in {path}"]
