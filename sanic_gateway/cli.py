"""`sanic-gateway run` and `sanic-gateway check` (SPEC 2). Config errors never print a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from . import __version__
from .config import ConfigError, load_config
from .gateway import Gateway, StartError

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sanic-gateway", description="A declarative gateway: gateway.yaml served by Sanic.")
    parser.add_argument("--version", action="version", version=f"sanic-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the server")
    run.add_argument("--config", default="gateway.yaml", help="default: ./gateway.yaml")
    run.add_argument("--host", help="overrides server.host")
    run.add_argument("--port", type=int, help="overrides server.port (default 7512)")
    run.add_argument("--workers", type=int, help="overrides server.workers")
    run.add_argument("--dev", action="store_true",
                     help="debug logs, access log, stack traces in error responses")
    check = sub.add_parser("check", help="validate gateway.yaml and every plugin, then exit")
    check.add_argument("--config", default="gateway.yaml", help="default: ./gateway.yaml")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "dev", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        gateway = Gateway.build(config, dev=getattr(args, "dev", False))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print(f"{len(exc.issues)} error(s) in {args.config}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        print(gateway.summary())
        return 0
    return _run(args, gateway)


def _run(args: argparse.Namespace, gateway: Gateway) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from .app import app_from_file, create_app

    server = gateway.config.data["server"]
    host = args.host or server["host"]
    port = args.port if args.port is not None else server["port"]
    workers = args.workers or server["workers"]
    log = logging.getLogger("sanic_gateway")
    log.info("sanic-gateway %s: %s, %d plugin(s), serving on http://%s:%d", __version__,
             gateway.config.path, len(gateway.plugins), host, port)
    if workers == 1:
        app = create_app(gateway)
        if not args.dev:
            logging.getLogger("sanic.error").addFilter(_QuietStartErrors())
        try:
            app.run(host=host, port=port, single_process=True, debug=False,
                    access_log=args.dev, motd=False)
        except StartError:
            return 1  # already logged, in one line
        return 1 if app.ctx.start_error else 0
    loader = AppLoader(factory=partial(app_from_file, str(gateway.config.path), args.dev))
    app = loader.load()
    app.prepare(host=host, port=port, workers=workers, access_log=args.dev, motd=False)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


class _QuietStartErrors(logging.Filter):
    """A plugin whose init fails is reported in one line, not with Sanic's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StartError))
