"""What the server controller tells about the process, its services and its configuration."""

from __future__ import annotations

import copy
import os
import platform
import re
import resource
import sqlite3
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sanic

from .. import errors
from ..storage.base import MAX_SIZE

# keys whose values are never shown (gateway.yaml and plugin configs alike)
SECRET_KEY = re.compile(
    r"(^|[_.-])(secrets?|passwords?|passwd|pass|tokens?|key|credentials?)$|secret|password",
    re.IGNORECASE)


def _memory_used() -> int:
    """Resident memory in bytes (Kuzzle's `memoryUsed`)."""
    try:
        with open("/proc/self/statm") as stats:
            return int(stats.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpus() -> list[dict[str, Any]]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            models = [line.split(":", 1)[1].strip() for line in info
                      if line.startswith("model name")]
    except OSError:
        models = []
    count = os.cpu_count() or 1
    return [{"model": models[i] if i < len(models) else model} for i in range(count)]


def _system_memory() -> dict[str, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return {"free": os.sysconf("SC_AVPHYS_PAGES") * page,
                "total": os.sysconf("SC_PHYS_PAGES") * page}
    except (ValueError, OSError, AttributeError):
        return {"free": 0, "total": 0}


def runtime() -> dict[str, Any]:
    """Kuzzle's process fields; `pythonVersion` and `sanicVersion` stand for `nodeVersion`."""
    return {
        "memoryUsed": _memory_used(),
        "pythonVersion": platform.python_version(),
        "sanicVersion": sanic.__version__,
        "system": {"cpus": _cpus(), "memory": _system_memory(), "platform": sys.platform},
    }


def storage_info(storage: Any) -> dict[str, Any]:
    backend = getattr(storage, "backend", "unknown")
    info: dict[str, Any] = {"backend": backend}
    if backend == "sqlite":
        info["version"] = sqlite3.sqlite_version
    return info


async def storage_status(storage: Any) -> str:
    if storage is None:
        return "red"
    try:
        await storage.ping()
    except (errors.GatewayError, OSError):
        return "red"
    return "green"


async def services(gateway: Any) -> dict[str, Any]:
    """The services in use: storage always, the cluster's Redis when configured."""
    out: dict[str, Any] = {"storage": {**storage_info(gateway.storage),
                                       "status": await storage_status(gateway.storage)}}
    redis = gateway.config.data.get("cluster", {}).get("redis")
    if redis:
        out["cluster"] = {"backend": "redis", "url": without_credentials(redis),
                          **cluster_state(gateway)}
    return out


def cluster_state(gateway: Any) -> dict[str, Any]:
    """This member, the cluster's status (red: Redis unreachable, this member serves on
    alone) and its live members, each with what it described of itself."""
    cluster = getattr(gateway, "cluster", None)
    if cluster is None:
        return {"status": "red", "nodeId": None, "nodes": []}
    return {"status": "green" if cluster.healthy else "red", "nodeId": cluster.node_id,
            "nodes": [{"id": node, **info} for node, info in sorted(cluster.members().items())]}


def without_credentials(url: str) -> str:
    """`url` without user and password (a storage or Redis URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[redacted]"
    query = "&".join(p for p in parts.query.split("&")
                     if p and not SECRET_KEY.search(p.split("=", 1)[0]))
    if parts.username is None and parts.password is None and query == parts.query:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()
                if not (isinstance(k, str) and SECRET_KEY.search(k))}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:  # a URL with credentials
        return without_credentials(value)
    return value


def public_config(data: dict[str, Any], version: str) -> dict[str, Any]:
    """gateway.yaml as loaded, without anything secret: no `security` section (declared
    users' passwords), no JWT secret nor client secret, no key naming a secret, password or
    token anywhere (plugin configs included), no credentials in URLs."""
    config = copy.deepcopy({k: v for k, v in data.items() if k != "security"})
    config = _redact(config)
    if isinstance(config.get("storage"), str):
        config["storage"] = without_credentials(config["storage"])
    cluster = config.get("cluster") or {}
    if isinstance(cluster.get("redis"), str):
        cluster["redis"] = without_credentials(cluster["redis"])
    config["version"] = version
    return config


def limits(configured: dict[str, Any]) -> dict[str, Any]:
    """The configured limits, plus the names Kuzzle's SDKs read."""
    return {**configured, "loginsPerSecond": configured["login_attempts_per_second"],
            "documentsFetchCount": MAX_SIZE}
