"""The `start_gateway` fixture plugin authors use: configuration errors as `check` gives them,
plugins from the test's folder, fresh storage, free ports, sync and async clients, clean stops,
and a project outside this repository that only has the installed package."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sanic_gateway.testing import ConfigError

OPEN = 'storage: "sqlite:///:memory:"\n'


def open_with(yaml_text: str) -> str:
    """OPEN plus an indented block of YAML."""
    return OPEN + textwrap.dedent(yaml_text)


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    # the project's folder on the path: `handlers.*` imports there as in start_gateway
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-m", "sanic_gateway", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=path.parent, env=env)


def test_config_errors_are_the_lines_check_prints(start_gateway, tmp_path: Path) -> None:
    bad = """
        server:
          port: http
        plugins:
          notes:
            module: handlers.notes:NotesPlugin
            hooks: {"request:onSuccess": cuont}
    """
    with pytest.raises(ConfigError) as caught:
        start_gateway(bad)
    checked = run_check(tmp_path / "gateway.yaml")
    assert checked.returncode == 2
    lines = str(caught.value).splitlines()
    assert checked.stderr.splitlines()[:-1] == lines  # then "N error(s) in ..."
    assert any(":2: server.port: " in line for line in lines)
    assert any(":6: plugins.notes.hooks.request:onSuccess: no function 'cuont'" in line
               for line in lines)  # the plugins are checked in the same run


def test_a_plugin_whose_init_fails_stops_the_start(start_gateway, tmp_path: Path) -> None:
    from sanic_gateway.gateway import PluginStartError

    with pytest.raises(PluginStartError, match="plugin 'broken': init failed: RuntimeError"):
        start_gateway(open_with("""
            plugins:
              broken: {module: tests.plugins.lifecycle:Lifecycle, config: {fail_init: true}}
        """))


def test_storage_is_fresh_for_each_gateway(start_gateway, tmp_path: Path) -> None:
    first = start_gateway("storage: sqlite:///./data/kept.db\n")
    created = first.http_sync.post("/users/bob/_create", json={
        "content": {"profileIds": ["default"]},
        "credentials": {"local": {"username": "bob", "password": "bob-password"}}})
    assert created.status_code == 200, created.text
    assert first.login("bob", "bob-password").jwt
    second = start_gateway("storage: sqlite:///./data/kept.db\n")
    with pytest.raises(AssertionError, match="login as 'bob' failed"):
        second.login("bob", "bob-password")
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(
        f"gateway-{n}.db" for n in _numbers(tmp_path))
    assert not (Path(__file__).parent / "data").exists()  # not next to the test


def _numbers(tmp_path: Path) -> list[str]:
    return [p.stem.removeprefix("gateway-") for p in tmp_path.glob("gateway-*.db")]


def test_env_and_a_yaml_file_and_every_port_free(start_gateway, tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(OPEN + textwrap.dedent("""
        server:
          port: 7512
          protocols:
            ndjson: {module: handlers.ndjson:NdjsonProtocol, port: ${NDJSON_PORT}}
            mqtt: {enabled: true, port: 1883}
        security:
          users:
            carol:
              profileIds: [admin]
              credentials: {local: {username: carol-login, password: "${CAROL}"}}
    """))
    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "handlers").symlink_to(repo / "handlers")  # a file takes modules from its folder
    gateway = start_gateway(path, env={"NDJSON_PORT": "7513", "CAROL": "carol-secret-1"})
    assert gateway.url != "http://127.0.0.1:7512"
    assert gateway.port("ndjson") not in (0, 7513) and gateway.port("mqtt") not in (0, 1883)
    carol = gateway.login("carol")  # kuid or username; the declared password
    assert carol.jwt and gateway.login("carol-login", "carol-secret-1").jwt
    assert carol.http_sync.get("/_me").json()["result"]["_id"] == "carol"


def test_sync_clients(start_gateway) -> None:
    gateway = start_gateway(OPEN)
    assert gateway.http_sync.query(controller="server", action="now")["status"] == 200
    with gateway.websocket_sync() as ws:
        sub = ws.query(controller="realtime", action="subscribe", index="i", collection="c",
                       body={})
        # the notification carries the publish's requestId: it is still told apart
        published = ws.query(controller="realtime", action="publish", index="i",
                             collection="c", body={"n": 1}, requestId="same")
        assert published["result"] == {"published": True}
        note = ws.next_notification()
        assert note["room"] == sub["result"]["channel"] and note["requestId"] == "same"
        with pytest.raises(TimeoutError, match=r"no notification within 0\.2s"):
            ws.next_notification(timeout=0.2)


async def test_async_clients_and_the_gateway_loop(start_gateway) -> None:
    gateway = start_gateway(OPEN)
    assert (await gateway.http.query(controller="server", action="now"))["status"] == 200
    async with gateway.websocket() as ws:
        request_id = await ws.send(controller="server", action="now")
        answer = await ws.answer(request_id)
        assert answer["requestId"] == request_id and answer["status"] == 200
        with pytest.raises(TimeoutError):
            await ws.next_notification(timeout=0.2)
    assert gateway.run(_storage_is_open(gateway))


async def _storage_is_open(gateway) -> bool:
    return gateway.gateway.storage is not None


def test_stop_closes_the_port_and_shuts_plugins_down(start_gateway) -> None:
    gateway = start_gateway(open_with("""
        plugins:
          rec: {module: tests.plugins.lifecycle:Lifecycle}
    """))
    port = int(gateway.url.rsplit(":", 1)[1])
    recorder = gateway.plugin("rec")
    gateway.stop()
    gateway.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert recorder.shut_down


# -- from outside this repository ---------------------------------------------------------------

PLUGIN = '''
class Hello:
    def init(self, config, context):
        self.greeting = config.get("greeting", "hello")

    async def greet(self, request):
        return {"text": f"{self.greeting}, {request.input.args.get('name', 'you')}"}
'''

TESTS = '''
YAML = """
plugins:
  hello:
    module: hello:Hello
    config: {greeting: hi}
    controllers: {hello: {greet: greet}}
    routes: [{verb: get, url: /greet, controller: hello, action: greet}]
"""


def test_sync(start_gateway):
    gateway = start_gateway(YAML)
    assert gateway.http_sync.get("/_/hello/greet?name=bo").json()["result"] == {"text": "hi, bo"}


async def test_async(start_gateway):
    gateway = start_gateway(YAML)
    async with gateway.websocket() as ws:
        answer = await ws.query(controller="hello/hello", action="greet", name="al")
    assert answer["result"] == {"text": "hi, al"}
'''


PYPROJECT = """
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
filterwarnings = ["error"]
"""


def outside_project(tmp_path: Path, pyproject: str | None) -> Path:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "hello.py").write_text(PLUGIN)
    (project / "tests" / "test_hello.py").write_text(TESTS)
    if pyproject is not None:
        (project / "pyproject.toml").write_text(pyproject)
    return project


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pytest` in `project`, with nothing of this repository but the installed
    package (and no conftest: the fixture comes from the pytest11 entry point)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-W", "error", *args], cwd=project, capture_output=True, text=True,
                          timeout=300, env=env)


def test_a_project_outside_the_repository_uses_the_fixture(tmp_path: Path) -> None:
    project = outside_project(tmp_path, PYPROJECT)
    result = run_pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_sync_tests_need_no_asyncio_plugin(tmp_path: Path) -> None:
    project = outside_project(tmp_path, None)
    result = run_pytest(project, "-p", "no:asyncio", "-p", "no:anyio", "-k", "test_sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_folder_plugin_beside_the_yaml_file(start_gateway, tmp_path: Path) -> None:
    folder = tmp_path / "plugins" / "echo"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"name": "echo", "gatewayVersion": ">=0.1"}')
    (folder / "__init__.py").write_text(
        "class Plugin:\n"
        "    def init(self, config, context):\n        pass\n\n"
        "    async def echo(self, request):\n        return dict(request.input.body)\n")
    (tmp_path / "gateway.yaml").write_text(open_with("""
        plugins:
          echo: {path: plugins/echo, controllers: {echo: {echo: echo}}}
    """))
    gateway = start_gateway(tmp_path / "gateway.yaml")
    answer = gateway.http_sync.query(controller="echo/echo", action="echo", body={"a": 1})
    assert answer["result"] == {"a": 1}
