"""`sanic-gateway run` as a user meets it: logs, startup failures, workers, signals, slow
clients. Every test runs the real command in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.test_cli import SCRIPT, free_port, wait_for

PG_URL = os.environ.get("SANIC_GATEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

ADMIN_YAML = """\
    storage: "{storage}"
    limits: {{login_attempts_per_second: 0}}
    security:
      roles:
        anonymous:
          controllers:
            auth: {{actions: {{login: true}}}}
            server: {{actions: {{"*": true}}}}
      profiles:
        anonymous: {{policies: [{{roleId: anonymous}}]}}
      users:
        root:
          profileIds: [admin]
          credentials:
            local: {{username: root, password: "${{ROOT_PASSWORD:-root-password-1}}"}}
"""


def start(cwd: Path, *args: str, env: dict[str, str] | None = None,
          ) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([SCRIPT, "run", "--port", str(port), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/_now", proc)
    return proc, base


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    """Stop a `run` with `sig` and return its output; one that does not stop within 30 s is
    killed (its workers die with it), then the test fails: no process outlives a test."""
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        raise AssertionError(f"sanic-gateway run did not stop within 30 s of {sig!r}; "
                             f"its output:\n{out}") from None
    return out


def run_until_exit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, "run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


# -- no secret in any log -------------------------------------------------------------------

def stored_bodies(storage: str, tmp_path: Path) -> list[str]:
    if storage.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "data.db") as db:
            return [row[0] for row in db.execute("SELECT body FROM gateway_documents")]
    import asyncpg

    async def read() -> list[str]:
        url, _, schema = storage.partition("?schema=")
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(f'SELECT body::text FROM "{schema}".gateway_documents')
            return [r[0] for r in rows]
        finally:
            await conn.close()
    return asyncio.run(read())


def drop_schema(storage: str) -> None:
    import asyncpg

    async def drop() -> None:
        url, _, schema = storage.partition("?schema=")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        yield "sqlite:///data.db"
        return
    import asyncpg

    async def reachable() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        await conn.close()
    try:
        asyncio.run(reachable())
    except Exception as exc:  # any failure means: no PostgreSQL here
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    url = f"{PG_URL}?schema=logs_{uuid.uuid4().hex[:10]}"
    yield url
    drop_schema(url)


def test_dev_logs_show_no_secret(tmp_path, storage_url):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(ADMIN_YAML.format(
        storage=storage_url)))
    proc, base = start(tmp_path, "--dev")
    try:
        login = httpx.post(f"{base}/_login/local",
                           json={"username": "root", "password": "root-password-1"})
        token = login.json()["result"]["jwt"]
        created = httpx.post(f"{base}/_query", headers={"Authorization": f"Bearer {token}"},
                             json={"controller": "security", "action": "createUser",
                                   "_id": "bob", "body": {
                                       "content": {"profileIds": ["default"]},
                                       "credentials": {"local": {
                                           "username": "bob", "password": "bob-secret-pw"}}}})
        assert created.status_code == 200, created.text
        bob = httpx.post(f"{base}/_login/local",
                         json={"username": "bob", "password": "bob-secret-pw"})
        bob_token = bob.json()["result"]["jwt"]
        httpx.get(f"{base}/_me", headers={"Authorization": f"Bearer {bob_token}"})
    finally:
        out = stop(proc)
    bodies = "\n".join(stored_bodies(storage_url, tmp_path))
    jwt_key = json.loads(re.search(r'\{"secret":.*?\}', bodies).group(0))["secret"]
    hashes = re.findall(r"\$argon2id\$[^\"]+", bodies)
    assert len(hashes) == 2  # root and bob
    secrets = [jwt_key, *hashes, token, bob_token, "root-password-1", "bob-secret-pw"]
    leaked = [s for s in secrets if s in out]
    assert not leaked, out
    # hash fragments (salt or digest) are no better
    for h in hashes:
        assert all(part not in out for part in h.split("$")[-2:])
    # the access log says who asked what, how it went, and which request it was
    line = next(x for x in out.splitlines() if "POST /_login/local" in x)
    assert re.search(r"POST /_login/local 200 \d+\.\dms id=[0-9a-f-]{36} user=-1$", line), line
    assert "PRODUCTION" not in out and "Traceback" not in out


def test_configured_secrets_are_redacted_in_the_gateways_own_lines(tmp_path):
    secret = "a-configured-jwt-secret-of-at-least-32-chars"
    JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    (tmp_path / "loud.py").write_text(textwrap.dedent(f"""
        class Loud:
            def init(self, config, context):
                context.log.info("my config: %s", config)
                context.log.info("the key is {secret}")
                context.log.info("Authorization: Bearer {JWT}")
    """))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(f"""\
        storage: "sqlite:///:memory:"
        auth:
          jwt: {{secret: {secret}}}
        plugins:
          loud:
            module: loud:Loud
            config: {{password: hunter2-hunter2, client_secret: abc123xyz}}
    """))
    proc, _ = start(tmp_path, "--dev")
    out = stop(proc)
    assert "my config:" in out and "the key is [redacted]" in out
    for leaked in (secret, "hunter2-hunter2", "abc123xyz", "eyJzdWIiOiJ4In0"):
        assert leaked not in out, out


# -- startup failures: one line, exit 2 ------------------------------------------------------

def test_startup_failures_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "gateway.yaml").write_text('storage: "sqlite:///:memory:"\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_until_exit(tmp_path, "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"sanic-gateway: port {port} is in use; pass --port or set server.port")
    assert "serving" not in done.stdout + done.stderr
    cases = {
        ("--port", "99999"): "argument --port: 99999 is not a port (0-65535)",
        ("--port", "http"): "argument --port: 'http' is not a port number",
        ("--workers", "0"): "argument --workers: 0: at least 1 worker is needed",
        ("--host", "no-such-host.invalid"): "cannot resolve host 'no-such-host.invalid'",
        ("--host", "192.0.2.1"): "cannot listen on 192.0.2.1: not an address of this machine",
    }
    for args, message in cases.items():
        done = run_until_exit(tmp_path, "--port", str(free_port()), *args)
        output = done.stdout + done.stderr
        assert done.returncode == 2, (args, output)
        assert message in output, (args, output)
        assert "Traceback" not in output and "serving" not in output, output


def test_storage_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path):
    for url in ("sqlite:////proc/no/such/dir/x.db",
                f"postgresql://postgres:pw@127.0.0.1:{free_port()}/test"):
        (tmp_path / "gateway.yaml").write_text(f'storage: "{url}"\n')
        done = run_until_exit(tmp_path, "--port", str(free_port()))
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "Traceback" not in output and "serving" not in output, output
        errors = [line for line in output.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "cannot open it" in errors[0], output
        assert ":pw@" not in output


def test_unclosed_variable_reference_is_a_config_error(tmp_path):
    (tmp_path / "gateway.yaml").write_text("server:\n  port: ${PORT:-7512\n")
    done = subprocess.run([sys.executable, "-m", "sanic_gateway", "check"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert ("gateway.yaml:2: server.port: unclosed variable reference '${PORT:-7512': "
            "missing '}'") in done.stderr


# -- what startup says ------------------------------------------------------------------------

def test_startup_says_what_it_serves_after_binding(tmp_path):
    (tmp_path / "hello.py").write_text("class Hello:\n    def init(self, config, context):\n"
                                       "        context.log.info('hello from init')\n")
    (tmp_path / "gateway.yaml").write_text(
        'storage: "sqlite:///:memory:"\nplugins:\n  hello:\n    module: hello:Hello\n')
    proc, base = start(tmp_path)
    out = stop(proc)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    ready = [x for x in lines if "serving" in x]
    assert len(ready) == 1
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO sanic_gateway: sanic-gateway "
                    r"\S+ serving \S+gateway.yaml on " + re.escape(base) +
                    r" \(1 worker\); plugins: hello; protocols: http, websocket$",
                    ready[0]), ready[0]
    assert lines.index(ready[0]) > next(i for i, x in enumerate(lines) if "hello from init" in x)


# -- --workers N ------------------------------------------------------------------------------

def test_workers_log_like_one_and_stop_on_sigterm(tmp_path):
    (tmp_path / "hello.py").write_text(textwrap.dedent("""
        import os
        class Hello:
            def init(self, config, context):
                context.log.info("init in %d", os.getpid())
                context.log.warning("a startup warning")
            def pid(self, request):
                return os.getpid()
    """))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        storage: "sqlite:///data.db"
        plugins:
          hello:
            module: hello:Hello
            controllers:
              h: {pid: pid}
    """))
    proc, base = start(tmp_path, "--workers", "3")
    seen = []
    while not any("serving" in x for x in seen):  # the other workers are ready too
        seen.append(proc.stdout.readline())
        assert seen[-1], seen
    for _ in range(5):  # which worker answers is up to the kernel
        answer = httpx.post(f"{base}/_query", json={"controller": "hello/h", "action": "pid"})
        assert answer.status_code == 200
    out = "".join(seen) + stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ", x)
               for x in lines), out
    assert sum("init in" in x for x in lines) == 3  # plugin INFO logs from every worker
    assert sum("Worker ready" in x for x in lines) == 3
    assert sum("a startup warning" in x for x in lines) == 1
    assert sum("serving" in x and "(3 workers)" in x for x in lines) == 1
    assert sum("Worker complete" in x for x in lines) == 3
    assert "Traceback" not in out


def test_workers_report_a_failing_init_like_one_worker(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        class Bad:
            def init(self, config, context):
                raise RuntimeError("cannot reach the database")
    """))
    (tmp_path / "gateway.yaml").write_text(
        'storage: "sqlite:///:memory:"\nplugins:\n  bad:\n    module: bad:Bad\n')
    outputs = {}
    for workers in ("1", "3"):
        done = run_until_exit(tmp_path, "--port", str(free_port()), "--workers", workers)
        output = done.stdout + done.stderr
        outputs[workers] = (done.returncode, [x for x in output.splitlines() if "ERROR" in x])
        assert "Traceback" not in output and "single-process" not in output, output
        assert "serving" not in output
    assert outputs["1"][0] == outputs["3"][0] == 1
    assert len(outputs["3"][1]) == 1
    assert outputs["1"][1][0].endswith(
        "ERROR sanic_gateway: plugin 'bad': init failed: RuntimeError: cannot reach the database")
    assert outputs["3"][1][0].split(" ", 2)[2] == outputs["1"][1][0].split(" ", 2)[2]


# -- clients that go away, clients that are slow ---------------------------------------------

SLOW_PLUGIN = """
    import asyncio
    class Slow:
        async def wait(self, request):
            await asyncio.sleep(0.5)
            return {"ok": True}
"""


def test_a_client_leaving_mid_request_is_not_an_error(tmp_path):
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        storage: "sqlite:///:memory:"
        plugins:
          slow:
            module: slow:Slow
            controllers:
              s: {wait: wait}
            routes:
              - {verb: get, url: /wait, controller: s, action: wait}
    """))
    for dev in (False, True):
        proc, base = start(tmp_path, *(["--dev"] if dev else []))
        port = int(base.rsplit(":", 1)[1])
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"GET /_/slow/wait HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.1)
        time.sleep(0.8)
        assert httpx.get(f"{base}/_/slow/wait").json()["result"] == {"ok": True}
        out = stop(proc)
        assert " ERROR " not in out and "Traceback" not in out, out
        if dev:
            assert out.count("client disconnected before the response") == 5, out


def test_slowloris_is_cut_off_while_others_are_served(tmp_path):
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        storage: "sqlite:///:memory:"
        server:
          request_timeout: 1s
          keep_alive_timeout: 1s
    """))
    proc, base = start(tmp_path)
    port = int(base.rsplit(":", 1)[1])
    try:
        slow = socket.create_connection(("127.0.0.1", port))
        slow.settimeout(0.2)
        request = b"GET /_now HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
        started, cut = time.monotonic(), None
        for byte in request:  # one byte every 50 ms: each one would restart Sanic's clock
            try:
                slow.sendall(bytes([byte]))
                got = slow.recv(1024)
            except TimeoutError:
                got = None
            except OSError:
                got = b""
            if got is not None:
                cut = time.monotonic() - started
                break
            assert httpx.get(f"{base}/_now", timeout=2).status_code == 200
        slow.close()
        assert cut is not None and 0.9 < cut < 3.5, cut
        # an idle connection goes after keep_alive_timeout
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.settimeout(5)
            idle.sendall(b"GET /_now HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert idle.recv(65536) == b""
            assert time.monotonic() - started < 3
    finally:
        stop(proc)


def test_a_slow_body_is_cut_off_after_request_timeout(tmp_path):
    (tmp_path / "gateway.yaml").write_text(
        'storage: "sqlite:///:memory:"\nserver:\n  request_timeout: 1s\n')
    proc, base = start(tmp_path)
    port = int(base.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.settimeout(0.2)
            slow.sendall(b"POST /_query HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")
            started, answer = time.monotonic(), None
            for _ in range(100):
                try:
                    slow.sendall(b" ")
                    answer = slow.recv(1024)
                    break
                except TimeoutError:
                    continue
                except OSError:
                    answer = b""
                    break
            assert answer is not None and time.monotonic() - started < 3.5
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        stop(proc)


def test_max_connections_refuses_extra_connections(tmp_path):
    (tmp_path / "gateway.yaml").write_text(
        'storage: "sqlite:///:memory:"\nserver:\n  max_connections: 3\n')
    proc, base = start(tmp_path)
    port = int(base.rsplit(":", 1)[1])
    held = []
    try:
        time.sleep(0.3)  # wait_for's connections are closed
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.settimeout(5)
            assert extra.recv(1024).startswith(b"HTTP/1.1 503")
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.3)
        assert httpx.get(f"{base}/_now").status_code == 200
    finally:
        for s in held:
            s.close()
        out = stop(proc)
    assert "server.max_connections (3) reached: 1 connection(s) refused" in out


def test_no_production_mode_advice_on_a_terminal(tmp_path):
    import pty

    (tmp_path / "gateway.yaml").write_text('storage: "sqlite:///:memory:"\n')
    primary, secondary = pty.openpty()  # Sanic gives its advice only when stdout is a tty
    port = free_port()
    try:
        proc = subprocess.Popen([SCRIPT, "run", "--dev", "--port", str(port)], cwd=tmp_path,
                                stdout=secondary, stderr=subprocess.PIPE, text=True)
        wait_for(f"http://127.0.0.1:{port}/_now", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(primary)
        os.close(secondary)
    assert "serving" in err
    assert "PRODUCTION" not in err and "--debug" not in err, err



def test_a_protocol_port_held_by_another_gateway_stops_the_start(tmp_path):
    """Protocol sockets use SO_REUSEPORT (one per worker): another gateway's must not be
    shared silently."""
    root = Path(__file__).resolve().parent.parent
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        (tmp_path / "gateway.yaml").write_text(
            'storage: "sqlite:///:memory:"\nserver:\n  protocols:\n    ndjson:\n'
            f"      module: handlers.ndjson:NdjsonProtocol\n      port: {port}\n")
        done = subprocess.run([sys.executable, "-m", "sanic_gateway", "run", "--port", "0"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(root)})
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr
    assert f"port {port} is in use; set server.protocols.ndjson.port" in done.stderr
    assert "Traceback" not in done.stderr
