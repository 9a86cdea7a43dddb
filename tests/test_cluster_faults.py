"""Cluster mode under faults: Redis and PostgreSQL restarted while real nodes serve a load.

Each test starts a private Redis or PostgreSQL server of its own (never the machine's shared
ones, which other suites use meanwhile) and kills and restarts it. Slow: `-m "not slow"`
leaves them out.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.cluster_nodes import REDIS_URL, Nodes, pg_schema_url
from tests.test_cli import free_port
from tests.test_cluster import AT_ONCE, bearer, login, within
from tests.test_run import drop_schema

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_PASSWORD = "redis-test-password-1"


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", REDIS_PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "-a", REDIS_PASSWORD,
                              "--no-auth-warning", "ping"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on this machine")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sgw-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "--auth=trust", "-U", "postgres")

    def _as_postgres(self, *args: object) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "log", "-w",
                          "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                          "start")

    def stop(self) -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("no PostgreSQL 15 binaries (or runuser) on this machine")
    try:
        server = PrivatePostgres()
    except (subprocess.CalledProcessError, LookupError, PermissionError) as exc:
        pytest.skip(f"cannot create a private PostgreSQL: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.remove()


class Load:
    """Requests sent in a loop by a few threads until stopped; statuses counted."""

    def __init__(self, requests: list[tuple[str, str, dict[str, str]]], threads: int = 4):
        self.requests = requests
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        self._lock = threading.Lock()

    def _run(self, offset: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = offset
            while not self._stop.is_set():
                method, url, headers = self.requests[i % len(self.requests)]
                i += 1
                try:
                    r = client.request(method, url, headers=headers)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.statuses[(url, -1)] += 1
                        self.bodies.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[(url.split("/", 3)[-1], r.status_code)] += 1
                    if r.status_code >= 500 and r.status_code != 503:
                        self.bodies.append(r.text)
                time.sleep(0.002)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def codes(self) -> set[int]:
        with self._lock:
            return {code for (_, code) in self.statuses}


def ready(base: str) -> dict:
    return httpx.get(f"{base}/_ready").json()["result"]


def assert_together_again(a: str, b: str) -> None:
    """After a Redis outage: both members see each other, and the bus works again (a logout
    on b is refused on a at once)."""
    assert within(5, lambda: len(ready(a)["nodes"]) == 2 and len(ready(b)["nodes"]) == 2)
    token = login(b, "root", "root-password-1")
    assert httpx.get(f"{a}/_me", headers=bearer(token)).status_code == 200
    assert httpx.post(f"{b}/_logout", headers=bearer(token)).status_code == 200
    assert within(AT_ONCE, lambda: httpx.get(
        f"{a}/_me", headers=bearer(token)).status_code == 401)


def test_redis_restarted_under_load(tmp_path: Path, private_redis: PrivateRedis) -> None:
    storage = pg_schema_url()
    nodes = Nodes(tmp_path, storage, redis_url=private_redis.url)
    try:
        a, b = nodes.start(), nodes.start()
        root = login(a, "root", "root-password-1")
        bob = login(b, "bob", "bob-password-1")
        load = Load([("GET", f"{base}{path}", bearer(token) if token else {})
                     for base in (a, b)
                     for path, token in (("/_now", ""), ("/_me", root), ("/_now", bob),
                                         ("/_serverInfo", root), ("/_healthCheck", root))])
        with load:
            time.sleep(0.5)
            private_redis.kill()
            assert within(5, lambda: ready(a)["status"] == "degraded"
                          and ready(b)["status"] == "degraded")
            health = httpx.get(f"{a}/_healthCheck")
            assert health.status_code == 200  # a load balancer keeps the node
            assert health.json()["result"]["status"] == "yellow"
            assert health.json()["result"]["services"]["cluster"] == "red"
            assert httpx.post(f"{a}/_login/local", json={
                "username": "root", "password": "root-password-1"}).status_code == 200
            # a logout while Redis is down still takes effect (storage is the truth)
            other = login(b, "root", "root-password-1")
            assert httpx.post(f"{b}/_logout", headers=bearer(other)).status_code == 200
            time.sleep(1.0)
            private_redis.start()
            assert within(10, lambda: ready(a)["status"] == "green"
                          and ready(b)["status"] == "green")
            time.sleep(0.5)
        assert httpx.get(f"{a}/_me", headers=bearer(other)).status_code == 401
        assert load.codes() <= {200, 429}, (load.statuses, load.bodies[:3])
        assert load.statuses[("_me", 200)] > 10
        assert_together_again(a, b)
    finally:
        outs = nodes.close()
        drop_schema(storage)
    for out in outs:
        assert REDIS_PASSWORD not in out
        assert "Traceback" not in out, out
        assert out.count("unreachable") == 1, out  # once per outage, not per request
        assert out.count("reachable again") == 1, out


def test_postgresql_restarted_under_load(tmp_path: Path,
                                         private_postgres: PrivatePostgres) -> None:
    nodes = Nodes(tmp_path, private_postgres.url, redis_url=REDIS_URL)
    try:
        a = nodes.start()
        root = login(a, "root", "root-password-1")
        get_user = ("/_query", {"controller": "security", "action": "getUser", "_id": "root"})

        def stored_user() -> int:
            return httpx.post(f"{a}{get_user[0]}", headers=bearer(root),
                              json=get_user[1]).status_code

        load = Load([("GET", f"{a}/_now", {}), ("GET", f"{a}/_me", bearer(root)),
                     ("GET", f"{a}/_healthCheck", {}), ("GET", f"{a}/_ready", {})])
        with load:
            time.sleep(0.3)
            private_postgres.stop()
            assert within(5, lambda: stored_user() == 503)
            r = httpx.post(f"{a}/_query", headers=bearer(root), json=get_user[1])
            assert r.json()["error"]["id"] == "services.storage.unavailable"
            assert httpx.get(f"{a}/_now").status_code == 200
            assert httpx.get(f"{a}/_healthCheck").status_code == 503
            time.sleep(1.0)
            private_postgres.start()
            assert within(15, lambda: stored_user() == 200)
            time.sleep(0.3)
        assert load.codes() <= {200, 503}, (load.statuses, load.bodies[:3])
        assert load.statuses[("_now", 200)] > 10
        assert httpx.get(f"{a}/_healthCheck").status_code == 200
    finally:
        outs = nodes.close()
    for out in outs:
        assert "Traceback" not in out, out


class TimedLoad(Load):
    """A Load that also keeps each request's slowest answer (seconds)."""

    def __init__(self, requests: list[tuple[str, str, dict[str, str]]], threads: int = 4):
        super().__init__(requests, threads)
        self.slowest: dict[str, float] = {}

    def _run(self, offset: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = offset
            while not self._stop.is_set():
                method, url, headers = self.requests[i % len(self.requests)]
                i += 1
                path = url.split("/", 3)[-1]
                started = time.monotonic()
                try:
                    r = client.request(method, url, headers=headers)
                except httpx.HTTPError as exc:
                    r = None
                    error = repr(exc)
                took = time.monotonic() - started
                with self._lock:
                    self.slowest[path] = max(self.slowest.get(path, 0.0), took)
                    if r is None:
                        self.statuses[(path, -1)] += 1
                        self.bodies.append(error)
                    else:
                        self.statuses[(path, r.status_code)] += 1
                        if r.status_code >= 500:
                            self.bodies.append(r.text)
                time.sleep(0.002)


def ws_call(ws: ClientConnection, token: str, **body: object) -> dict:
    """Send one request; its answer (notifications met on the way are not expected)."""
    ws.send(orjson.dumps({"jwt": token, "requestId": "r", **body}).decode())
    while True:
        answer = orjson.loads(ws.recv(timeout=10))
        if answer.get("requestId") == "r":
            return answer


def paid(**extra: object) -> dict:
    return {"controller": "realtime", "action": "subscribe", "index": "shop",
            "collection": "orders", "body": {"equals": {"status": "paid"}}, **extra}


def test_a_frozen_redis_is_an_outage_not_a_hang(tmp_path: Path,
                                                private_redis: PrivateRedis) -> None:
    """Redis accepting connections but never answering (SIGSTOP: a hung server, a black-holed
    network): what does not need Redis is answered at once, health says degraded, the rate
    limit and the login lock count locally, and the members recover by themselves."""
    assert private_redis.proc is not None
    storage = pg_schema_url()
    nodes = Nodes(tmp_path, storage, redis_url=private_redis.url)
    frozen, on_a = False, None
    try:
        a, b = nodes.start(), nodes.start()
        root = login(a, "root", "root-password-1")
        bob = login(b, "bob", "bob-password-1")
        on_a = connect(a.replace("http://", "ws://") + "/")
        rooms = [ws_call(on_a, root, **paid())["result"]["roomId"]]
        load = TimedLoad([("GET", f"{base}{path}", bearer(token) if token else {})
                          for base in (a, b)
                          for path, token in (("/_now", ""), ("/_me", root), ("/_now", bob),
                                              ("/users/bob", root),  # a stored read
                                              ("/_serverInfo", root),
                                              ("/_healthCheck", root), ("/_ready", ""))])
        with load:
            time.sleep(0.5)
            private_redis.proc.send_signal(signal.SIGSTOP)
            frozen = True
            frozen_at = time.monotonic()
            # at once, before the members know: the login lock (a Lua script in Redis) counts
            # locally when Redis does not answer in time
            for expected in (401, 401, 401, 429):
                started = time.monotonic()
                r = httpx.post(f"{b}/_login/local", timeout=10,
                               json={"username": "bob", "password": "wrong"})
                assert (r.status_code, time.monotonic() - started < 1.5) == (expected, True)
            assert within(5, lambda: ready(a)["status"] == "degraded"
                          and ready(b)["status"] == "degraded")
            assert time.monotonic() - frozen_at < 5
            health = httpx.get(f"{a}/_healthCheck", timeout=5)
            assert health.status_code == 200  # a load balancer keeps the node
            assert health.json()["result"]["status"] == "yellow"
            assert health.json()["result"]["services"]["cluster"] == "red"
            # once they know, a login (its lock is in Redis) and a logout wait for nothing
            started = time.monotonic()
            other = login(b, "root", "root-password-1")
            assert httpx.post(f"{b}/_logout", headers=bearer(other),
                              timeout=5).status_code == 200
            assert time.monotonic() - started < 0.5
            # a publish (its notification for the other members is lost) is answered too
            assert httpx.post(f"{a}/shop/orders/_publish", headers=bearer(root),
                              json={"status": "paid"}, timeout=5).status_code == 200
            # a room made meanwhile is answered at once, and announced once Redis is back
            started = time.monotonic()
            rooms.append(ws_call(on_a, root, **paid(scope="in"))["result"]["roomId"])
            assert time.monotonic() - started < 0.5
            time.sleep(3.0)  # long enough for every timeout to have fired at least once
            private_redis.proc.send_signal(signal.SIGCONT)
            frozen = False
            assert within(10, lambda: ready(a)["status"] == "green"
                          and ready(b)["status"] == "green")
            time.sleep(0.5)
        assert load.codes() <= {200, 429}, (load.statuses, load.bodies[:3])
        assert max(load.slowest.values()) < 2, load.slowest  # command_timeout: 1 s
        assert load.statuses[("_now", 200)] > 10
        assert load.statuses[("users/bob", 200)] > 10
        assert httpx.get(f"{a}/_me", headers=bearer(other)).status_code == 401
        assert_together_again(a, b)
        # and realtime: a publish on b reaches both rooms of a's subscriber
        assert httpx.post(f"{b}/shop/orders/_publish", headers=bearer(root),
                          json={"status": "paid", "after": True}).status_code == 200
        notes = [orjson.loads(on_a.recv(timeout=5)) for _ in rooms]
        assert sorted(n["room"].split("-")[0] for n in notes) == sorted(rooms), notes
        assert all(n["result"]["_source"]["after"] is True for n in notes), notes
    finally:
        if on_a is not None:
            on_a.close()
        if frozen:
            private_redis.proc.send_signal(signal.SIGCONT)
        outs = nodes.close()
        drop_schema(storage)
    for out in outs:
        assert REDIS_PASSWORD not in out
        assert "Traceback" not in out, out
        assert out.count("unreachable") == 1, out  # once per outage, not per request
        assert out.count("reachable again") == 1, out
