"""`sanic-gateway new plugin NAME` and `new protocol NAME`: the files to start from.

Each writes a commented module, a pytest file that runs it through the `start_gateway` fixture
(and passes as written), and prints the gateway.yaml block, or adds it to gateway.yaml with
`--add`. Nothing existing is overwritten.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .config.checks import NAME
from .scaffold_pytest import PYTEST_INI, note_or_file
from .yaml_insert import InsertError, insert_entry

BUILTIN_PROTOCOLS = ("http", "websocket", "mqtt")
PROTOCOL_PORT = 7600  # gateway.yaml's default for a new protocol: next to 7512, 7513 (ndjson)


class ScaffoldError(Exception):
    """Nothing was written; the message (one line) says why."""


@dataclass
class Written:
    files: list[Path]
    block: str  # the gateway.yaml entry, indented for its place in the file
    where: str  # "plugins" or "server.protocols"
    added_to: Path | None  # gateway.yaml, when --add
    note: str | None = None  # about the user's pytest configuration


def new(kind: str, name: str, directory: Path, *, add: bool = False,
        config: Path = Path("gateway.yaml")) -> Written:
    """Write the files of a new plugin or protocol `name` in `directory`."""
    module = check_name(kind, name)
    cls = "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]+", name) if part)
    cls += "Plugin" if kind == "plugin" else "Protocol"
    if cls[0].isdigit():
        cls = "_" + cls
    files = {directory / f"{module}.py": f"{kind}.py.tmpl",
             directory / f"test_{module}.py": f"test_{kind}.py.tmpl"}
    for path in files:
        if path.exists():
            raise ScaffoldError(f"{path} exists: not overwritten (choose another NAME or --dir)")
    check_not_taken(kind, name, module)
    pytest_ini, note = note_or_file(directory)
    if pytest_ini is not None:
        files[pytest_ini] = ""
    path_in_yaml = ("plugins",) if kind == "plugin" else ("server", "protocols")
    values = {"name": name, "module": module, "cls": cls, "port": str(_unused_port(config))}
    # the test reads the module from its own folder; gateway.yaml from the file's folder
    test_block = _render(f"{kind}.yaml.tmpl", {**values, "reference": f"{module}:{cls}"})
    yaml_block = _render(f"{kind}.yaml.tmpl",
                         {**values, "reference": _reference(directory, config, module, cls)})
    updated = None
    if add:
        updated = _added(config, path_in_yaml, name, yaml_block)
    indent = "  " * len(path_in_yaml)
    test_values = {**values, "block": _indented(test_block, indent)}
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for path, template in files.items():
        if not template:
            text = PYTEST_INI
        else:
            text = _render(template, test_values if template.startswith("test_") else values)
        with open(path, "x", encoding="utf-8") as out:  # "x": never overwrite, even in a race
            out.write(text)
        written.append(path)
    if updated is not None:
        config.write_text(updated, encoding="utf-8")
    shown = yaml_block if add else _nested(path_in_yaml, yaml_block)
    return Written(written, shown, ".".join(path_in_yaml), config if add else None, note)


def check_name(kind: str, name: str) -> str:
    """The module name for `name`, or ScaffoldError saying which rule it breaks."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(f"invalid {kind} name {name!r}: use letters, digits, '_' and '-'")
    module = name.replace("-", "_")
    if not module.isidentifier() or module[0].isdigit():
        raise ScaffoldError(f"invalid {kind} name {name!r}: it names a Python module, so it "
                            "must start with a letter or '_'")
    if keyword.iskeyword(module):
        raise ScaffoldError(f"invalid {kind} name {name!r}: {module!r} is a Python keyword")
    if kind == "protocol" and name in BUILTIN_PROTOCOLS:
        raise ScaffoldError(f"{name!r} is a built-in protocol: choose another name")
    if module.startswith("test_"):
        raise ScaffoldError(f"invalid {kind} name {name!r}: pytest would take {module}.py for "
                            "a test file")
    return module


def check_not_taken(kind: str, name: str, module: str) -> None:
    """A module of that name elsewhere (`json`, an installed package) would shadow the new one
    or be shadowed by it."""
    if importlib.util.find_spec(module) is not None:
        raise ScaffoldError(f"invalid {kind} name {name!r}: a module {module!r} is already "
                            "importable here (standard library or installed); the plugin "
                            "would hide it or be hidden by it")


def _render(template: str, values: dict[str, str]) -> str:
    text = resources.files("sanic_gateway").joinpath("templates", template).read_text("utf-8")
    return string.Template(text).substitute(values)


def _indented(block: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in block.splitlines())


def _nested(path: tuple[str, ...], block: str) -> str:
    """The block under its parent keys, ready to paste into an empty place of gateway.yaml."""
    lines = [f"{'  ' * level}{key}:" for level, key in enumerate(path)]
    return "\n".join(lines) + "\n" + _indented(block, "  " * len(path)) + "\n"


def _reference(directory: Path, config: Path, module: str, cls: str) -> str:
    """`module:Class` as gateway.yaml (in `config`'s folder) imports it."""
    base = config.resolve().parent
    try:
        relative = directory.resolve().relative_to(base)
    except ValueError:
        return f"{module}:{cls}"  # outside the gateway's folder: on the Python path, then
    parts = [p for p in relative.parts if p not in ("", ".")]
    if any(not p.isidentifier() or keyword.iskeyword(p) for p in parts):
        raise ScaffoldError(f"{directory} cannot be imported as a package from {base} "
                            "(each folder must be a Python identifier): choose another --dir")
    return ".".join([*parts, module]) + f":{cls}"


def _unused_port(config: Path) -> int:
    """PROTOCOL_PORT, or the next port gateway.yaml does not give already to the server or a
    protocol (a second protocol must not be written with the first one's port)."""
    taken = {7512, 7513, 1883}
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    server = data.get("server") if isinstance(data, dict) else None
    if isinstance(server, dict):
        taken.add(server.get("port"))
        protocols = server.get("protocols")
        for spec in protocols.values() if isinstance(protocols, dict) else ():
            if isinstance(spec, dict):
                taken.add(spec.get("port"))
    port = PROTOCOL_PORT
    while port in taken:
        port += 1
    return port


def _added(config: Path, path: tuple[str, ...], name: str, block: str) -> str:
    """The text of `config` with the block added (the file is written by the caller, last)."""
    if config.exists():
        try:
            text = config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScaffoldError(f"{config}: cannot read it: {exc}") from None
    else:
        text = ""
    try:
        return insert_entry(text, path, name, block)
    except InsertError as exc:
        raise ScaffoldError(f"{config}: {exc}; nothing was written") from None


def summary(kind: str, written: Written) -> str:
    """What the command prints: the files, the block or where it went, and what to run."""
    lines = [f"wrote {os.path.relpath(p)}" for p in written.files]
    if written.added_to is not None:
        lines.append(f"added {written.where}.{_name_of(written.block)} to "
                     f"{os.path.relpath(written.added_to)}:")
        lines.append(_indented(written.block, "    "))
    else:
        lines.append("add this to gateway.yaml (or run again with --add):")
        lines.append("")
        lines.append(written.block.rstrip("\n"))
        lines.append("")
    test = next(p for p in written.files if p.name.startswith("test_"))
    if written.note:
        lines.append(written.note)
    lines.append(f"test it: python -m pytest {os.path.relpath(test)}")
    return "\n".join(lines)


def _name_of(block: str) -> str:
    return block.split(":", 1)[0].strip()
