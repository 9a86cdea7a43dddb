"""Logging for `sanic-gateway run`: one format in every process, and no secret in any line.

Third-party libraries stay at INFO even under `--dev`: aiosqlite and asyncpg echo SQL
parameters at DEBUG (the stored JWT key, password hashes), httpx/httpcore and Authlib echo
requests to OAuth providers. Only the gateway's own loggers (`sanic_gateway.*`, plugins
included) go down to DEBUG. Whatever still reaches the handler is redacted: JWTs, Argon2
hashes, `password`/`secret`/`token` values, and every literal secret registered here (the
JWT signing key, OAuth client secrets, declared passwords).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "[redacted]"
# Loggers that log at DEBUG what they send or store; never below INFO, whatever the mode.
NOISY = ("aiosqlite", "asyncpg", "httpx", "httpcore", "authlib", "joserfc", "sanic",
         "sanic_routing", "websockets", "asyncio", "urllib3", "hpack")

_SHAPES = (
    # a JWT (or its first segments): base64url of `{"` followed by more segments
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}"), "eyJ" + MASK),
    # PHC strings: $argon2id$v=19$m=...,t=...,p=...$salt$hash (bcrypt/scrypt alike)
    (re.compile(r"\$(?:argon2(?:id|i|d)|2[abxy]?|scrypt|pbkdf2[-\w]*)\$[^\s'\"}\]]+"),
     "$" + MASK),
    # "password": "...", secret=..., client_secret: '...', access_token ... as key and value;
    # not a dotted config path (`users.bob.credentials.apikey: <message>` is no secret)
    (re.compile(r"""(?ix)
        (["']?(?<!\.)\b(?:[a-z_]*password|[a-z_]*secret|[a-z_]*token|jwt|authorization|api[_-]?key)
        ["']?\s*[:=]\s*)
        (?:bearer\s+)?
        (?:"[^"]*"|'[^']*'|[^\s,;}\])]+)"""), r"\1" + MASK),
)
_secrets: set[str] = set()
_literal: re.Pattern[str] | None = None


def register_secret(value: Any) -> None:
    """A literal value no log line may show (at least 6 characters: shorter ones would mask
    ordinary words)."""
    global _literal
    if isinstance(value, str) and len(value) >= 6 and value not in _secrets:
        _secrets.add(value)
        alternatives = sorted(_secrets, key=len, reverse=True)
        _literal = re.compile("|".join(re.escape(s) for s in alternatives))


def register_config_secrets(data: Mapping[str, Any]) -> None:
    """The secrets a gateway.yaml may hold: the JWT secret, OAuth client secrets, and the
    passwords of declared users."""
    auth = data.get("auth") or {}
    register_secret((auth.get("jwt") or {}).get("secret"))
    for strategy in (auth.get("strategies") or {}).values():
        register_secret(((strategy or {}).get("oauth2") or {}).get("client_secret"))
    for user in ((data.get("security") or {}).get("users") or {}).values():
        for credentials in ((user or {}).get("credentials") or {}).values():
            if isinstance(credentials, Mapping):
                for key, value in credentials.items():
                    if "password" in str(key).lower() or "secret" in str(key).lower():
                        register_secret(value)


def redact(text: str) -> str:
    """`text` with every known secret and secret-shaped value masked."""
    if _literal is not None:
        text = _literal.sub(MASK, text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line: the message, its arguments and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """`--log-format json`: one JSON object per line (`time`, `level`, `logger`, `message`,
    `exception` when there is one, and an access line's fields as keys) for log shippers.
    Each value is redacted before it is encoded: redacting the encoded line would miss what
    JSON escapes (a quoted `"password"` in a message), and could break the JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        access = getattr(record, "access", None)
        if isinstance(access, Mapping):
            for key, value in access.items():
                line.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


FORMATTERS = {"text": lambda: RedactingFormatter(FORMAT), "json": JsonFormatter}


class DropWarnings(logging.Filter):
    """Installed while a second or later worker starts: the first one already said it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING


def configure(dev: bool, stream: Any = None, *, extra: Iterable[str] = (),
              fmt: str = "text") -> None:
    """Install the gateway's handler on the root logger (replacing any previous one), its
    lines as `fmt` says: "text" or "json"."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sanic_gateway", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(FORMATTERS[fmt]())
    handler._sanic_gateway = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("sanic_gateway").setLevel(logging.DEBUG if dev else logging.INFO)
    for name in (*NOISY, *extra):
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET included: never inherit a DEBUG root
            logger.setLevel(logging.INFO)
