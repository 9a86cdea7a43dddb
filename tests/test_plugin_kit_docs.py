"""The pages about testing plugins and `sanic-gateway new` show what really happens: their
files, run as the reader would run them, pass; the scaffold page shows exactly what the command
writes and prints.

Blocks are found by the HTML comment on the line before their fence: `<!-- file: NAME -->`
(a file of the page's example, loaded by its gateway.yaml), `<!-- project: NAME -->` (another
file of the example project: tests, pyproject.toml), `<!-- scaffold: before|after -->` (a
gateway.yaml before and after `--add`). Console blocks are found by their command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "sanic-gateway")
_BLOCK = re.compile(r"(?:<!-- (\w+): ([\w./-]+) -->\n)?```(\w*)\n(.*?)```", re.DOTALL)


def page_blocks(name: str) -> list[tuple[str, str, str, str]]:
    """(marker, argument, language, text) of each fenced block of docs/plugins/<name>."""
    return _BLOCK.findall((ROOT / "docs" / "plugins" / name).read_text())


def marked(blocks: list[tuple[str, str, str, str]], *markers: str) -> dict[str, str]:
    return {arg: text for marker, arg, _, text in blocks if marker in markers}


def console(blocks: list[tuple[str, str, str, str]], command: str) -> str:
    """The output shown under `$ command`."""
    for _, _, lang, text in blocks:
        if lang == "console" and text.startswith(f"$ {command}\n"):
            return text.split("\n", 1)[1]
    raise AssertionError(f"no console block for {command!r}")


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """As the reader runs it: `python -m pytest` in the folder, only the installed package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-W", "error", *args], cwd=folder, capture_output=True, text=True,
                          timeout=600, env=env)


def test_the_testing_page_example_passes(tmp_path: Path) -> None:
    blocks = page_blocks("testing.md")
    files = marked(blocks, "file", "project")
    assert set(files) == {"hello.py", "test_hello.py", "pyproject.toml"}
    gateway_yaml = next(text for marker, _, lang, text in blocks if lang == "yaml" and not marker)
    for name, text in {**files, "gateway.yaml": gateway_yaml}.items():
        (tmp_path / name).write_text(text)
    ran = run_pytest(tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    count = files["test_hello.py"].count("\ndef test_") + files["test_hello.py"].count(
        "\nasync def test_")
    assert f"{count} passed" in ran.stdout
    assert f"reports `{count} passed`" in (ROOT / "docs/plugins/testing.md").read_text()


def test_the_scaffold_page_shows_what_the_command_writes_and_it_passes(tmp_path: Path):
    blocks = page_blocks("scaffold.md")
    files = marked(blocks, "file", "project")
    plugin = subprocess.run([SCRIPT, "new", "plugin", "greeter"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert plugin.returncode == 0, plugin.stderr
    assert plugin.stdout == console(blocks, "sanic-gateway new plugin greeter")
    (tmp_path / "gateway.yaml").write_text(marked(blocks, "scaffold")["before"])
    protocol = subprocess.run([SCRIPT, "new", "protocol", "lines", "--add"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert protocol.returncode == 0, protocol.stderr
    assert protocol.stdout == console(blocks, "sanic-gateway new protocol lines --add")
    assert (tmp_path / "gateway.yaml").read_text() == marked(blocks, "scaffold")["after"]
    for name in ("greeter.py", "test_greeter.py", "lines.py", "test_lines.py", "pytest.ini"):
        assert (tmp_path / name).read_text() == files[name], f"{name} differs from the page"
    printed = plugin.stdout.split("--add):\n\n")[1].split("\n\ntest it:")[0] + "\n"
    assert printed in [text for marker, _, lang, text in blocks if lang == "yaml"]
    ran = run_pytest(tmp_path)  # pytest-asyncio installed: the pytest.ini keeps it quiet
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "5 passed" in ran.stdout
    checked = subprocess.run([SCRIPT, "check"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stderr
