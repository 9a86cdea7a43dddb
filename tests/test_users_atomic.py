"""`kill -9` of a real `sanic-gateway run` during concurrent createUser: after a restart every
user can log in or does not exist (a user and its credentials are one transaction). On SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.test_cli import SCRIPT, free_port, wait_for
from tests.test_storage import PG_URL

CREATORS = 8  # requests in flight at once


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/data/gateway.db"
        return
    schema = f"gw_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    yield f"{PG_URL}?schema={schema}"
    asyncio.run(run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def start(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([SCRIPT, "run", "--port", str(port)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(f"http://127.0.0.1:{port}/_now", proc)
    return proc


def password_of(kuid: str) -> str:
    return f"password-of-{kuid}"


async def create_users_until_killed(base: str, proc: subprocess.Popen[str]) -> list[str]:
    """Create users from CREATORS clients at once; kill -9 the gateway once 20 are made, while
    others are in flight. Returns the kuids whose creation was acknowledged."""
    created: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post("/_login/local",
                              json={"username": "admin", "password": "admin-password"})
        auth = {"Authorization": f"Bearer {r.json()['result']['jwt']}"}

        async def creator(n: int) -> None:
            for i in range(1000):
                kuid = f"u{n}x{i}"
                r = await client.post(f"/users/{kuid}/_create", headers=auth, json={
                    "content": {"profileIds": ["default"]},
                    "credentials": {"local": {"username": kuid, "password": password_of(kuid)}}})
                assert r.status_code == 200, r.text
                created.append(kuid)

        tasks = [asyncio.create_task(creator(n)) for n in range(CREATORS)]
        deadline = time.monotonic() + 60
        while len(created) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    # every creator was cut off by the kill, mid-request
    assert all(isinstance(e, httpx.TransportError) for e in results), results
    proc.wait(timeout=10)
    return created


async def check_every_user(base: str, acknowledged: list[str]) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post("/_login/local",
                              json={"username": "admin", "password": "admin-password"})
        auth = {"Authorization": f"Bearer {r.json()['result']['jwt']}"}
        found = (await client.post("/users/_search", params={"size": 10000}, headers=auth,
                                   json={})).json()["result"]
        kuids = {hit["_id"] for hit in found["hits"]} - {"admin"}
        assert set(acknowledged) <= kuids  # what was answered 200 was kept
        without = []
        for kuid in sorted(kuids):
            r = await client.post("/_login/local", json={"username": kuid,
                                                         "password": password_of(kuid)})
            if r.status_code != 200:
                without.append(kuid)
        assert not without, f"{len(without)} of {len(kuids)} users cannot log in: {without}"
        # the ids of creations cut off are free again
        for n in range(CREATORS):
            i = 0
            while f"u{n}x{i}" in kuids:
                i += 1
            r = await client.post(f"/users/u{n}x{i}/_create", headers=auth, json={
                "content": {"profileIds": ["default"]},
                "credentials": {"local": {"username": f"u{n}x{i}", "password": "p"}}})
            assert r.status_code == 200, r.text
        return len(kuids)


def test_kill_9_during_concurrent_creation_leaves_no_user_without_credentials(
        tmp_path: Path, storage_url: str) -> None:
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(f"""\
        storage: {storage_url}
        auth:
          jwt: {{secret: a-test-secret-that-is-long-enough-0123456789}}
        limits:
          login_attempts_per_second: 0
        security:
          roles:
            anonymous: {{controllers: {{auth: {{actions: {{login: true}}}}}}}}
          users:
            admin:
              profileIds: [admin]
              credentials: {{local: {{username: admin, password: admin-password}}}}
        """))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(tmp_path, port)
    try:
        acknowledged = asyncio.run(create_users_until_killed(base, proc))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert len(acknowledged) >= 20
    proc = start(tmp_path, port)
    try:
        users = asyncio.run(check_every_user(base, acknowledged))
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert users >= len(acknowledged)
    assert "Traceback" not in out, out
