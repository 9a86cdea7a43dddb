"""Cluster mode as users meet it: several real `sanic-gateway run` processes on loopback ports,
sharing the machine's Redis (a key prefix of each test's own) and PostgreSQL (a schema of each
test's own, dropped after), driven by real HTTP clients."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster_nodes import (
    CLUSTER_YAML,
    Nodes,
    cluster_nodes,
    nodes_fixture,
    pg_schema_url,
)
from tests.test_cli import SCRIPT, free_port
from tests.test_run import drop_schema

AT_ONCE = 0.2  # seconds: "at once" is one bus round trip, far below the 1 s cache of old

nodes = nodes_fixture(CLUSTER_YAML)


def login(base: str, username: str, password: str) -> str:
    r = httpx.post(f"{base}/_login/local", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["result"]["jwt"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def within(seconds: float, check: Callable[[], bool]) -> bool:
    """Whether `check()` becomes true within `seconds` (polled, no sleep beyond)."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def status_of(base: str, path: str, token: str, method: str = "GET") -> int:
    return httpx.request(method, f"{base}{path}", headers=bearer(token)).status_code


def node_ids(base: str) -> list[str]:
    info = httpx.get(f"{base}/_serverInfo").json()["result"]["serverInfo"]
    return [node["id"] for node in info["services"]["cluster"]["nodes"]]


def query(base: str, token: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{base}/_query", headers=bearer(token), json=body)


# -- configuration --------------------------------------------------------------------------

@pytest.mark.parametrize(("config", "message"), [
    ('storage: "sqlite:///data.db"\ncluster: {redis: "redis://127.0.0.1:6379/0"}\n',
     "cluster mode (cluster.redis) needs PostgreSQL storage"),
    ('storage: "postgresql://127.0.0.1/test"\n'
     'cluster: {redis: "redis://127.0.0.1:6379/0", heartbeat: 5s}\n',
     "gateway.yaml:2: cluster.node_timeout: must be at least twice cluster.heartbeat (5s)"),
])
def test_cluster_config_errors_are_refused_by_check_and_run(
        tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "gateway.yaml").write_text(config)
    outs = [subprocess.run([SCRIPT, command, *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
            for command, args in (("check", ()), ("run", ("--port", str(free_port()))))]
    for out in outs:
        assert out.returncode == 2
        assert message in out.stderr
        assert "Traceback" not in out.stderr
    assert outs[0].stderr == outs[1].stderr


def test_unreachable_redis_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = pg_schema_url()
    port = free_port()
    (tmp_path / "gateway.yaml").write_text(
        f'storage: "{url}"\ncluster: {{redis: "redis://u:hidden-pw@127.0.0.1:{port}/0"}}\n')
    try:
        out = subprocess.run([SCRIPT, "run", "--port", str(free_port())], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        # Redis is reached before storage is opened: the refused start created no schema
        assert not schema_exists(url)
    finally:
        drop_schema(url)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "cluster.redis" in line]
    assert len(lines) == 1, out.stderr
    assert f"cluster.redis redis://127.0.0.1:{port}/0: cannot connect" in lines[0]
    assert "hidden-pw" not in out.stderr and "Traceback" not in out.stderr


def schema_exists(storage: str) -> bool:
    import asyncio

    import asyncpg

    async def exists() -> bool:
        url, _, schema = storage.partition("?schema=")
        conn = await asyncpg.connect(url)
        try:
            return bool(await conn.fetchval(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema))
        finally:
            await conn.close()
    return asyncio.run(exists())


# -- security across nodes ------------------------------------------------------------------

def test_logout_on_a_is_refused_on_b_at_once(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    token = login(a, "root", "root-password-1")
    assert status_of(b, "/_me", token) == 200  # b now trusts the token (cached)
    assert httpx.post(f"{a}/_logout", headers=bearer(token)).status_code == 200
    assert within(AT_ONCE, lambda: status_of(b, "/_me", token) == 401)

    # logout with `global`: every token of the user, on every node
    first, second = login(a, "root", "root-password-1"), login(b, "root", "root-password-1")
    assert status_of(b, "/_me", first) == 200 and status_of(a, "/_me", second) == 200
    assert httpx.post(f"{b}/_logout?global", headers=bearer(second)).status_code == 200
    assert within(AT_ONCE, lambda: status_of(a, "/_me", first) == 401)


def test_rights_and_deleted_api_keys_change_on_every_node_at_once(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    root = login(a, "root", "root-password-1")
    bob = login(b, "bob", "bob-password-1")
    assert status_of(b, "/_serverInfo", bob) == 403  # cached rights on b
    r = query(a, root, controller="security", action="updateRole", _id="limited", body={
        "controllers": {"auth": {"actions": {"*": True}}, "server": {"actions": {"*": True}}}})
    assert r.status_code == 200, r.text
    assert within(AT_ONCE, lambda: status_of(b, "/_serverInfo", bob) == 200)

    r = query(a, root, controller="security", action="updateUser", _id="bob",
              body={"profileIds": ["anonymous"]})
    assert r.status_code == 200, r.text
    assert within(AT_ONCE, lambda: status_of(b, "/_me", bob) == 403)

    key = query(a, root, controller="security", action="createApiKey", userId="root",
                body={"description": "k"})
    assert key.status_code == 200, key.text
    api_key, key_id = key.json()["result"]["_source"]["token"], key.json()["result"]["_id"]
    assert status_of(b, "/_me", api_key) == 200
    r = query(a, root, controller="security", action="deleteApiKey", userId="root", _id=key_id)
    assert r.status_code == 200, r.text
    assert within(AT_ONCE, lambda: status_of(b, "/_me", api_key) == 401)

    r = query(b, root, controller="security", action="deleteUser", _id="bob")
    assert r.status_code == 200, r.text
    assert within(AT_ONCE, lambda: status_of(a, "/_me", bob) == 401)


def test_create_first_admin_closes_every_node_at_once(tmp_path: Path) -> None:
    open_cluster = 'storage: "{storage}"\ncluster: {{redis: "{redis}", prefix: "{prefix}"}}\n'
    with cluster_nodes(tmp_path, open_cluster) as nodes:
        a, b = nodes.start(), nodes.start()

        def anonymous_reads_a_role(base: str) -> int:
            return httpx.post(f"{base}/_query", json={
                "controller": "security", "action": "getRole", "_id": "default"}).status_code

        assert anonymous_reads_a_role(b) == 200  # open: b caches the anonymous rights
        r = httpx.post(f"{a}/_createFirstAdmin/root?reset=true", json={
            "credentials": {"local": {"username": "root", "password": "root-password-1"}}})
        assert r.status_code == 200, r.text
        assert within(AT_ONCE, lambda: anonymous_reads_a_role(b) == 401)


def test_profile_rate_limit_is_counted_across_nodes(nodes: Nodes) -> None:
    import asyncio

    a, b = nodes.start(), nodes.start()
    bob = login(a, "bob", "bob-password-1")

    async def burst() -> tuple[list[int], float]:
        async with httpx.AsyncClient(headers=bearer(bob)) as client:
            for base in (a, b):  # connections and caches warm: the burst is quick
                await client.get(f"{base}/_now")
            await asyncio.sleep(1.1)  # a fresh window
            started = time.monotonic()
            answers = await asyncio.gather(*(client.get(f"{base}/_now")
                                             for base in (a, b) * 4))
            return [r.status_code for r in answers], time.monotonic() - started

    for _ in range(3):  # a loaded machine may stretch a burst past the one-second window
        statuses, took = asyncio.run(burst())
        if took < 0.9:
            break
    else:
        pytest.skip("the machine is too loaded to send 8 requests within a second")
    # rateLimit 6: each node alone would let its 4 through
    assert sorted(statuses) == [200] * 6 + [429] * 2


def test_login_attempts_lock_the_username_on_every_node(nodes: Nodes) -> None:
    a, b = nodes.start(), nodes.start()
    for base in (a, b):  # two failures allowed, one on each node
        r = httpx.post(f"{base}/_login/local", json={"username": "bob", "password": "wrong"})
        assert r.status_code == 401, r.text
    r = httpx.post(f"{a}/_login/local", json={"username": "bob", "password": "wrong"})
    assert r.status_code == 401  # the third failure locks bob for 20 s, cluster-wide
    for base in (b, a):
        r = httpx.post(f"{base}/_login/local",
                       json={"username": "bob", "password": "bob-password-1"})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["id"] == "api.process.too_many_logins_requests"
        assert int(r.headers["Retry-After"]) > 1
    login(b, "root", "root-password-1")  # other usernames are not concerned


# -- membership -----------------------------------------------------------------------------

def parent_of(pid: int) -> int:
    """The parent process of `pid` (Linux's /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_members_are_listed_and_a_killed_one_is_dropped(nodes: Nodes) -> None:
    a, b, c = nodes.start(), nodes.start(), nodes.start()
    ids = node_ids(a)
    assert len(ids) == 3 and node_ids(b) == ids and node_ids(c) == ids
    info = httpx.get(f"{a}/_serverInfo").json()["result"]["serverInfo"]
    cluster = info["services"]["cluster"]
    assert cluster["status"] == "green" and cluster["nodeId"] in ids
    # each `run` is a supervisor and its worker: the members are the workers
    assert {parent_of(node["pid"]) for node in cluster["nodes"]} == {
        proc.pid for proc in nodes.procs}
    assert all("http" in node["protocols"] for node in cluster["nodes"])
    ready = httpx.get(f"{a}/_ready").json()["result"]
    assert ready["status"] == "green" and ready["nodes"] == ids
    health = httpx.get(f"{a}/_healthCheck").json()["result"]
    assert health["services"]["cluster"] == "green" and len(health["nodes"]) == 3

    survivors = {node["pid"] for node in cluster["nodes"]
                 if parent_of(node["pid"]) != nodes.procs[2].pid}
    victim = nodes.procs[2]
    victim.send_signal(signal.SIGKILL)  # its worker dies with it (PR_SET_PDEATHSIG)
    victim.wait(timeout=10)
    assert within(5, lambda: len(node_ids(a)) == 2 and len(node_ids(b)) == 2)
    assert {n["pid"] for n in httpx.get(f"{a}/_serverInfo").json()["result"]["serverInfo"][
        "services"]["cluster"]["nodes"]} == survivors

    nodes.procs[1].send_signal(signal.SIGTERM)  # a clean stop is seen at once
    nodes.procs[1].wait(timeout=30)
    assert within(AT_ONCE, lambda: len(node_ids(a)) == 1)


def test_a_killed_worker_is_dropped_by_its_replacement_not_announced(tmp_path: Path) -> None:
    """The supervisor restarts a killed worker; the new one sees the dead one's fresh heartbeat
    but no process behind it: it drops it and tells the others, who need not wait for its
    node_timeout (30 s here)."""
    yaml = CLUSTER_YAML.replace("node_timeout: 1s", "node_timeout: 30s")
    with cluster_nodes(tmp_path, yaml) as nodes:
        a, b = nodes.start(), nodes.start()
        assert within(5, lambda: len(node_ids(a)) == 2)
        dead = next(node for node in httpx.get(f"{b}/_serverInfo").json()["result"][
            "serverInfo"]["services"]["cluster"]["nodes"]
            if parent_of(node["pid"]) == nodes.procs[0].pid)
        os.kill(dead["pid"], signal.SIGKILL)

        def replaced() -> bool:
            ids = node_ids(b)
            return len(ids) == 2 and dead["id"] not in ids
        assert within(15, replaced)
        outs = nodes.close()
    # no member counted it again (the replacement used to announce it as joined; B saw it
    # join once, before the kill)...
    joined = f"member {dead['id']} joined"
    assert outs[0].count(joined) == 0 and outs[1].count(joined) == 1
    # ...and a member of this host (here both: B at its next beat, or the replacement
    # starting) dropped it, saying why
    dropped = f"member {dead['id']} dropped: its process (pid {dead['pid']} on this host) is gone"
    assert any(dropped in out for out in outs)


def test_each_worker_is_a_member_and_sees_the_others_logouts(nodes: Nodes) -> None:
    base = nodes.start("--workers", "2")
    assert within(5, lambda: len(node_ids(base)) == 2)
    token = login(base, "root", "root-password-1")
    # one keep-alive connection per worker: found by the pid each answers with
    clients: dict[int, httpx.Client] = {}
    spare = []
    for _ in range(40):
        client = httpx.Client(base_url=base, headers=bearer(token),
                              limits=httpx.Limits(max_connections=1))
        pid = client.get("/_serverInfo").json()["result"]["serverInfo"]["kuzzle"]["pid"]
        if pid in clients:
            spare.append(client)
        else:
            clients[pid] = client
        if len(clients) == 2:
            break
    try:
        assert len(clients) == 2, "the kernel gave every connection to one worker"
        one, two = clients.values()
        assert one.get("/_me").status_code == 200 and two.get("/_me").status_code == 200
        assert one.post("/_logout").status_code == 200
        assert within(AT_ONCE, lambda: two.get("/_me").status_code == 401)
    finally:
        for client in (*clients.values(), *spare):
            client.close()
