"""The documentation cannot drift from the code (Datasette's habit, for its hooks):

- every hookspec, every schema key (with its type, default and allowed values) and every event
  the core fires is documented;
- every gateway.yaml shown in the docs passes `sanic-gateway check`, every plugin shown is
  loaded by it, every other Python block runs, and the complete plugin example answers as the
  page says.

Blocks are marked with an HTML comment on the line before their fence:
`<!-- file: NAME -->` (a file of the page's example, written beside its gateway.yaml blocks),
`<!-- excerpt: PATH -->` (a block copied from a file of the repository: it must be in it), or
`<!-- fragment: why -->` (a piece that cannot stand alone; keep these few).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugin_specs import GatewaySpecs
from sanic_gateway.config import load_config
from sanic_gateway.config.schema import SCHEMA
from sanic_gateway.config.units import parse_duration, parse_size
from sanic_gateway.gateway import CORE_EVENTS, FIRED_LATER, Gateway

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
HOOKSPECS = [name for name, _ in inspect.getmembers(GatewaySpecs, inspect.isfunction)]

_spec = importlib.util.spec_from_file_location("config_reference",
                                               ROOT / "tools" / "config_reference.py")
assert _spec is not None and _spec.loader is not None
config_reference = importlib.util.module_from_spec(_spec)
sys.modules["config_reference"] = config_reference
_spec.loader.exec_module(config_reference)


# -- code blocks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    marker: str  # "", "fragment", "file", "excerpt"
    arg: str  # the file name of `file:`, the path of `excerpt:`

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(fragment|file|excerpt)\b:?\s*(.*?)\s*-->\s*$")


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().split("\n")
    found, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, lang, start = fence.group(1), fence.group(2), i
        i += 1
        body = []
        while not re.match(rf"^{indent}```\s*$", lines[i]):
            body.append(lines[i][len(indent):])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(before)
        found.append(Block(page, start + 1, lang, "\n".join(body) + "\n",
                           marker.group(1) if marker else "",
                           marker.group(2) if marker else ""))
        i += 1
    return found


ALL_BLOCKS = [block for page in [*PAGES, ROOT / "README.md"] for block in blocks(page)]
YAML_CHECKED = [b for b in ALL_BLOCKS if b.lang == "yaml" and not b.marker]
PYTHON_RUN = [b for b in ALL_BLOCKS if b.lang == "python" and not b.marker]
EXCERPTS = [b for b in ALL_BLOCKS if b.marker == "excerpt"]


def test_blocks_are_found_and_fragments_stay_few():
    assert len(YAML_CHECKED) >= 15 and len(PYTHON_RUN) >= 1
    fragments = [b.id for b in ALL_BLOCKS if b.marker == "fragment"]
    checked = [b for b in ALL_BLOCKS if b.lang in ("yaml", "python")]
    assert len(fragments) <= len(checked) // 4, fragments
    for block in ALL_BLOCKS:
        if block.marker == "fragment":
            assert block.arg, f"{block.id}: say why the block is a fragment"
        if block.marker == "file":
            assert re.fullmatch(r"[\w./-]+", block.arg), block.id


def _files_of(page: Path) -> dict[str, str]:
    return {b.arg: b.text for b in ALL_BLOCKS if b.page == page and b.marker == "file"}


def _dummy_env(text: str) -> dict[str, str]:
    """Values for the `${VAR}` a block needs (a 40-character one fits a JWT secret too)."""
    names = re.findall(r"(?<!\$)\$\{(\w+)\}", text)
    return {name: f"docs-test-{name.lower()}".ljust(40, "x") for name in names}


_CHECK_ALL = """
import contextlib, io, json, os, sys
from sanic_gateway import cli
results = {}
for folder, env in json.loads(sys.stdin.read()):
    os.chdir(folder)
    saved = dict(os.environ)
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check", "--config", "gateway.yaml"])
    os.environ.clear()
    os.environ.update(saved)
    for name, module in list(sys.modules.items()):  # each folder imports its own plugins
        if (getattr(module, "__file__", None) or "").startswith(folder):
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(folder)]
    results[folder] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    """`sanic-gateway check` on every gateway.yaml block, in one process (imports are slow)."""
    jobs, where = [], {}
    for block in YAML_CHECKED:
        folder = tmp_path_factory.mktemp("block")
        for name, text in _files_of(block.page).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        (folder / "handlers").symlink_to(ROOT / "handlers")  # the example plugins
        (folder / "gateway.yaml").write_text(block.text)
        jobs.append((str(folder), _dummy_env(block.text)))
        where[block.id] = str(folder)
    done = subprocess.run([sys.executable, "-c", _CHECK_ALL], input=json.dumps(jobs),
                          capture_output=True, text=True, timeout=600, cwd=ROOT, check=True)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {block_id: results[folder] for block_id, folder in where.items()}


@pytest.mark.parametrize("block", YAML_CHECKED, ids=lambda b: b.id)
def test_every_gateway_yaml_of_the_docs_passes_check(block, checked):
    code, out, err = checked[block.id]
    assert code == 0 and "gateway.yaml: OK" in out, f"{block.id}:\n{block.text}\n{err}"
    assert "warning" not in err, f"{block.id}: {err}"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.marker == "file"],
                         ids=lambda b: b.id)
def test_every_plugin_file_is_loaded_by_a_checked_gateway_yaml(block, checked):
    names = {block.arg.removesuffix(".py").replace("/", "."), os.path.dirname(block.arg)} - {""}
    users = [b for b in YAML_CHECKED if b.page == block.page and any(
        re.search(rf"(module|path):\s*\.?/?{re.escape(name)}\b", b.text) for name in names)]
    assert users, f"{block.id}: no gateway.yaml block of the page loads {block.arg}"
    assert all(checked[b.id][0] == 0 for b in users)


@pytest.mark.parametrize("block", PYTHON_RUN, ids=lambda b: b.id)
def test_every_other_python_block_runs(block, tmp_path):
    done = subprocess.run([sys.executable, "-c", block.text], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, f"{block.id}:\n{block.text}\n{done.stderr}"


@pytest.mark.parametrize("block", EXCERPTS, ids=lambda b: b.id)
def test_every_excerpt_is_in_its_file(block):
    source = (ROOT / block.arg).read_text()
    assert block.text.strip() in source, f"{block.id} is not an excerpt of {block.arg}"


async def test_the_complete_plugin_example_answers_as_its_page_says(serve):
    page = DOCS / "plugins" / "example.md"
    files = _files_of(page)
    config = next(b for b in YAML_CHECKED if b.page == page and "links:Links" in b.text)
    served = await serve(config.text, files=files)
    client = served.client
    created = await client.post("/_/links/links", json={"url": "https://sanic.dev"})
    assert created.status_code == 401
    assert created.json()["error"]["message"] == "a valid X-Api-Key header is required"
    key = {"X-Api-Key": "dev-key"}
    missing = await client.post("/_/links/links", json={}, headers=key)
    assert missing.status_code == 400
    assert missing.json()["error"]["id"] == "api.assert.missing_argument"
    created = await client.post("/_/links/links", json={"url": "https://sanic.dev"},
                                headers=key)
    assert created.status_code == 201
    code = created.json()["result"]["code"]
    assert created.json()["result"]["short"].endswith(f"/_/links/l/{code}")
    followed = await client.get(f"/_/links/l/{code}")
    assert followed.status_code == 302 and followed.headers["location"] == "https://sanic.dev"
    stats = await client.get("/_/links/links")
    assert stats.json()["result"] == {code: 1}
    assert (await client.get("/_/links/l/nope")).status_code == 404


# -- hookspecs ---------------------------------------------------------------------------------

PLUGINS_PAGE = (DOCS / "plugins" / "index.md").read_text()


@pytest.mark.parametrize("name", HOOKSPECS)
def test_every_hookspec_has_a_docstring_and_is_documented(name):
    assert inspect.getdoc(getattr(GatewaySpecs, name)), f"hookspec {name} has no docstring"
    assert re.search(rf"`{name}\b", PLUGINS_PAGE), f"hookspec {name}: not in plugins/index.md"


# -- gateway.yaml reference --------------------------------------------------------------------

REFERENCE = (DOCS / "reference" / "gateway-yaml.md").read_text()


def test_every_schema_key_has_a_description_and_no_description_is_stale():
    assert config_reference.missing_descriptions() == []
    assert config_reference.stale_descriptions() == []


def test_the_reference_page_is_what_the_schema_generates():
    assert config_reference.up_to_date(REFERENCE), \
        "docs/reference/gateway-yaml.md is out of date: run python tools/config_reference.py"


def _schema_keys(rules: dict, path: str) -> list[tuple[str, dict]]:
    """Written apart from the generator, so that a key it skips is still caught."""
    found = [(path, rules)]
    if isinstance(rules.get("schema"), dict):
        inner = rules["schema"]
        if rules.get("type") == "list":
            if inner.get("type") == "dict":
                for key, sub in inner["schema"].items():
                    found += _schema_keys(sub, f"{path}[].{key}")
        else:
            for key, sub in inner.items():
                found += _schema_keys(sub, f"{path}.{key}")
    for child in (rules.get("allow_unknown"), rules.get("valuesrules")):
        if isinstance(child, dict):
            found += _schema_keys(child, f"{path}.<")
    return found


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in REFERENCE.split("\n"):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


SCHEMA_KEYS = [key for name, rules in SCHEMA.items() for key in _schema_keys(rules, name)]


@pytest.mark.parametrize("path,rules", SCHEMA_KEYS, ids=[k for k, _ in SCHEMA_KEYS])
def test_every_schema_key_is_in_the_reference_with_its_default_and_allowed_values(path, rules):
    rows = _rows()
    pattern = re.escape(path).replace("<", "<[A-Za-z]+>")
    matching = [key for key in rows if re.fullmatch(pattern, key)]
    assert matching, f"{path} is not in docs/reference/gateway-yaml.md"
    _, kind, default, meaning = rows[matching[0]]
    assert meaning, path
    for value in rules.get("allowed", []):
        assert f"`{value}`" in kind, (path, value)
    if rules.get("required"):
        assert default == "required", path
    elif "default" in rules and rules["default"] not in (None, {}, []):
        shown = default.strip("`")
        value = rules["default"]
        if rules.get("coerce") in ("duration", "duration_or_unlimited"):
            parsed = parse_duration(shown, allow_unlimited=True)
            assert parsed == value, (path, shown)
        elif rules.get("coerce") == "size":
            assert parse_size(shown) == value, (path, shown)
        elif isinstance(value, bool):
            assert shown == str(value).lower(), path
        elif isinstance(value, (int, str)):
            assert shown == (f'"{value}"' if value == "" else str(value)), path
    if rules.get("type") == "integer" and "min" in rules and not rules.get("coerce"):
        assert str(rules["min"]) in kind, (path, kind)


# -- events ------------------------------------------------------------------------------------

EVENTS_PAGE = (DOCS / "reference" / "events.md").read_text()


def _documented_events() -> set[str]:
    names = set()
    for line in EVENTS_PAGE.split("\n"):
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def _is_documented(event: str) -> bool:
    documented = _documented_events()
    if event in documented:
        return True
    for template in documented:
        if "<" not in template:
            continue
        pattern = re.sub(r"<Action>", "[A-Z][A-Za-z0-9_]*", re.escape(template)
                         .replace(r"\<", "<").replace(r"\>", ">"))
        pattern = re.sub(r"<[a-z]+>", "[A-Za-z0-9_/-]+", pattern)
        if re.fullmatch(pattern, event):
            return True
    return False


@pytest.mark.parametrize("event", sorted(set(CORE_EVENTS) | set(FIRED_LATER)))
def test_every_event_the_core_knows_is_documented(event):
    assert _is_documented(event), f"{event} is not documented in docs/reference/events.md"


def _bus_calls() -> list[tuple[str, int, ast.expr]]:
    """(file, line, first argument) of every call that fires or compiles an event."""
    calls = []
    for path in sorted((ROOT / "sanic_gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            receiver = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            firing = name in ("hook", "trigger", "has_listeners") or (
                name == "event" and (receiver.endswith("bus") or receiver == ""))
            if firing:
                calls.append((str(path.relative_to(ROOT)), node.lineno, node.args[0]))
    return calls


def test_the_core_fires_only_events_of_its_list():
    literal, templates = [], []
    for where, line, arg in _bus_calls():
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            literal.append(arg.value)
            assert arg.value in CORE_EVENTS, \
                f"{where}:{line} fires {arg.value!r}: add it to CORE_EVENTS and document it"
        elif isinstance(arg, ast.JoinedStr):
            shape = "".join(v.value if isinstance(v, ast.Constant) else "<>" for v in arg.values)
            templates.append(shape)
            assert shape == "plugin-<>:<>", f"{where}:{line} fires events shaped {shape!r}"
    assert len(literal) >= 15 and templates, "the scan no longer finds the firing calls"


def test_every_event_of_the_example_gateway_is_documented():
    gateway = Gateway.build(load_config(ROOT / "gateway.yaml",
                                        env={"ALICE_PASSWORD": "docs-test-password"}))
    events = set(gateway.known_events())
    assert {"notes/notes:beforeCreate", "security:afterCreateUser"} <= events
    assert [event for event in sorted(events) if not _is_documented(event)] == []


def test_the_check_driver_sees_failures(tmp_path):
    """The one-process `check` above reports a broken file as a failure."""
    (tmp_path / "gateway.yaml").write_text("server: {prot: 1}\n")
    done = subprocess.run([sys.executable, "-c", _CHECK_ALL], capture_output=True, text=True,
                          input=json.dumps([[str(tmp_path), {}]]), timeout=120,
                          env={**os.environ}, check=True)
    code, _, err = json.loads(done.stdout.strip().splitlines()[-1])[str(tmp_path)]
    assert code == 2 and "did you mean 'port'" in err


async def test_the_readme_example_answers_as_the_readme_says(serve):
    readme = ROOT / "README.md"
    config = next(b for b in YAML_CHECKED if b.page == readme)
    served = await serve(config.text, files=_files_of(readme))
    shown = re.search(r"curl -s http://127\.0\.0\.1:7512(\S+)", readme.read_text())
    assert shown and shown.group(1) == "/_/hello/greet/ada"
    for path in (shown.group(1), "/_plugin/hello/greet/ada"):  # Kuzzle's prefix too
        answer = await served.client.get(path)
        assert answer.status_code == 200
        assert answer.json()["controller"] == "hello/greeting"
        assert answer.json()["result"] == {"hello": "ada"}


async def test_the_first_plugin_answers_as_its_page_says(serve):
    page = DOCS / "plugins" / "index.md"
    config = next(b for b in YAML_CHECKED if b.page == page and "greet:Greet" in b.text)
    served = await serve(config.text, files=_files_of(page))
    answer = await served.client.get("/_/greet/hello/ada")
    assert answer.json()["result"] == {"message": "Bonjour, Ada!", "count": 1}
    refused = await served.client.get("/_/greet/hello/r2d2")
    assert refused.status_code == 400
    assert refused.json()["error"]["id"] == "api.assert.invalid_argument"
    assert refused.json()["error"]["message"] == "a name is made of letters"


async def test_the_chat_example_reaches_every_member_of_its_channel(serve):
    from websockets.asyncio.client import connect

    page = DOCS / "protocols" / "custom.md"
    config = next(b for b in YAML_CHECKED if b.page == page and "chat:Chat" in b.text)
    served = await serve(config.text, files=_files_of(page))
    url = served.url.replace("http://", "ws://") + "/"
    async with connect(url) as alice, connect(url) as bob:
        for ws in (alice, bob):
            await ws.send(json.dumps({"controller": "chat/room", "action": "join",
                                      "requestId": "j"}))
            assert json.loads(await ws.recv())["result"] is True
        await alice.send(json.dumps({"controller": "chat/room", "action": "say",
                                     "body": {"text": "hi"}, "requestId": "s"}))
        for ws in (alice, bob):
            seen = [json.loads(await ws.recv()) for _ in range(2 if ws is alice else 1)]
            message = next(m for m in seen if m.get("type") == "message")
            assert message == {"type": "message", "text": "hi", "room": "chat"}


async def test_the_realtime_plugin_example_notifies_its_subscriber(serve):
    from websockets.asyncio.client import connect

    page = DOCS / "realtime" / "index.md"
    config = next(b for b in YAML_CHECKED if b.page == page and "orders:Orders" in b.text)
    served = await serve(config.text, files=_files_of(page))
    async with connect(served.url.replace("http://", "ws://") + "/") as ws:
        await ws.send(json.dumps({"controller": "orders/orders", "action": "watch",
                                  "requestId": "w"}))
        channel = json.loads(await ws.recv())["result"]["channel"]
        await ws.send(json.dumps({"controller": "orders/orders", "action": "paid",
                                  "requestId": "p"}))
        seen = [json.loads(await ws.recv()) for _ in range(2)]
        notification = next(m for m in seen if m.get("type") == "document")
        assert notification["room"] == channel
        assert notification["result"]["_id"] == "o-1"
        assert notification["result"]["_source"]["status"] == "paid"


async def test_the_hook_workers_example_records_requests_from_its_processes(serve, tmp_path):
    import asyncio

    page = DOCS / "plugins" / "hook-workers.md"
    config = next(b for b in YAML_CHECKED if b.page == page and "export:Export" in b.text)
    out = tmp_path / "out" / "requests.jsonl"
    out.parent.mkdir()
    served = await serve(config.text.replace("./requests.jsonl", str(out)),
                         files=_files_of(page))
    for _ in range(3):
        assert (await served.client.get("/_now")).status_code == 200
    for _ in range(200):
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            break
        await asyncio.sleep(0.1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["action"] for line in lines][:3] == ["now", "now", "now"]
    assert lines[0]["user"] == "-1"
