"""The API page: `GET /_openapi/ui` renders `GET /_openapi` with Swagger UI, whose files ship in
the package (`sanic_gateway/static/swagger-ui`): no CDN, nothing fetched from elsewhere.

Served beside the API like the probes, outside the funnel: the page and its files are the same
for everyone and reveal nothing; the document it shows is `server:openapi`, under the rights of
whoever opens the page (the browser sends its `authToken` cookie; a token given to the page's
Authorize button reloads the document with it). A visitor who may not read it gets a login page
instead of an error (gateway-ui.js). A Content-Security-Policy limits the page to the gateway's
own origin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from sanic import Request as SanicRequest

from .. import errors
from ..request import new_request_id

if TYPE_CHECKING:
    from sanic import Sanic

    from .http import HttpAdapter, HTTPResponse

PAGE_PATH = "/_openapi/ui"
SWAGGER_UI_VERSION = "5.35.0"

# only the gateway's origin: scripts, styles, fonts and the document; images may also be
# `data:` URIs, which Swagger UI's stylesheet uses for its icons (nothing leaves the browser)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# the files change only with the package: browsers keep them a day, then revalidate (ETag)
ASSET_CACHE = "public, max-age=86400"
PAGE_CACHE = "no-cache"


@dataclass(frozen=True)
class Asset:
    file: str
    media_type: str
    charset: bool = True

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8" if self.charset else self.media_type


ASSETS: dict[str, Asset] = {
    "swagger-ui-bundle.js": Asset("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": Asset("swagger-ui.css", "text/css"),
    "gateway-ui.js": Asset("gateway-ui.js", "text/javascript"),
    "favicon-32x32.png": Asset("favicon-32x32.png", "image/png", charset=False),
    "LICENSE": Asset("LICENSE", "text/plain"),
    "NOTICE": Asset("NOTICE", "text/plain"),
    "swagger-ui-bundle.js.LICENSE.txt": Asset("swagger-ui-bundle.js.LICENSE.txt", "text/plain"),
}
_PAGE = Asset("index.html", "text/html")


@cache
def _load(file: str) -> tuple[bytes, str]:
    """A packaged file's bytes and its ETag, read once per process."""
    data = resources.files("sanic_gateway").joinpath("static", "swagger-ui", file).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def install(app: Sanic, adapter: HttpAdapter) -> None:
    """Routes for the page and its files (GET and HEAD)."""
    from .http import HTTPResponse

    def send(request: SanicRequest, asset: Asset, cache_control: str) -> HTTPResponse:
        data, etag = _load(asset.file)
        request_id = new_request_id()
        headers = {"X-Kuzzle-Request-Id": request_id, "ETag": etag,
                   "Cache-Control": cache_control, **_SECURITY_HEADERS}
        if etag in _etags(request.headers.get("if-none-match")):
            return HTTPResponse(status=304, headers=headers)
        return HTTPResponse(data, status=200, headers=headers, content_type=asset.content_type)

    async def page(request: SanicRequest) -> HTTPResponse:
        return send(request, _PAGE, PAGE_CACHE)

    async def asset(request: SanicRequest, name: str) -> HTTPResponse:
        found = ASSETS.get(name)
        if found is None:
            return adapter.error_response(errors.get(
                "network.http.url_not_found", f"{request.method} {request.path}"), None)
        return send(request, found, ASSET_CACHE)

    async def slash(request: SanicRequest) -> HTTPResponse:
        """`/_openapi/ui/` would break the page's relative links: send the browser to the page
        (a relative Location, right behind a proxy that adds a path prefix too)."""
        return HTTPResponse(status=308, headers={"Location": "../ui",
                                                 "X-Kuzzle-Request-Id": new_request_id()})

    app.add_route(page, PAGE_PATH, methods={"GET", "HEAD"}, name="openapi_ui",
                  strict_slashes=True, error_format="json")
    app.add_route(slash, PAGE_PATH + "/", methods={"GET", "HEAD"}, name="openapi_ui_slash",
                  strict_slashes=True, error_format="json")
    app.add_route(asset, PAGE_PATH + "/<name>", methods={"GET", "HEAD"},
                  name="openapi_ui_asset", unquote=True, error_format="json")


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
