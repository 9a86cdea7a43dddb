"""`sanic-gateway run --reload` (development): restart when gateway.yaml or a plugin file changes.

The server runs as a child process (`run` without `--reload`). The files watched (with
watchfiles) are gateway.yaml and every file the plugins were imported from. On a change, the
configuration is first checked in a fresh process, exactly as `check` does (same error text):
valid, the server is stopped gracefully and started again, so every plugin module is imported
anew; invalid, the errors are shown and the running server is left alone until the next
change. A server that exits by itself (a plugin's `init` failing, a port in use) is not
started again before a change either.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("sanic_gateway.reload")

STOP_TIMEOUT = 30.0  # seconds for the server to stop gracefully before it is killed


def run_with_reload(config: str, run_args: list[str]) -> int:
    """Serve `run_args` (a `run` command line) until SIGINT or SIGTERM, restarting on edits."""
    import watchfiles

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    server: subprocess.Popen[bytes] | None = None
    watched = {Path(config).resolve()}
    try:
        valid, files = check(config)
        watched |= files
        if valid:
            server = start(run_args)
        else:
            log.error("waiting for a change to %s or a plugin file", config)
        signal.signal(signal.SIGHUP, lambda *_: server and server.send_signal(signal.SIGHUP))
        while True:
            roots = _roots(watched)
            names = {str(p) for p in watched}

            def relevant(_change: Any, path: str, names: set[str] = names) -> bool:
                return path in names

            for changes in watchfiles.watch(*roots, watch_filter=relevant,
                                            yield_on_timeout=True, rust_timeout=500):
                if server is not None and server.poll() is not None:
                    log.error("the server exited (code %d): waiting for a change to %s or a "
                              "plugin file", server.returncode, config)
                    server = None
                if not changes:
                    continue
                shown = ", ".join(sorted({os.path.relpath(p) for _, p in changes}))
                log.info("%s changed: checking the configuration", shown)
                valid, files = check(config)
                if valid:
                    stop(server)
                    server = start(run_args)
                elif server is not None:
                    log.error("still serving the previous configuration; waiting for a change")
                else:
                    log.error("waiting for a change to %s or a plugin file", config)
                if files - watched:
                    watched |= files
                    break  # watch the new files' folders too
    except KeyboardInterrupt:
        return stop(server)


def check(config: str) -> tuple[bool, set[Path]]:
    """Is `config` valid (its errors printed as `check` prints them), and which files did
    building it import? In a new process: it imports the current plugin files."""
    done = subprocess.run([sys.executable, "-m", "sanic_gateway.reloader", config],
                          stdout=subprocess.PIPE, check=False)
    try:
        files = {Path(f) for f in json.loads(done.stdout.splitlines()[-1])}
    except (ValueError, IndexError):  # a plugin printing at import time
        files = set()
    return done.returncode == 0, files


PARENT_ENV = "SANIC_GATEWAY_PARENT_PID"  # the server stops when this process dies


def start(run_args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sanic_gateway", *run_args],
                            env={**os.environ, PARENT_ENV: str(os.getpid())})


def stop(server: subprocess.Popen[bytes] | None) -> int:
    """Stop the server gracefully (as SIGTERM does); its exit code."""
    if server is None:
        return 0
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return max(server.returncode, 0)


def _roots(files: set[Path]) -> list[Path]:
    """The folders holding `files`, none inside another."""
    folders = sorted({f.parent for f in files}, key=lambda p: len(p.parts))
    roots: list[Path] = []
    for folder in folders:
        if not any(folder.is_relative_to(r) for r in roots):
            roots.append(folder)
    return [r for r in roots if r.is_dir()]


def _validate(config: str) -> int:
    """In the checking process: `check`'s error lines on stderr, the files as JSON on stdout."""
    from . import logs
    from .config import ConfigError
    from .config_source import ConfigSource, error_lines

    logs.configure(False)
    logging.getLogger().setLevel(logging.ERROR)  # the server itself shows the warnings
    logging.getLogger("sanic_gateway").setLevel(logging.ERROR)
    source = ConfigSource(Path(config))
    code = 0
    try:
        source.build()
    except ConfigError as exc:
        print("\n".join(error_lines(exc, config)), file=sys.stderr, flush=True)
        code = 2
    print(json.dumps([str(f) for f in source.files()]), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(_validate(sys.argv[1]))
