"""The pytest setting a scaffolded test needs to run without warnings.

pytest-asyncio (installed with sanic-gateway's test extras) warns at every run while
`asyncio_default_fixture_loop_scope` is unset, even for tests that are not async. `new` writes
it in a `pytest.ini` beside the test when no pytest configuration governs that folder; an
existing configuration is the user's: it is only pointed at when the setting is missing.
"""

from __future__ import annotations

import configparser
import importlib.util
import tomllib
from pathlib import Path

SETTING = "asyncio_default_fixture_loop_scope"
PYTEST_INI = f"""\
# Written by `sanic-gateway new`: pytest-asyncio warns at every run until this is set.
[pytest]
{SETTING} = function
"""


def governing_config(directory: Path) -> Path | None:
    """The file pytest takes its configuration from for tests in `directory` (as pytest looks
    for it: the nearest folder upwards with pytest.ini, .pytest.ini, or a pyproject.toml,
    tox.ini or setup.cfg that has a pytest section)."""
    for folder in (directory.resolve(), *directory.resolve().parents):
        for name in ("pytest.ini", ".pytest.ini"):
            if (folder / name).is_file():
                return folder / name
        if _has_pytest_section(folder / "pyproject.toml", "toml"):
            return folder / "pyproject.toml"
        if _has_pytest_section(folder / "tox.ini", "pytest"):
            return folder / "tox.ini"
        if _has_pytest_section(folder / "setup.cfg", "tool:pytest"):
            return folder / "setup.cfg"
    return None


def _has_pytest_section(file: Path, section: str) -> bool:
    if not file.is_file():
        return False
    try:
        if section == "toml":
            tool = tomllib.loads(file.read_text(encoding="utf-8")).get("tool", {})
            return isinstance(tool, dict) and "pytest" in tool
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(file, encoding="utf-8")
        return parser.has_section(section)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error):
        return False


def needs_setting() -> bool:
    """pytest-asyncio is installed: without it, the setting is an unknown option (a warning
    of its own), and nothing warns."""
    return importlib.util.find_spec("pytest_asyncio") is not None


def note_or_file(directory: Path) -> tuple[Path | None, str | None]:
    """(`pytest.ini` to write in `directory`, None), or (None, a note about the user's own
    configuration that lacks the setting), or (None, None) when nothing is to be done."""
    if not needs_setting():
        return None, None
    found = governing_config(directory)
    if found is None:
        return directory / "pytest.ini", None
    try:
        text = found.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if SETTING in text:
        return None, None
    return None, (f"note: {found} configures pytest without {SETTING}: pytest-asyncio will "
                  f"warn at each run until it is set (e.g. {SETTING} = \"function\")")
