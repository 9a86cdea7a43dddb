"""`GET /_openapi` as a client generator, a fuzzer and a person meet it: a valid OpenAPI 3.1
document of every route (openapi-spec-validator), which the example gateway's answers keep
(schemathesis, with an administrator's token), and the API page `GET /_openapi/ui` rendered by a
real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from sanic_gateway.protocols.openapi_ui import ASSETS, CSP
from tests.browser import Browser
from tests.test_cli import ROOT, free_port, wait_for
from tests.test_events import rec_yaml

BIN = Path(sys.executable).parent
ADMIN = {"username": "root", "password": "root-password-1"}


HANDLERS = {f"handlers/{p.name}": p.read_text() for p in (ROOT / "handlers").glob("*.py")}


def example_yaml() -> str:
    """The example gateway.yaml with an administrator, `root`."""
    config = yaml.safe_load((ROOT / "gateway.yaml").read_text())
    config["security"]["users"]["root"] = {
        "profileIds": ["admin"], "credentials": {"local": dict(ADMIN)}}
    return yaml.safe_dump(config)


# -- the document ---------------------------------------------------------------------------

async def test_the_example_document_is_valid_openapi_31_and_lists_every_route(serve):
    served = await serve((ROOT / "gateway.yaml").read_text(), files=HANDLERS,
                         env={"NDJSON_PORT": "0"})
    doc = (await served.client.get("/_openapi")).json()
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema and its rules
    assert doc["openapi"] == "3.1.0"
    served_routes = {(route.verb, route.path) for action in served.gateway.api.actions()
                     for route in action.http}
    described = {(verb, path.replace("{", ":").replace("}", ""))
                 for path, ops in doc["paths"].items() for verb in ops}
    assert served_routes <= described
    assert {("post", "/_query"), ("get", "/_healthcheck"), ("get", "/_ready"),
            ("get", "/_openapi/ui"), ("get", "/_openapi/ui/:asset")} <= described
    # plugin routes under both prefixes, tagged with their controller
    create = doc["paths"]["/_plugin/notes/notes"]["post"]
    assert create["tags"] == ["notes/notes"] and "requestBody" in create
    assert "post" in doc["paths"]["/_/notes/notes"]
    # the envelope, errors included, and the security schemes
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["components"]["securitySchemes"]["cookie"]["name"] == "authToken"
    login = doc["paths"]["/_login/{strategy}"]["post"]
    strategy = next(p for p in login["parameters"] if p["name"] == "strategy")
    assert set(strategy["schema"]["enum"]) == {"local", "apikey"}  # the apikey plugin's too
    assert login["responses"]["200"] == {"$ref": "#/components/responses/Success"}
    assert login["responses"]["401"] == {"$ref": "#/components/responses/E401"}
    assert "500" not in login["responses"]
    envelope = doc["components"]["schemas"]["Response"]
    assert set(envelope["required"]) == {"requestId", "status", "error", "controller", "action",
                                         "index", "collection", "volatile", "result"}
    create_user = doc["paths"]["/users/{_id}/_create"]["post"]["requestBody"]
    assert "credentials" in create_user["content"]["application/json"]["schema"]["properties"]
    assert doc["paths"]["/_ready"]["get"]["security"] == []
    assert doc["paths"]["/_openapi"]["get"]["responses"]["200"]["content"]


async def test_a_plugin_gateway_without_the_http_api_describes_no_page(serve):
    served = await serve(rec_yaml())
    doc = (await served.client.get("/_openapi")).json()
    validate(doc)
    assert "/_openapi/ui" in doc["paths"]
    off = await serve("storage: 'sqlite:///:memory:'\n"
                      "server: {protocols: {http: {enabled: false}}}\n")
    assert (await off.client.get("/_openapi/ui")).status_code == 404


async def test_searching_a_plugin_strategys_credentials_is_a_client_error(serve):
    """Found by schemathesis: this was a 500 (the server is fine; the strategy cannot search)."""
    served = await serve(example_yaml(), files=HANDLERS, env={"NDJSON_PORT": "0"})
    token = (await served.client.post("/_login/local", json=ADMIN)).json()["result"]["jwt"]
    r = await served.client.post("/credentials/apikey/users/_search", json={"query": {}},
                                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["id"] == "plugin.strategy.missing_optional_method"
    local = await served.client.post("/credentials/local/users/_search", json={"query": {}},
                                     headers={"Authorization": f"Bearer {token}"})
    assert local.status_code == 200
    assert {"kuid": "root", "username": "root"} in local.json()["result"]["hits"]


# -- the page's files -----------------------------------------------------------------------

async def test_the_page_and_its_files_are_served_from_the_package(serve):
    client = (await serve(rec_yaml())).client
    page = await client.get("/_openapi/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP and "http" not in CSP  # no other origin, no CDN
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "ui/swagger-ui-bundle.js" in page.text and "//" not in page.text.split("<body>")[1]
    types = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
             "gateway-ui.js": "text/javascript; charset=utf-8",
             "swagger-ui.css": "text/css; charset=utf-8",
             "favicon-32x32.png": "image/png", "LICENSE": "text/plain; charset=utf-8"}
    for name, content_type in types.items():
        r = await client.get(f"/_openapi/ui/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"] == content_type
        assert r.headers["cache-control"] == "public, max-age=86400"
        assert r.content == (ROOT / "sanic_gateway/static/swagger-ui" / name).read_bytes()
        again = await client.get(f"/_openapi/ui/{name}",
                                 headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    assert set(types) <= set(ASSETS)
    assert "Apache License" in (await client.get("/_openapi/ui/LICENSE")).text
    head = await client.head("/_openapi/ui/swagger-ui.css")
    assert head.status_code == 200 and head.content == b""
    missing = await client.get("/_openapi/ui/README.md")  # in the folder, not served
    assert missing.status_code == 404
    assert missing.json()["error"]["id"] == "network.http.url_not_found"
    for name in ("..%2F..%2Fgateway.yaml", "%2e%2e%2fapp.py"):
        assert (await client.get(f"/_openapi/ui/{name}")).status_code == 404
    slash = await client.get("/_openapi/ui/")
    assert slash.status_code == 308 and slash.headers["location"] == "../ui"


def test_the_page_files_are_package_data():
    """`pip install` (not only the editable one) carries the files: setup.cfg lists them."""
    config = (ROOT / "setup.cfg").read_text()
    assert "static/swagger-ui/*" in config
    for asset in ASSETS.values():
        assert (ROOT / "sanic_gateway/static/swagger-ui" / asset.file).is_file()


# -- the example gateway, for real ----------------------------------------------------------

@contextmanager
def running(folder: Path, yaml_text: str) -> Iterator[str]:
    """`sanic-gateway run` on `yaml_text` in `folder` (its storage with it): the base URL."""
    (folder / "gateway.yaml").write_text(yaml_text)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "sanic-gateway"), "run"], cwd=folder, text=True,
        env={**os.environ, "GATEWAY_PORT": str(port), "NDJSON_PORT": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/_now", proc, timeout=60)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out


@pytest.fixture
def example(tmp_path: Path) -> Iterator[str]:
    """The example gateway with an administrator `root`, in a throwaway folder, run by the
    real command."""
    shutil.copytree(ROOT / "handlers", tmp_path / "handlers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with running(tmp_path, example_yaml()) as base:
        yield base


# operations that would end the run's own session: logging out or refreshing revokes the
# token the run uses; deleting or changing the administrator's own credentials, or revoking
# every token of a user, could lock it out
EXCLUDED = ["--exclude-operation-id", "auth:logout:post:/_logout",
            "--exclude-operation-id", "auth:refreshToken:post:/_refreshToken",
            "--exclude-path-regex", r"/_me/credentials|/credentials/\{strategy\}/_me|/tokens$"]


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(example,
                                                                             tmp_path):
    login = httpx.post(f"{example}/_login/local", json=ADMIN).json()
    token = login["result"]["jwt"]
    run = subprocess.run(
        [str(BIN / "st"), "run", f"{example}/_openapi",
         "-H", f"Authorization: Bearer {token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--max-examples", "5", "--seed", "1", "--workers", "1", "--request-timeout", "20",
         *EXCLUDED],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    summary = output[output.index("SUMMARY"):]
    tested = int(summary.split("Tested: ")[1].split()[0])
    assert tested >= 90, summary  # nearly every operation, not a schema that failed to load
    assert "0 found" not in summary and " passed" in summary
    # the token still works: the run did not lock its administrator out
    me = httpx.get(f"{example}/_me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["result"]["_id"] == "root"


def _png_size_and_colours(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct RGB(A) pixel values of an 8-bit PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    idat = b""
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    channels = {2: 3, 6: 4}[colour]
    assert depth == 8
    stride = width * channels + 1
    # filter bytes make raw rows differ from pixels, but a blank page is one repeated row
    rows = {raw[i * stride + 1:(i + 1) * stride] for i in range(0, height, 7)}
    values = set()
    for row in list(rows)[:200]:
        values.update(row[i:i + channels] for i in range(0, len(row), channels * 5))
    return width, height, len(values)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    assert chromium, ("Debian's chromium is needed: "
                      "apt-get update && apt-get install -y chromium")
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--window-size=1280,900", "--virtual-time-budget=8000", *args],
        capture_output=True, text=True, timeout=180)


def test_the_api_page_renders_the_operations_in_headless_chromium(example, tmp_path):
    url = f"{example}/_openapi/ui"
    dom = _chromium("--dump-dom", url)
    html = dom.stdout
    assert 'id="swagger-ui"' in html, dom.stderr[-2000:]
    # Swagger UI ran (from the packaged files) and rendered the document's operations
    for path in ('data-path="/_now"', 'data-path="/_login/{strategy}"',
                 'data-path="/_plugin/notes/notes/{id}"', 'data-path="/_query"'):
        assert path in html, path
    assert html.count("opblock-summary-method") >= 100
    assert "sanic-gateway" in html and "OAS 3.1" in html
    assert "Failed to load API definition" not in html
    shot = tmp_path / "page.png"
    done = _chromium(f"--screenshot={shot}", url)
    assert shot.is_file(), done.stderr[-2000:]
    width, height, colours = _png_size_and_colours(shot.read_bytes())
    assert (width, height) == (1280, 900)
    assert colours > 20  # text, the method badges' colours: not a blank page
    keep = os.environ.get("SANIC_GATEWAY_SCREENSHOT")
    if keep:  # where a person wants to look at it
        shutil.copy(shot, keep)


CLOSED = ("storage: 'sqlite:///:memory:'\n"
          "server: {port: ${GATEWAY_PORT}}\n"
          "security:\n"
          "  roles: {anonymous: {controllers: {auth: {actions: {login: true}}}}}\n"
          "  users: {root: {profileIds: [admin], credentials: {local: "
          "{username: root, password: root-password-1}}}}\n")
SIGN_IN = "Log in to see this gateway's API"
FULL = "!!document.querySelector('[data-path=\"/_now\"]')"


def test_a_closed_gateway_s_api_page_says_how_to_log_in(tmp_path):
    """A gateway whose visitors may not read `server:openapi`: the page renders, with its
    Authorize button, the login route and what to do, instead of a bare "Unauthorized"."""
    with running(tmp_path, CLOSED) as base:
        assert httpx.get(f"{base}/_openapi").status_code == 401
        html = _chromium("--dump-dom", f"{base}/_openapi/ui").stdout
    assert SIGN_IN in html and "Failed to load API definition" not in html
    assert "btn authorize" in html and 'data-path="/_login/{strategy}"' in html
    assert "GET /_openapi</code> answered 401" in html
    assert 'data-path="/_now"' not in html


def test_a_token_authorized_on_the_page_loads_the_api(tmp_path):
    """Authorize with a token: the whole API appears, and the page's requests carry it."""
    with running(tmp_path, CLOSED) as base:
        token = httpx.post(f"{base}/_login/local", json=ADMIN).json()["result"]["jwt"]
        browser = Browser(f"{base}/_openapi/ui", tmp_path / "profile")
        try:
            browser.wait(f"document.body.innerText.includes({SIGN_IN!r})")
            browser.click(".btn.authorize")
            browser.type("#auth-bearer-value", "not-a-token")
            browser.click(".modal-ux .auth-btn-wrapper .authorize")
            browser.wait("document.body.innerText.includes('The token you authorized was "
                         "refused (401 ')")
            browser.click(".btn.authorize")  # the refused token was forgotten: type another
            browser.type("#auth-bearer-value", token)
            browser.click(".modal-ux .auth-btn-wrapper .authorize")
            browser.wait(FULL)
            assert browser.run("document.querySelectorAll('.opblock-summary-method').length") \
                >= 100
            assert browser.run("document.querySelector('.btn.authorize').className") \
                == "btn authorize locked"
            browser.click(".btn.authorize")  # Logout: back to the sign-in page
            browser.click(".modal-ux .auth-btn-wrapper button:not(.btn-done)")
            browser.wait(f"document.body.innerText.includes({SIGN_IN!r}) && !{FULL}")
        finally:
            browser.close()


@pytest.mark.parametrize("cookie", [False, True], ids=["token", "cookie"])
def test_logging_in_from_the_page_loads_the_api(tmp_path, cookie):
    """Try it out on the login route: its token is authorized, or with cookieAuth the
    browser's cookie is used; either way the whole API is then shown."""
    with running(tmp_path, CLOSED) as base:
        browser = Browser(f"{base}/_openapi/ui", tmp_path / "profile")
        try:
            browser.wait(f"document.body.innerText.includes({SIGN_IN!r})")
            browser.click(".opblock-post .opblock-summary-control")
            browser.click(".try-out__btn")
            browser.type("textarea.body-param__text", json.dumps(ADMIN))
            if cookie:
                browser.type(".parameters select", "true")
            browser.click(".execute")
            browser.wait(FULL)
            locked = browser.run("document.querySelector('.btn.authorize').className")
            assert locked == ("btn authorize unlocked" if cookie else "btn authorize locked")
            cookies = browser.run("fetch('../_me', {credentials: 'same-origin'})"
                                  ".then(r => r.status)")
            assert cookies == (200 if cookie else 401)  # the cookie is the browser's
        finally:
            browser.close()
