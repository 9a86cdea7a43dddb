"""Test a gateway in-process: start it from a YAML string or file, talk to it over HTTP and
WebSocket, log in as a declared user.

The pytest fixture `start_gateway` (registered by `sanic_gateway.pytest_plugin`) is the usual
way in; `GatewayStarter` is the same thing outside pytest. Each gateway runs in a thread of
the test process with an event loop of its own, so the same clients serve sync tests and async
ones (whatever loop or plugin runs them), and a plugin's objects can be inspected directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import ssl
import textwrap
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .config import ConfigError, load_config

__all__ = ["ConfigError", "GatewayStarter", "RunningGateway", "Session"]

T = TypeVar("T")
TIMEOUT = 10.0  # seconds a client waits for an answer or a notification before failing
_numbers = itertools.count(1)


# -- HTTP -----------------------------------------------------------------------------------------


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: httpx builds one per client otherwise (loading the CA
    bundle: a quarter of a second each), though the gateway is plain HTTP on loopback."""
    return ssl.create_default_context()


class AsyncHttp:
    """`await http.get("/path")`: each call opens and closes its own httpx client, so nothing
    outlives the test's event loop."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float = TIMEOUT) -> None:
        self.url = url
        self.headers = dict(headers)
        self.timeout = timeout

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers,
                                     timeout=self.timeout, verify=_tls()) as client:
            return await client.request(method, path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def query(self, request: Mapping[str, Any] | None = None, **fields: Any,
                    ) -> dict[str, Any]:
        """An API request as a whole (`POST /_query`); returns the response envelope."""
        response = await self.post("/_query", json={**(request or {}), **fields})
        return response.json()


class SyncHttp:
    """`http.get("/path")`, blocking: the same calls as AsyncHttp for tests that are not async."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float = TIMEOUT) -> None:
        self.url = url
        self.headers = dict(headers)
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout,
                          verify=_tls()) as client:
            return client.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def query(self, request: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """An API request as a whole (`POST /_query`); returns the response envelope."""
        return self.post("/_query", json={**(request or {}), **fields}).json()


# -- WebSocket ------------------------------------------------------------------------------------


class _Frames:
    """What both WebSocket clients share: requests stamped with an id (and the session's token),
    answers told apart from notifications (an answer's `room` is its `requestId`)."""

    def __init__(self, jwt: str | None) -> None:
        self.jwt = jwt
        self.notifications: deque[dict[str, Any]] = deque()  # received, not yet asked for
        self.answers: dict[str, dict[str, Any]] = {}  # answers to requests sent with send()

    def frame(self, request: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
        frame = {**(request or {}), **fields}
        frame.setdefault("requestId", str(uuid.uuid4()))
        if self.jwt and "jwt" not in frame:
            frame["jwt"] = self.jwt
        return frame

    def sort(self, text: str | bytes) -> dict[str, Any]:
        message = json.loads(text)
        if isinstance(message, dict) and "requestId" in message \
                and message.get("room") == message["requestId"]:
            self.answers[message["requestId"]] = message
        else:
            self.notifications.append(message)
        return message


class AsyncWebSocket(_Frames):
    """`async with gateway.websocket() as ws`: `await ws.query({...})` returns the answer,
    `await ws.next_notification()` the next notification received meanwhile or after."""

    def __init__(self, url: str, jwt: str | None, timeout: float = TIMEOUT) -> None:
        super().__init__(jwt)
        self.url = url
        self.timeout = timeout
        self.connection: Any = None  # websockets' ClientConnection, for raw frames

    async def send(self, request: Mapping[str, Any] | None = None, **fields: Any) -> str:
        """Send a request without waiting; returns its requestId (see `answer`)."""
        frame = self.frame(request, fields)
        await self.connection.send(json.dumps(frame))
        return str(frame["requestId"])

    async def answer(self, request_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The answer to a request sent with `send`, waiting for it if need be."""
        async with asyncio.timeout(timeout or self.timeout):
            while request_id not in self.answers:
                self.sort(await self.connection.recv())
        return self.answers.pop(request_id)

    async def query(self, request: Mapping[str, Any] | None = None, **fields: Any,
                    ) -> dict[str, Any]:
        """Send a request (`{"controller": ..., "action": ...}`) and return its answer."""
        return await self.answer(await self.send(request, **fields))

    async def next_notification(self, timeout: float | None = None) -> dict[str, Any]:
        """The oldest notification not yet returned; TimeoutError if none comes in time."""
        try:
            async with asyncio.timeout(timeout or self.timeout):
                while not self.notifications:
                    self.sort(await self.connection.recv())
        except TimeoutError:
            raise TimeoutError(f"no notification within {timeout or self.timeout}s") from None
        return self.notifications.popleft()

    async def __aenter__(self) -> AsyncWebSocket:
        from websockets.asyncio.client import connect

        self.connection = await connect(self.url, open_timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()


class SyncWebSocket(_Frames):
    """`with gateway.websocket_sync() as ws`: the blocking twin of AsyncWebSocket."""

    def __init__(self, url: str, jwt: str | None, timeout: float = TIMEOUT) -> None:
        super().__init__(jwt)
        self.url = url
        self.timeout = timeout
        self.connection: Any = None

    def send(self, request: Mapping[str, Any] | None = None, **fields: Any) -> str:
        frame = self.frame(request, fields)
        self.connection.send(json.dumps(frame))
        return str(frame["requestId"])

    def answer(self, request_id: str, timeout: float | None = None) -> dict[str, Any]:
        while request_id not in self.answers:
            self.sort(self.connection.recv(timeout=timeout or self.timeout))
        return self.answers.pop(request_id)

    def query(self, request: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        return self.answer(self.send(request, **fields))

    def next_notification(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            while not self.notifications:
                self.sort(self.connection.recv(timeout=timeout or self.timeout))
        except TimeoutError:
            raise TimeoutError(f"no notification within {timeout or self.timeout}s") from None
        return self.notifications.popleft()

    def __enter__(self) -> SyncWebSocket:
        from websockets.sync.client import connect

        self.connection = connect(self.url, open_timeout=self.timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()


# -- sessions and gateways ------------------------------------------------------------------------


class Session:
    """Clients to one gateway, anonymous or carrying a user's token (`jwt`)."""

    def __init__(self, url: str, jwt: str | None = None) -> None:
        self.url = url
        self.jwt = jwt
        headers = {"Authorization": f"Bearer {jwt}"} if jwt else {}
        self.http = AsyncHttp(url, headers)
        self.http_sync = SyncHttp(url, headers)

    def websocket(self, timeout: float = TIMEOUT) -> AsyncWebSocket:
        """`async with session.websocket() as ws:` a WebSocket on `/`."""
        return AsyncWebSocket(self.ws_url, self.jwt, timeout)

    def websocket_sync(self, timeout: float = TIMEOUT) -> SyncWebSocket:
        """`with session.websocket_sync() as ws:` a blocking WebSocket on `/`."""
        return SyncWebSocket(self.ws_url, self.jwt, timeout)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/"


class RunningGateway(Session):
    """A gateway serving on 127.0.0.1 in a thread of this process, with its own event loop.

    Anonymous clients: `http`, `http_sync`, `websocket()`, `websocket_sync()`; `login()` gives
    the same for a user. `plugin(name)` is the plugin's object, `port(protocol)` the port a
    protocol with a port of its own listens on, `run(coroutine)` runs code on the gateway's loop.
    """

    def __init__(self, gateway: Any, app: Any, server: Any, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread, url: str) -> None:
        super().__init__(url)
        self.gateway = gateway
        self.app = app
        self.config = gateway.config
        self._server = server
        self._loop = loop
        self._thread = thread

    def login(self, user: str, password: str | None = None, *,
              strategy: str = "local", **credentials: Any) -> Session:
        """Log in and return clients carrying the token. `user` is a username (or the kuid of
        a user declared in `security.users`); without `password`, the declared one is used.
        Other strategies take their own fields: `login("x", strategy="apikey", key="...")`."""
        if strategy == "local":
            username, declared = self._declared_local(user)
            body: dict[str, Any] = {"username": username,
                                    "password": password if password is not None else declared}
            if body["password"] is None:
                raise ValueError(f"no password given for {user!r} and none declared for it in "
                                 "security.users")
        else:
            body = dict(credentials)
        response = self.http_sync.post(f"/_login/{strategy}", json=body)
        answer = response.json()
        if response.status_code != 200:
            error = answer.get("error") or {}
            raise AssertionError(f"login as {user!r} failed: {response.status_code} "
                                 f"{error.get('id')}: {error.get('message')}")
        return Session(self.url, answer["result"]["jwt"])

    def _declared_local(self, user: str) -> tuple[str, str | None]:
        users = (self.config.data.get("security") or {}).get("users") or {}
        for kuid, spec in users.items():
            local = ((spec or {}).get("credentials") or {}).get("local") or {}
            if user in (kuid, local.get("username")):
                return str(local.get("username") or user), local.get("password")
        return user, None

    def plugin(self, name: str) -> Any:
        """The object gateway.yaml's `plugins.<name>` loaded (the instance of its class)."""
        return self.gateway.plugins[name].obj

    def port(self, protocol: str) -> int:
        """The port a protocol with a port of its own (MQTT, a custom one) listens on: the
        gateway gave it a free one; the protocol reports it as its `port` attribute."""
        return int(self.gateway.hub.protocols[protocol].obj.port)

    def run(self, coroutine: Awaitable[T], timeout: float = TIMEOUT) -> T:
        """Run a coroutine on the gateway's loop (where plugins run) and return its result."""
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout)

    def stop(self) -> None:
        """Stop serving and let the plugins shut down; idempotent."""
        if self._thread.is_alive():
            try:
                self.run(_stop(self._server), timeout=30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
        _forget_app(self.app)


class GatewayStarter:
    """Starts gateways for one test: `start(yaml_or_path)`; `stop_all()` at the end.

    `tmp` receives the YAML text and the SQLite files; `base_dir` is where a YAML *text* takes
    plugins' `module:` and `path:` from (a YAML *file* takes them from its own folder)."""

    def __init__(self, tmp: Path, base_dir: Path) -> None:
        self.tmp = Path(tmp)
        self.base_dir = Path(base_dir)
        self.running: list[RunningGateway] = []

    def __call__(self, config: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                 storage: str | None = "fresh", dev: bool = True,
                 timeout: float = 30.0) -> RunningGateway:
        return self.start(config, env=env, storage=storage, dev=dev, timeout=timeout)

    def start(self, config: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
              storage: str | None = "fresh", dev: bool = True,
              timeout: float = 30.0) -> RunningGateway:
        """Start a gateway and wait until it serves.

        - `config`: YAML text, or a path (a `Path`, or a string naming a .yaml/.yml file),
          relative to `base_dir`;
        - `env`: variables for `${VAR}` in the file, over the process's environment;
        - `storage`: "fresh" (default) replaces `storage:` with a new SQLite file in `tmp`;
          None keeps the file's; any other string is the storage URL to use;
        - `dev`: stack traces in error responses and an access log (as `run --dev`).

        Every port is free and chosen at start: HTTP/WebSocket on 127.0.0.1, and each protocol
        with a `port:` gets 0 (see `RunningGateway.port`). Raises ConfigError with the messages
        `sanic-gateway check` prints when the configuration is wrong."""
        __tracebackhide__ = True
        number = next(_numbers)
        path = self._config_path(config, number)
        variables = {**os.environ, **(env or {})}
        loaded = load_config(path, env=variables, keep_going=True)
        if not isinstance(config, os.PathLike) and not _names_a_file(config):
            loaded.base_dir = self.base_dir.resolve()
        if not loaded.issues:  # else Gateway.build raises them with the plugins' problems
            self._for_tests(loaded, storage, number)
        from .gateway import Gateway

        gateway = Gateway.build(loaded, dev=dev)
        running = _serve_in_thread(gateway, timeout)
        self.running.append(running)
        return running

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for running in reversed(self.running):
            try:
                running.stop()
            except Exception as exc:
                errors.append(exc)
        self.running.clear()
        if errors:
            raise errors[0]

    def _for_tests(self, loaded: Any, storage: str | None, number: int) -> None:
        """A fresh SQLite file (or the given storage) and a free port for each protocol."""
        if storage == "fresh":
            loaded.data["storage"] = f"sqlite:///{(self.tmp / f'gateway-{number}.db').resolve()}"
        elif storage is not None:
            loaded.data["storage"] = storage
        for spec in loaded.data["server"]["protocols"].values():
            if isinstance(spec, dict) and spec.get("enabled", True) and "port" in spec:
                spec["port"] = 0

    def _config_path(self, config: str | os.PathLike[str], number: int) -> Path:
        if isinstance(config, os.PathLike) or _names_a_file(config):
            path = Path(config)
            return path if path.is_absolute() else self.base_dir / path
        path = self.tmp / "gateway.yaml"
        if path.exists():  # a second gateway in the same test
            path = self.tmp / f"gateway-{number}.yaml"
        path.write_text(textwrap.dedent(str(config)).lstrip("\n"), encoding="utf-8")
        return path


def _names_a_file(config: Any) -> bool:
    return isinstance(config, str) and "\n" not in config \
        and config.strip().endswith((".yaml", ".yml"))


def _serve_in_thread(gateway: Any, timeout: float) -> RunningGateway:
    from sanic import Sanic

    from .app import create_app
    from .connections import protocol_for

    # Sanic rewrites some of its own methods when an app starts; more than one app in a process
    # (one per test) needs its test mode, which keeps the originals to rewrite them again.
    Sanic.test_mode = True
    app = create_app(gateway)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), daemon=True,
                              name=f"sanic-gateway {url}")
    thread.start()
    future = asyncio.run_coroutine_threadsafe(_start(app, sock, protocol_for(app)), loop)
    try:
        server = future.result(timeout)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        sock.close()
        _forget_app(app)
        raise
    return RunningGateway(gateway, app, server, loop, thread, url)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


async def _start(app: Any, sock: socket.socket, protocol: Any) -> Any:
    server = await app.create_server(sock=sock, return_asyncio_server=True, protocol=protocol)
    assert server is not None
    await server.startup()
    try:
        await server.before_start()  # plugins' init: raises what the gateway could not start
    except BaseException:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(Exception):
            await server.after_stop()
        raise
    await server.after_start()
    return server


async def _stop(server: Any) -> None:
    await server.before_stop()
    server.close()
    await server.wait_closed()
    await server.after_stop()


def _forget_app(app: Any) -> None:
    from sanic import Sanic

    Sanic._app_registry.pop(app.name, None)


@contextlib.contextmanager
def gateways(tmp: Path, base_dir: Path) -> Iterator[GatewayStarter]:
    """`with gateways(tmp, base) as start: gw = start(yaml)`: the fixture, outside pytest."""
    starter = GatewayStarter(tmp, base_dir)
    try:
        yield starter
    finally:
        starter.stop_all()
