"""`sanic-gateway new plugin|protocol NAME` as a user runs it: the files it writes, the tests it
writes passing as written, `--add` keeping the user's gateway.yaml, and every refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = str(Path(sys.executable).parent / "sanic-gateway")

USER_YAML = """\
# My gateway: comments and layout must survive --add
server:
  port: 7512        # the port
  protocols:
    # nothing custom yet
    websocket: {idle_timeout: 30s}

plugins:
    # four spaces here, on purpose
    audit:
        module: audit:Audit   # a plugin of mine

# storage last
storage: "sqlite:///:memory:"
"""

AUDIT = "class Audit:\n    def init(self, config, context):\n        pass\n"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The generated tests, run as their author would, with nothing from this repository but
    the installed package (pytest-asyncio included); `-W error`: they must not even warn."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-W", "error", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300, env=env)


def test_new_plugin_writes_a_module_a_passing_test_and_prints_the_block(tmp_path: Path):
    done = cli("new", "plugin", "greeter", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["greeter.py", "pytest.ini",
                                                          "test_greeter.py"]
    assert "wrote greeter.py\nwrote test_greeter.py\nwrote pytest.ini" in done.stdout
    assert "plugins:\n  greeter:\n    module: greeter:GreeterPlugin\n" in done.stdout
    assert '"greeter/greeter:beforeGreet": check_name' in done.stdout
    assert "test it: python -m pytest test_greeter.py" in done.stdout
    module = (tmp_path / "greeter.py").read_text()
    assert "class GreeterPlugin:" in module and "async def check_name" in module
    ran = pytest_in(tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "3 passed" in ran.stdout


def test_new_protocol_writes_a_module_a_passing_test_and_prints_the_block(tmp_path: Path):
    done = cli("new", "protocol", "lines", "--dir", "proto", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "proto"
    assert sorted(p.name for p in folder.iterdir()) == ["lines.py", "pytest.ini",
                                                        "test_lines.py"]
    # gateway.yaml is in the current folder: the module is found as a package path
    assert ("server:\n  protocols:\n    lines:  # one JSON request per line over TCP\n"
            "      module: proto.lines:LinesProtocol\n      port: 7600\n") in done.stdout
    ran = pytest_in(folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 passed" in ran.stdout


def test_the_generated_test_runs_without_a_warning_from_the_first_run(tmp_path: Path):
    """pytest-asyncio warns while its loop scope is unset: the pytest.ini written beside the
    test sets it, and the first run prints no warning at all (not even with -W default)."""
    done = cli("new", "plugin", "greeter", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "asyncio_default_fixture_loop_scope = function" in (
        tmp_path / "pytest.ini").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    ran = subprocess.run([sys.executable, "-m", "pytest", "test_greeter.py"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "warning" not in (ran.stdout + ran.stderr).lower(), ran.stdout


@pytest.mark.parametrize(("config", "text", "note"), [
    ("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-q'\n", True),
    ("setup.cfg", "[tool:pytest]\nasyncio_default_fixture_loop_scope = function\n", False),
    ("tox.ini", "[pytest]\n", True),
])
def test_a_pytest_configuration_of_the_user_is_kept(tmp_path: Path, config: str, text: str,
                                                    note: bool):
    """Above the folder or in it, the user's own configuration governs: no pytest.ini is
    written, and a note says when it lacks the setting."""
    (tmp_path / config).write_text(text)
    done = cli("new", "plugin", "greeter", "--dir", "plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "plugins" / "pytest.ini").exists()
    said = f"note: {tmp_path / config} configures pytest without " \
           "asyncio_default_fixture_loop_scope"
    assert (said in done.stdout) == note, done.stdout
    assert (tmp_path / config).read_text() == text


def test_add_keeps_the_file_and_check_accepts_the_result(tmp_path: Path):
    (tmp_path / "gateway.yaml").write_text(USER_YAML)
    (tmp_path / "audit.py").write_text(AUDIT)
    plugin = cli("new", "plugin", "shout-out", "--dir", "extensions", "--add", cwd=tmp_path)
    assert plugin.returncode == 0, plugin.stderr
    assert "added plugins.shout-out to gateway.yaml:" in plugin.stdout
    protocol = cli("new", "protocol", "lines", "--dir", "extensions", "--add", cwd=tmp_path)
    assert protocol.returncode == 0, protocol.stderr
    text = (tmp_path / "gateway.yaml").read_text()
    # the user's text is all there, in order: only lines were added
    added = iter(text.splitlines())
    assert all(any(line == kept for kept in added) for line in USER_YAML.splitlines())
    assert ("        module: audit:Audit   # a plugin of mine\n"
            "    shout-out:\n"
            "      module: extensions.shout_out:ShoutOutPlugin\n") in text
    assert ("    websocket: {idle_timeout: 30s}\n"
            "    lines:  # one JSON request per line over TCP\n"
            "      module: extensions.lines:LinesProtocol\n") in text
    assert text.index("shout-out:") < text.index("# storage last")
    checked = cli("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "shout-out  [extensions.shout_out:ShoutOutPlugin]" in checked.stdout
    assert "GET    /_/shout-out/greet -> shout-out/shout-out:greet" in checked.stdout
    assert "lines [extensions.lines:LinesProtocol]" in checked.stdout
    ran = pytest_in(tmp_path / "extensions")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "5 passed" in ran.stdout


def test_add_creates_gateway_yaml_when_there_is_none(tmp_path: Path):
    done = cli("new", "plugin", "first", "--add", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "gateway.yaml").read_text().startswith("plugins:\n  first:\n")
    assert cli("check", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (("plugin", "my plugin"), "invalid plugin name 'my plugin': use letters, digits"),
    (("plugin", "1st"), "must start with a letter or '_'"),
    (("plugin", "class"), "'class' is a Python keyword"),
    (("plugin", "json"), "a module 'json' is already importable here"),
    (("plugin", "test_me"), "pytest would take test_me.py for a test file"),
    (("protocol", "mqtt"), "'mqtt' is a built-in protocol"),
])
def test_invalid_names_are_refused(tmp_path: Path, args: tuple[str, str], message: str):
    done = cli("new", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_never_overwritten(tmp_path: Path):
    (tmp_path / "test_greeter.py").write_text("# mine\n")
    done = cli("new", "plugin", "greeter", cwd=tmp_path)
    assert done.returncode == 2
    assert "test_greeter.py exists: not overwritten" in done.stderr
    assert (tmp_path / "test_greeter.py").read_text() == "# mine\n"
    assert not (tmp_path / "greeter.py").exists()  # all or nothing


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("plugins: {audit: {module: audit:Audit}}\n", "plugins is written in flow style"),
    ("plugins:\n  greeter: {module: other:Other}\n", "plugins.greeter already exists"),
    ("plugins: [oops\n", "not valid YAML"),
])
def test_add_refuses_what_it_cannot_do_safely(tmp_path: Path, yaml_text: str, message: str):
    (tmp_path / "gateway.yaml").write_text(yaml_text)
    done = cli("new", "plugin", "greeter", "--add", cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "nothing was written" in done.stderr
    assert (tmp_path / "gateway.yaml").read_text() == yaml_text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.yaml"]


def test_a_second_protocol_gets_a_port_of_its_own(tmp_path: Path):
    assert cli("new", "protocol", "one", "--add", cwd=tmp_path).returncode == 0
    assert cli("new", "protocol", "two", "--add", cwd=tmp_path).returncode == 0
    text = (tmp_path / "gateway.yaml").read_text()
    assert "module: one:OneProtocol\n      port: 7600\n" in text
    assert "module: two:TwoProtocol\n      port: 7601\n" in text
    assert cli("check", cwd=tmp_path).returncode == 0
