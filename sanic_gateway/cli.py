"""`sanic-gateway run`, `check`, `new` and `vault`.

Exit codes: 0 stopped normally, 1 a plugin's `init` raised, 2 a usage, configuration or
startup error (port in use, storage that cannot be opened, ...). Every error is one line
(or one line per config problem), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from . import __version__, logs
from .app import EXIT_CONFIG
from .config import ConfigError
from .config_source import ConfigSource, error_lines
from .gateway import Gateway

log = logging.getLogger("sanic_gateway")

BACKLOG = 1024


class StartupError(Exception):
    """Cannot serve: the message is the one line the user sees."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1 worker is needed")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sanic-gateway",
        description="A declarative gateway: gateway.yaml served by Sanic, with Kuzzle's API.",
        epilog="Exit codes: 0 stopped normally; 1 a plugin's init failed; 2 usage, "
               "configuration or startup error.")
    parser.add_argument("-V", "--version", action="version",
                        version=f"sanic-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", help="start the server",
        description="Load gateway.yaml, start every plugin and serve until SIGTERM or Ctrl-C.")
    run.add_argument("--config", default="gateway.yaml", metavar="PATH",
                     help="the configuration file (default: ./gateway.yaml)")
    run.add_argument("--host", help="overrides server.host")
    run.add_argument("--port", type=_port, help="overrides server.port (default 7512)")
    run.add_argument("--workers", type=_workers, metavar="N", help="overrides server.workers")
    run.add_argument("--dev", action="store_true",
                     help="debug logs, access log, stack traces in error responses")
    run.add_argument("--reload", action="store_true",
                     help="restart when gateway.yaml or a plugin file it loads changes "
                          "(development)")
    run.add_argument("--access-log", action="store_true",
                     help="log a line per request (overrides server.access_log)")
    run.add_argument("--log-format", choices=("text", "json"),
                     help="text, or json: one JSON object per line (overrides "
                          "server.log_format)")
    check = sub.add_parser(
        "check", help="validate gateway.yaml and every plugin, then exit",
        description="Validate gateway.yaml, import every plugin and resolve every function it "
                    "names, without starting anything; print a summary.")
    check.add_argument("--config", default="gateway.yaml", metavar="PATH",
                       help="the configuration file (default: ./gateway.yaml)")
    new = sub.add_parser(
        "new", help="write a new plugin or protocol, with its test",
        description="Write a commented module and a pytest file that passes as written, and "
                    "print the gateway.yaml block (or add it with --add). Existing files are "
                    "never overwritten.")
    new.add_argument("kind", choices=("plugin", "protocol"), help="what to write")
    new.add_argument("name", metavar="NAME",
                     help="its name in gateway.yaml, also the module's (letters, digits, "
                          "'_', '-'; '-' becomes '_' in the file name)")
    new.add_argument("--dir", default=".", metavar="DIR",
                     help="where to write the module and its test (default: .)")
    new.add_argument("--add", action="store_true",
                     help="add the block to gateway.yaml instead of printing it (the file's "
                          "comments and layout are kept)")
    new.add_argument("--config", default="gateway.yaml", metavar="PATH",
                     help="the gateway.yaml --add edits (default: ./gateway.yaml)")
    from .vault_cli import add_parser as add_vault

    add_vault(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    if args.command == "new":
        return _new(args)
    if args.command == "vault":
        from .vault_cli import run as run_vault

        return run_vault(args)
    dev = getattr(args, "dev", False)
    log_format = getattr(args, "log_format", None)
    logs.configure(dev, fmt=log_format or "text")
    path = Path(args.config)
    if not path.exists():
        print(f"{args.config}: file not found (looked for {path.resolve()}); "
              "pass --config PATH", file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "reload", False):
        from .reloader import run_with_reload

        return run_with_reload(args.config, [a for a in (argv or sys.argv[1:])
                                             if a != "--reload"])
    source = ConfigSource(path, dev=dev, log_format=log_format,
                          access_log=getattr(args, "access_log", False))
    try:
        gateway = source.build()
    except ConfigError as exc:
        print("\n".join(error_lines(exc, args.config)), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        try:
            print(gateway.summary(), flush=True)
        except BrokenPipeError:  # `check | head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return _run(args, gateway, source)


def _new(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, new, summary

    try:
        written = new(args.kind, args.name, Path(args.dir), add=args.add,
                      config=Path(args.config))
    except ScaffoldError as exc:
        print(f"sanic-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"sanic-gateway: cannot write: {exc.strerror or exc} ({exc.filename})",
              file=sys.stderr)
        return EXIT_CONFIG
    print(summary(args.kind, written))
    return 0


def _run(args: argparse.Namespace, gateway: Gateway, source: ConfigSource) -> int:
    os.environ.setdefault("SANIC_IGNORE_PRODUCTION_WARNING", "true")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the supervisor handles it
    server = gateway.config.data["server"]
    host = args.host or server["host"]
    port = args.port if args.port is not None else server["port"]
    workers = args.workers or server["workers"]
    raise_open_files_limit(server["max_connections"])
    try:
        check_protocol_ports(server, host)
        sock = bind(host, port)
    except StartupError as exc:
        print(f"sanic-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    from .reloader import PARENT_ENV
    from .workers import Supervisor, die_with_parent

    if parent := os.environ.pop(PARENT_ENV, ""):  # run by `--reload`: end with it
        die_with_parent(int(parent))
    previous = gateway

    def rebuild() -> tuple[Gateway, int] | None:
        nonlocal previous
        built = _rebuild(args, source, previous, (bound_host, bound_port))
        if built is not None:
            previous = built[0]
        return built

    try:
        return Supervisor(gateway, sock, url, workers, rebuild).run()
    finally:
        sock.close()


def _rebuild(args: argparse.Namespace, source: ConfigSource, previous: Gateway,
             bound: tuple[str, int]) -> tuple[Gateway, int] | None:
    """SIGHUP: gateway.yaml again, checked as `check` does; None (errors logged) when it
    cannot be served. The listening socket stays: a changed host or port is only reported."""
    try:
        gateway = source.build()
    except ConfigError as exc:
        for line in error_lines(exc, args.config):
            (log.warning if line.startswith("warning: ") else log.error)("%s", line)
        log.error("reload refused: the previous configuration is still served")
        return None
    server, before = gateway.config.data["server"], previous.config.data["server"]
    if (args.host is None and server["host"] != before["host"]) or (
            args.port is None and server["port"] != before["port"]):
        log.warning("server.host or server.port changed: still listening on %s:%d until "
                    "the server is restarted", *bound)
    old_ports = {spec.get("port") for spec in (before.get("protocols") or {}).values()
                 if isinstance(spec, dict)}
    added = {name: spec for name, spec in (server.get("protocols") or {}).items()
             if isinstance(spec, dict) and spec.get("port") not in old_ports}
    try:
        check_protocol_ports({"protocols": added}, args.host or server["host"])
    except StartupError as exc:
        log.error("reload refused: %s", exc)
        return None
    return gateway, args.workers or server["workers"]


def raise_open_files_limit(connections: int) -> None:
    """Each connection is an open file: raise the soft limit towards the hard one so that
    `server.max_connections` can be reached (as nginx's worker_rlimit_nofile), and say so
    when even the hard limit is lower."""
    import resource

    wanted = (connections or 10_000) + 256  # storage, protocols, logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        print("sanic-gateway: warning: "
              f"open files limit is {soft}: fewer than server.max_connections ({connections}) "
              "connections can be served; raise it (ulimit -n) or lower server.max_connections",
              file=sys.stderr)


def check_protocol_ports(server: dict[str, Any], host: str) -> None:
    """Protocols with a port of their own (MQTT, custom ones with a `port:` option) listen with
    SO_REUSEPORT so that every worker serves it; that would also let a second gateway share
    the port silently. So each is first bound here alone, once: taken means StartupError."""
    for name, spec in (server.get("protocols") or {}).items():
        if not isinstance(spec, dict) or not spec.get("enabled", True):
            continue
        port = spec.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            continue
        where = f"server.protocols.{name}.port"
        try:
            bind(str(spec.get("host") or host), port).close()
        except StartupError as exc:
            raise StartupError(str(exc).replace("pass --port or set server.port",
                                                f"set {where}")) from None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or StartupError saying what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r}: {exc.strerror}; "
                           "pass --host or set server.host") from None
    except (UnicodeError, OverflowError, ValueError) as exc:
        raise StartupError(f"invalid host {host!r} or port {port!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} is in use; pass --port or set server.port") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"not allowed to listen on port {port} (ports below 1024 need "
                               "privileges); pass --port or set server.port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"cannot listen on {host}: not an address of this machine; "
                               "pass --host or set server.host") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock

