"""The command line as a user runs it: `check` and `run` in subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# the console script installed beside this interpreter
SCRIPT = str(Path(sys.executable).parent / "sanic-gateway")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sanic_gateway", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_check_the_example_gateway_yaml():
    done = cli("check", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "plugins (2):" in done.stdout
    assert "notes  [handlers.notes:NotesPlugin]" in done.stdout
    assert "pipe notes/notes:beforeCreate -> stamp" in done.stdout
    assert "POST   /_plugin/notes/notes -> notes/notes:create" in done.stdout


def test_check_reports_every_error_at_once_without_traceback(tmp_path):
    (tmp_path / "audit.py").write_text(textwrap.dedent("""
        class Audit:
            def add_created_at(self, request):
                return request
    """))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        server:
          prot: 7512
        limits:
          pipe_timeout: soon
        plugins:
          audit:
            module: audit:Audit
            pipes:
              "document:beforeCreate": add_created
          other:
            module: missing_module:X
    """))
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2
    err = done.stderr
    assert "Traceback" not in err
    assert "gateway.yaml:2: server.prot: unknown key 'prot' (did you mean 'port'?)" in err
    assert "gateway.yaml:4: limits.pipe_timeout:" in err and "soon" in err
    # the plugins are imported in the same run: their errors come with the file's
    assert ("gateway.yaml:9: plugins.audit.pipes.document:beforeCreate: no function "
            "'add_created' in audit:Audit (did you mean 'add_created_at'?)") in err
    assert "gateway.yaml:11: plugins.other.module: cannot import 'missing_module'" in err
    assert err.splitlines()[-1] == "4 error(s) in gateway.yaml"


CLUSTER_MISTAKES = """\
    server:
      port: [1]
    storage: sqlite:///./data/gateway.db
    cluster:
      redis: redis://127.0.0.1:6379/0
      heartbeat: 2s
      node_timeout: 1s
    plugins:
      greet:
        module: greet:Greet
        hooks:
          "greet/hi:beforeHelo": seen
        controllers:
          hi: {hello: hello, bye: by}
    auth:
      jwt:
        secret: short
"""


def _greet(tmp_path: Path, yaml_text: str) -> None:
    (tmp_path / "greet.py").write_text(textwrap.dedent("""
        class Greet:
            def hello(self, request):
                return "hi"
            def bye(self, request):
                return "bye"
            def seen(self, payload):
                pass
    """))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(yaml_text))


def test_check_and_run_report_every_error_in_line_order_then_the_warnings(tmp_path):
    """Cross-key checks (SQLite with cluster mode, node_timeout below twice the heartbeat),
    the plugins' functions and the file's own errors, in one run, by line, with the
    warnings after them (exit 2 all the same)."""
    _greet(tmp_path, CLUSTER_MISTAKES)
    expected = [
        "gateway.yaml:2: server.port: expected an integer, got a list",
        "gateway.yaml:3: storage: cluster mode (cluster.redis) needs PostgreSQL storage "
        "(postgresql://...): the members share users, tokens and documents through it, and a "
        "SQLite file belongs to one machine",
        "gateway.yaml:7: cluster.node_timeout: must be at least twice cluster.heartbeat (2s): "
        "a member silent for 1s would be dropped between two of its own heartbeats",
        "gateway.yaml:14: plugins.greet.controllers.hi.bye: no function 'by' in greet:Greet "
        "(did you mean 'bye'?)",
        "gateway.yaml:17: auth.jwt.secret: too short: at least 32 characters (or empty: one is "
        "then generated and kept in storage)",
        "5 error(s) in gateway.yaml",
    ]
    for command in ("check", "run"):
        done = cli(command, cwd=tmp_path)
        assert done.returncode == 2, command
        assert done.stderr.splitlines() == expected, command
    # with the controller right, the hook on a misspelt event of it is a warning, shown too
    (tmp_path / "gateway.yaml").write_text(
        (tmp_path / "gateway.yaml").read_text().replace("bye: by}", "bye: bye}"))
    warning = ("warning: gateway.yaml:12: plugins.greet.hooks.greet/hi:beforeHelo: 'seen' "
               "listens to an event the gateway never fires (did you mean "
               "'greet/hi:beforeHello'?)")
    for command in ("check", "run"):
        done = cli(command, cwd=tmp_path)
        assert done.returncode == 2, command
        assert done.stderr.splitlines() == [*expected[:3], expected[4], warning,
                                            "4 error(s) and 1 warning(s) in gateway.yaml"]


def test_plugin_errors_are_in_line_order_with_a_warning_after_them(tmp_path):
    """A valid file whose plugins are wrong: errors by line although found plugin by plugin,
    then the warnings the successful check would have printed."""
    _greet(tmp_path, """\
        plugins:
          late:
            module: greet:Greet
            controllers:
              late: {hello: helo}
          greet:
            module: greet:Greet
            hooks:
              "greet/hi:beforeHelo": seen
            controllers:
              hi: {hello: hello}
          early:
            module: nowhere:Greet
    """)
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    # the import error is found first (every plugin is imported before any is checked)
    assert [line.split(":")[1] for line in lines[:2]] == ["5", "13"]
    assert lines[2].startswith("warning: gateway.yaml:9: plugins.greet.hooks.")
    assert lines[3] == "2 error(s) and 1 warning(s) in gateway.yaml"


def test_malformed_yaml_and_missing_variable(tmp_path):
    (tmp_path / "gateway.yaml").write_text("server:\n  port: [1, 2\n")
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "gateway.yaml:" in done.stderr
    (tmp_path / "gateway.yaml").write_text("auth:\n  jwt:\n    secret: ${NO_SUCH_SECRET}\n")
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2
    assert "NO_SUCH_SECRET" in done.stderr


def test_missing_config_file(tmp_path):
    for command in ("check", "run"):
        done = cli(command, "--config", "nope.yaml", cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr == (f"nope.yaml: file not found (looked for {tmp_path / 'nope.yaml'})"
                               "; pass --config PATH\n")


def test_command_line_conventions(tmp_path):
    done = cli(cwd=tmp_path)  # no arguments: the help, as a usage error
    assert done.returncode == 2
    assert done.stderr.startswith("usage: sanic-gateway") and "run" in done.stderr
    assert "Exit codes:" in done.stderr
    for flag in ("-V", "--version"):
        done = cli(flag, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout.startswith("sanic-gateway 0."), done
    for command in ("run", "check"):
        done = cli(command, "--help", cwd=tmp_path)
        assert done.returncode == 0
        description = done.stdout.split("\n\n")[1]
        assert description and not description.startswith("options"), done.stdout
    done = cli("serve", cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice: 'serve'" in done.stderr


def test_entry_point_plugins_load_only_when_named(tmp_path):
    site = tmp_path / "site"
    (site / "ep_plugin").mkdir(parents=True)
    (site / "ep_plugin" / "__init__.py").write_text(textwrap.dedent("""
        class Plugin:
            def ping(self, request):
                return {"pong": True}
    """))
    dist = site / "ep_plugin-1.2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.2.0\n")
    (dist / "entry_points.txt").write_text("[sanic_gateway]\nping = ep_plugin:Plugin\n")
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        plugins:
          pinger:
            entry_point: ping
            controllers:
              p: {ping: ping}
            routes:
              - {verb: get, url: /ping, controller: p, action: ping}
    """))
    env = {"PYTHONPATH": str(site)}
    done = cli("check", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "pinger  [entry point ping (ep_plugin:Plugin)]" in done.stdout
    (tmp_path / "gateway.yaml").write_text("plugins:\n  pinger:\n    entry_point: pong\n")
    done = cli("check", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "no entry point 'pong'" in done.stderr and "(did you mean 'ping'?)" in done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_run_serves_the_example(tmp_path):
    port = free_port()
    # the example's storage goes to a fresh folder: copy the example there
    for name in ("gateway.yaml", "handlers"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    proc = subprocess.Popen(
        [SCRIPT, "run", "--port", str(port)], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/_now", proc)
        anonymous = httpx.post(f"{base}/_/notes/notes", json={"text": "buy milk"})
        assert anonymous.status_code == 401  # the example's anonymous role may only read
        login = httpx.post(f"{base}/_login/local",
                           json={"username": "alice", "password": "alice-password"})
        auth = {"Authorization": f"Bearer {login.json()['result']['jwt']}"}
        created = httpx.post(f"{base}/_/notes/notes", json={"text": "buy milk"},
                             headers=auth).json()
        assert created["status"] == 200
        note = created["result"]
        assert note["_source"]["text"] == "buy milk"
        assert isinstance(note["_source"]["createdAt"], int)  # stamped by the pipe
        got = httpx.get(f"{base}/_plugin/notes/notes/{note['_id']}").json()
        assert got["result"] == note
        bad = httpx.post(f"{base}/_/notes/notes", json={"title": "no text"}, headers=auth)
        assert bad.status_code == 400
        assert bad.json()["error"]["id"] == "api.assert.missing_argument"
        time.sleep(0.2)
        stats = httpx.get(f"{base}/_/notes/stats").json()["result"]
        assert stats["notes/notes:create"] == 1  # counted by the hook
        assert stats["notes/notes:get"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_run_refuses_to_start_when_init_fails(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        class Bad:
            def init(self, config, context):
                raise RuntimeError("cannot reach the database")
    """))
    (tmp_path / "gateway.yaml").write_text("plugins:\n  bad:\n    module: bad:Bad\n")
    proc = subprocess.run([SCRIPT, "run", "--port", str(free_port())], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "plugin 'bad': init failed: RuntimeError: cannot reach the database" in output
    assert "Traceback" not in output


def test_a_short_jwt_secret_is_refused_by_check_and_run_alike(tmp_path):
    (tmp_path / "gateway.yaml").write_text(
        'auth: {jwt: {secret: short}}\nstorage: "sqlite:///:memory:"\n')
    line = ("gateway.yaml:1: auth.jwt.secret: too short: at least 32 characters (or empty: "
            "one is then generated and kept in storage)")
    for command in (["check"], ["run", "--port", str(free_port())]):
        done = cli(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert line in done.stderr and "Traceback" not in done.stderr


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path):
    (tmp_path / "gateway.yaml").write_text(
        "auth: {jwt: {secret: 12345678901234567890123456789012345}}\n")
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2
    assert "auth.jwt.secret: expected a string, got a value not shown" in done.stderr
    assert "1234567890" not in done.stderr


def test_check_piped_into_head_ends_quietly():
    done = subprocess.run(f"{sys.executable} -m sanic_gateway check | head -1", shell=True,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout == "gateway.yaml: OK\n"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_a_listener_on_an_event_never_fired_is_warned_with_a_suggestion(tmp_path):
    (tmp_path / "greet.py").write_text(textwrap.dedent("""
        class Greet:
            async def hello(self, request):
                return {}
            async def up(self, request):
                return request
            async def seen(self, payload, event):
                pass
    """))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent("""\
        storage: "sqlite:///:memory:"
        plugins:
          greet:
            module: greet:Greet
            pipes:
              "greet/hi:beforeHelo": up
            hooks:
              "request:onSucess": seen
              "plugin-greet:custom": seen
              "request:on*": seen
            controllers:
              hi: {hello: hello}
    """))
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("warning: gateway.yaml:6: plugins.greet.pipes.greet/hi:beforeHelo: 'up' listens to "
            "an event the gateway never fires (did you mean 'greet/hi:beforeHello'?)"
            ) in done.stdout
    assert "request:onSucess: 'seen' listens to an event the gateway never fires (did you " \
           "mean 'request:onSuccess'?)" in done.stdout
    assert "plugin-greet:custom" not in done.stdout.split("warning:", 1)[1]
    assert done.stdout.count("warning:") == 2
