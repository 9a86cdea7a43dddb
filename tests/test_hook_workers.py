"""`threads: N` on a plugin: its hooks run in N worker processes, fed round-robin, restarted
when they die, stopped cleanly with the server. Driven through HTTP against real gateways
(the `serve` fixture, or `sanic-gateway run` in a subprocess)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_files
from tests.test_cli import SCRIPT, free_port, wait_for

AUDIT = """\
    import json, os, time
    from pathlib import Path


    class Audit:
        def init(self, config, context):
            self.out = Path(config["out"])
            self.out.mkdir(exist_ok=True)
            self.context = context
            where = "server" if context.accessors is not None else "worker"
            (self.out / f"init-{where}-{os.getpid()}").write_text(json.dumps({
                "accessors": context.accessors is not None,
                "constructors": sorted(vars(context.constructors)),
                "config_storage": context.config["storage"],
            }))

        def record(self, request, event):
            sleep = float(request.input.args.get("sleep") or 0)
            if sleep:
                time.sleep(sleep)
            if request.input.args.get("fail"):
                raise ValueError("audit failed on purpose")
            line = json.dumps({
                "pid": os.getpid(), "event": event, "id": request.id,
                "controller": request.input.controller, "action": request.input.action,
                "args": request.input.args, "result": request.result,
                "user": request.context.user._id, "protocol": request.context.protocol,
                "index": request.input.resource["index"], "error": request.error,
            })
            with open(self.out / f"events-{os.getpid()}.jsonl", "a") as f:
                f.write(line + "\\n")

        def custom(self, payload, event):
            pass

        def hello(self, request):
            return {"pid": os.getpid()}

        async def fire(self, request):
            if request.input.args.get("local"):  # a class only this process can import
                import sys, types
                module = sys.modules["only_in_server"] = types.ModuleType("only_in_server")
                module.Thing = type("Thing", (), {"__module__": "only_in_server"})
                await self.context.accessors.trigger("odd", {"thing": module.Thing()})
            else:
                await self.context.accessors.trigger("odd", {"fn": lambda: None})
            return {"fired": True}
"""

WATCHER = """\
    class Watcher:
        def __init__(self):
            self.errors = []

        def on_error(self, payload, event):
            self.errors.append(payload)
"""


def audit_yaml(out: Path, threads: int = 2, limits: str = "") -> str:
    return f"""\
        storage: "sqlite:///data.db"
        {limits}
        plugins:
          audit:
            module: hw_handlers.audit:Audit
            threads: {threads}
            config: {{out: "{out}"}}
            hooks:
              "request:onSuccess": record
              "plugin-audit:odd": custom
            controllers:
              api: {{hello: hello, fire: fire}}
            routes:
              - {{verb: get, url: /hello, controller: api, action: hello}}
              - {{verb: get, url: /fire, controller: api, action: fire}}
          watcher:
            module: hw_handlers.watcher:Watcher
            hooks:
              "hook:onError": on_error
    """


FILES = {"hw_handlers/__init__.py": "", "hw_handlers/audit.py": AUDIT,
         "hw_handlers/watcher.py": WATCHER}


@pytest.fixture(autouse=True)
def fresh_modules():
    """Each test imports its own copy of the plugins (from its own folder)."""
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in ("hw_handlers", "picky")]:
        del sys.modules[name]


def events(out: Path) -> list[dict]:
    found = []
    for file in out.glob("events-*.jsonl"):
        found += [json.loads(line) for line in file.read_text().splitlines()]
    return found


async def until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_events_go_round_robin_to_workers_that_ran_init_without_accessors(
        serve, tmp_path):
    out = tmp_path / "out"
    served = await serve(audit_yaml(out), files=FILES)
    pool = served.gateway.hook_pools["audit"]
    workers = pool.pids()
    assert len(workers) == 2 and os.getpid() not in workers
    ids = []
    for n in range(10):
        response = await served.client.get(f"/_plugin/audit/hello?n={n}")
        assert response.status_code == 200
        # the controller stays in the server process
        assert response.json()["result"] == {"pid": os.getpid()}
        ids.append(response.json()["requestId"])
    await until(lambda: len(events(out)) >= 10)
    seen = events(out)
    assert sorted(e["id"] for e in seen) == sorted(ids)
    per_pid = {pid: sum(e["pid"] == pid for e in seen) for pid in workers}
    assert per_pid == {workers[0]: 5, workers[1]: 5}
    first = next(e for e in seen if e["id"] == ids[3])
    # the Request crossed as data with the attribute names of a Request
    assert first["controller"] == "audit/api" and first["action"] == "hello"
    assert first["args"] == {"n": "3"} and first["result"] == {"pid": os.getpid()}
    assert first["user"] == "-1" and first["protocol"] == "http" and first["error"] is None
    assert first["event"] == "request:onSuccess"
    # init ran in the server process and in each worker; workers have no accessors
    inits = {p.name: json.loads(p.read_text()) for p in out.glob("init-*")}
    assert set(inits) == {f"init-server-{os.getpid()}",
                          *(f"init-worker-{pid}" for pid in workers)}
    for pid in workers:
        worker = inits[f"init-worker-{pid}"]
        assert worker["accessors"] is False
        assert worker["constructors"] == ["ClientConnection", "Repository", "Request",
                                          "RequestContext"]
        assert worker["config_storage"] == "sqlite:///data.db"


async def test_a_killed_worker_is_restarted_and_its_events_handled(serve, tmp_path, caplog):
    out = tmp_path / "out"
    served = await serve(audit_yaml(out), files=FILES)
    pool = served.gateway.hook_pools["audit"]
    before = pool.pids()
    ids = []
    for n in range(8):
        response = await served.client.get(f"/_plugin/audit/hello?n={n}&sleep=0.3")
        ids.append(response.json()["requestId"])
    os.kill(before[0], signal.SIGKILL)
    await until(lambda: {e["id"] for e in events(out)} >= set(ids))
    await until(lambda: len(pool.pids()) == 2 and before[0] not in pool.pids())
    assert pool.restarts == 1
    assert any("exited (code -9)" in r.getMessage() and "restarting" in r.getMessage()
               for r in caplog.records)
    # the new worker serves too
    later = []
    for n in range(4):
        response = await served.client.get(f"/_plugin/audit/hello?later={n}")
        later.append(response.json()["requestId"])
    await until(lambda: {e["id"] for e in events(out)} >= set(later))
    new = (set(pool.pids()) - set(before)).pop()
    assert any(e["pid"] == new for e in events(out) if e["id"] in later)


async def test_a_hung_worker_is_killed_and_restarted(serve, tmp_path, caplog):
    out = tmp_path / "out"
    served = await serve(audit_yaml(out, limits="limits: {hook_workers_timeout: 1s}"),
                         files=FILES)
    pool = served.gateway.hook_pools["audit"]
    before = pool.pids()
    hung = await served.client.get("/_plugin/audit/hello?sleep=600")
    assert hung.status_code == 200
    ok = [(await served.client.get(f"/_plugin/audit/hello?n={n}")).json()["requestId"]
          for n in range(4)]
    await until(lambda: {e["id"] for e in events(out)} >= set(ok))
    await until(lambda: pool.restarts >= 1 and len(pool.pids()) == 2, timeout=30)
    assert set(pool.pids()) != set(before)
    assert any("hung (no message for 1 s)" in r.getMessage() for r in caplog.records)


async def test_a_hook_raising_in_a_worker_fires_hook_on_error_in_the_server(serve, tmp_path):
    out = tmp_path / "out"
    served = await serve(audit_yaml(out), files=FILES)
    response = await served.client.get("/_plugin/audit/hello?fail=1")
    assert response.status_code == 200  # hooks never change the response
    watcher = served.plugin("watcher")
    await until(lambda: watcher.errors)
    payload = watcher.errors[0]
    assert payload["event"] == "request:onSuccess" and payload["plugin"] == "audit"
    assert payload["error"].id == "plugin.runtime.unexpected_error"
    assert "ValueError: audit failed on purpose" in payload["error"].message


async def test_an_unserialisable_payload_is_logged_with_its_event(serve, tmp_path, caplog):
    out = tmp_path / "out"
    served = await serve(audit_yaml(out), files=FILES)
    caplog.set_level(logging.ERROR, "sanic_gateway.hook_workers")
    response = await served.client.get("/_plugin/audit/fire")
    assert response.status_code == 200 and response.json()["result"] == {"fired": True}
    messages = [r.getMessage() for r in caplog.records if r.name == "sanic_gateway.hook_workers"]
    assert any("'plugin-audit:odd' cannot be sent" in m for m in messages), messages
    assert served.gateway.hook_pools["audit"].unserialisable == 1
    # a payload the worker cannot load: a hook error, told to hook:onError
    response = await served.client.get("/_plugin/audit/fire?local=1")
    assert response.status_code == 200
    watcher = served.plugin("watcher")
    await until(lambda: watcher.errors)
    assert watcher.errors[0]["event"] == "plugin-audit:odd"
    assert "cannot load the payload" in watcher.errors[0]["error"].message
    assert "only_in_server" in watcher.errors[0]["error"].message
    # the workers are still there and serve the next events
    response = await served.client.get("/_plugin/audit/hello")
    await until(lambda: any(e["id"] == response.json()["requestId"] for e in events(out)))


async def test_saturated_workers_drop_and_count_events(serve, tmp_path, caplog):
    out = tmp_path / "out"
    served = await serve(audit_yaml(out, threads=1,
                                    limits="limits: {hook_workers_buffer_size: 2}"),
                         files=FILES)
    pool = served.gateway.hook_pools["audit"]
    for _ in range(6):
        assert (await served.client.get("/_plugin/audit/hello?sleep=0.2")).status_code == 200
    assert pool.dropped >= 3
    assert any("every hook worker is saturated" in r.getMessage() for r in caplog.records)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def run_gateway(tmp_path: Path, out: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    write_files(tmp_path, {"gateway.yaml": audit_yaml(out), **FILES})
    port = free_port()
    proc = subprocess.Popen([SCRIPT, "run", "--port", str(port), *args], cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/_now", proc)
    return proc, base


def worker_pids(out: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 20
    while True:
        pids = [int(p.name.rpartition("-")[2]) for p in out.glob("init-worker-*")]
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def check_clean_stop(tmp_path: Path, *args: str, sig: int, workers: int) -> None:
    out = tmp_path / "out"
    proc, base = run_gateway(tmp_path, out, *args)
    try:
        pids = worker_pids(out, 2 * workers)
        assert len(pids) == 2 * workers
        ids = [httpx.get(f"{base}/_plugin/audit/hello?sleep=0.5&n={n}").json()["requestId"]
               for n in range(4)]
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    # the events in hand were finished, then every worker process ended
    assert {e["id"] for e in events(out) if e["action"] == "hello"} == set(ids), output
    assert [pid for pid in pids if alive(pid)] == [], output
    assert "Traceback" not in output


def test_run_stops_workers_cleanly_on_sigterm(tmp_path):
    check_clean_stop(tmp_path, sig=signal.SIGTERM, workers=1)


def test_run_with_several_server_workers_leaves_no_orphan_on_sigint(tmp_path):
    check_clean_stop(tmp_path, "--workers", "2", sig=signal.SIGINT, workers=2)


def test_hook_workers_die_with_a_killed_server(tmp_path):
    out = tmp_path / "out"
    proc, base = run_gateway(tmp_path, out)
    try:
        pids = worker_pids(out, 2)
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        # both workers busy in a hook: they cannot notice their socket closing
        for _ in range(2):
            assert httpx.get(f"{base}/_plugin/audit/hello?sleep=600").status_code == 200
        time.sleep(0.5)
        proc.kill()
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in worker_pids(out, 0):  # never leave one behind, even when failing
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_an_init_failing_in_a_worker_stops_the_start_in_one_line(tmp_path):
    write_files(tmp_path, {
        "gateway.yaml": """\
            storage: "sqlite:///data.db"
            plugins:
              picky:
                module: picky:Picky
                threads: 1
                hooks: {"request:onSuccess": seen}
            """,
        "picky.py": """\
            class Picky:
                def init(self, config, context):
                    if context.accessors is None:
                        raise RuntimeError("needs accessors")

                def seen(self, payload, event):
                    pass
            """})
    done = subprocess.run([SCRIPT, "run", "--port", str(free_port())], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert ("plugin 'picky': init failed: RuntimeError: init failed in hook worker process: "
            "RuntimeError: needs accessors") in done.stderr
    assert "Traceback" not in done.stderr


def test_a_request_crosses_as_data_without_its_jwt():
    from sanic_gateway.hook_workers import RequestView, to_data
    from sanic_gateway.request import ClientConnection, Request, RequestContext
    from sanic_gateway.security.policy import User
    from sanic_gateway.security.tokens import Token

    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    connection = ClientConnection("http", ["10.0.0.1"],
                                  {"Authorization": f"Bearer {jwt}", "x-app": "1"})
    request = Request({"controller": "c", "action": "a", "index": "i", "_id": "d", "jwt": jwt,
                       "body": {"k": [1, 2]}, "n": "3"},
                      RequestContext(connection, User("alice", ["admin"]),
                                     Token("jti", jwt, "alice", None, 0)))
    request.set_result({"ok": True})
    view = pickle.loads(pickle.dumps(to_data(request)))
    assert isinstance(view, RequestView)
    assert (view.input.controller, view.input.action, view.input.args) == ("c", "a", {"n": "3"})
    assert view.input.resource["_id"] == "d" and view.input.resource.index == "i"
    assert view.input.body == {"k": [1, 2]} and view.result == {"ok": True}
    assert view.status == 200 and view.error is None and view.id == request.id
    assert view.context.user._id == "alice" and view.context.user.profileIds == ["admin"]
    assert view.context.token.userId == "alice"
    assert view.context.connection.headers == {"x-app": "1"}
    assert view.context.protocol == "http"
    assert jwt not in repr(view) and "eyJ" not in pickle.dumps(view).decode("latin-1")


def test_an_init_hanging_in_a_worker_stops_the_start(tmp_path):
    write_files(tmp_path, {
        "gateway.yaml": """\
            storage: "sqlite:///data.db"
            limits: {hook_workers_timeout: 1s}
            plugins:
              picky:
                module: picky:Picky
                threads: 1
                hooks: {"request:onSuccess": seen}
            """,
        "picky.py": """\
            import time


            class Picky:
                def init(self, config, context):
                    if context.accessors is None:
                        time.sleep(600)

                def seen(self, payload, event):
                    pass
            """})
    started = time.monotonic()
    done = subprocess.run([SCRIPT, "run", "--port", str(free_port())], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert ("plugin 'picky': init failed: RuntimeError: init failed in hook worker process: "
            "init did not finish within 1 s (limits.hook_workers_timeout)") in done.stderr
    assert time.monotonic() - started < 30
