"""Cluster members for the tests: real `sanic-gateway run` processes on loopback ports, sharing
the machine's Redis (a key prefix of each test's own) and PostgreSQL (a schema of each test's
own, dropped after). `nodes_fixture(yaml)` makes a test file's `nodes` fixture."""

from __future__ import annotations

import os
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.test_run import PG_URL, drop_schema, start, stop

REDIS_URL = os.environ.get("SANIC_GATEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")

# the cluster of the security tests: an administrator `root` and a rate-limited `bob`
CLUSTER_YAML = """\
    storage: "{storage}"
    cluster: {{redis: "{redis}", prefix: "{prefix}", heartbeat: 200ms, node_timeout: 1s}}
    limits: {{login_attempts_per_second: 0, login_failures_per_username: 2,
              login_failure_delay: 20s}}
    security:
      roles:
        anonymous:
          controllers:
            auth: {{actions: {{login: true}}}}
            server: {{actions: {{"*": true}}}}
        limited:
          controllers:
            auth: {{actions: {{"*": true}}}}
            server: {{actions: {{now: true}}}}
      profiles:
        anonymous: {{policies: [{{roleId: anonymous}}]}}
        limited: {{policies: [{{roleId: limited}}], rateLimit: 6}}
      users:
        root:
          profileIds: [admin]
          credentials: {{local: {{username: root, password: root-password-1}}}}
        bob:
          profileIds: [limited]
          credentials: {{local: {{username: bob, password: bob-password-1}}}}
"""


class Nodes:
    """Gateway processes of one cluster, stopped (and their data dropped) at the end."""

    def __init__(self, tmp_path: Path, storage: str, redis_url: str = REDIS_URL,
                 yaml: str = CLUSTER_YAML) -> None:
        """`yaml`: gateway.yaml with `{storage}`, `{redis}` and `{prefix}` to fill in."""
        self.tmp_path, self.storage, self.redis_url = tmp_path, storage, redis_url
        self.prefix = f"test-{uuid.uuid4().hex[:10]}"
        self.procs: list[subprocess.Popen[str]] = []
        (tmp_path / "gateway.yaml").write_text(textwrap.dedent(yaml.format(
            storage=storage, redis=redis_url, prefix=self.prefix)))

    def start(self, *args: str) -> str:
        proc, base = start(self.tmp_path, *args)
        self.procs.append(proc)
        return base

    def close(self) -> list[str]:
        outs: list[str] = []
        stuck: list[AssertionError] = []
        for proc in self.procs:  # every one is stopped, even after one that would not stop
            try:
                outs.append(stop(proc) if proc.poll() is None
                            else proc.communicate()[0] or "")
            except AssertionError as exc:
                stuck.append(exc)
                outs.append("")
        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(f"{self.prefix}:*"))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass
        finally:
            client.close()
        if stuck:
            raise stuck[0]
        return outs


def pg_schema_url() -> str:
    import asyncio

    import asyncpg

    async def reachable() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        await conn.close()
    try:
        asyncio.run(reachable())
    except Exception as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    return f"{PG_URL}?schema=cluster_{uuid.uuid4().hex[:10]}"


@contextmanager
def cluster_nodes(tmp_path: Path, yaml: str) -> Iterator[Nodes]:
    """Nodes on `yaml` (skipped without Redis or PostgreSQL), stopped and their schema dropped
    at the end."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    url = pg_schema_url()
    made = Nodes(tmp_path, url, yaml=yaml)
    try:
        yield made
    finally:
        made.close()
        drop_schema(url)


def nodes_fixture(yaml: str) -> Callable[[Path], Iterator[Nodes]]:
    """A `nodes` fixture whose members run `yaml` (see Nodes)."""

    @pytest.fixture
    def nodes(tmp_path: Path) -> Iterator[Nodes]:
        with cluster_nodes(tmp_path, yaml) as made:
            yield made

    return nodes
