"""Gateways started for real in the test's event loop, on a free loopback port."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic

from sanic_gateway.app import create_app
from sanic_gateway.config import load_config
from sanic_gateway.gateway import Gateway

Sanic.test_mode = True


@dataclass
class Served:
    url: str
    client: httpx.AsyncClient
    gateway: Gateway
    app: Sanic

    def plugin(self, name: str) -> Any:
        return self.gateway.plugins[name].obj


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """`await serve(yaml_text, files={...})` starts a gateway and returns a client to it."""
    running: list[tuple[Any, httpx.AsyncClient]] = []

    async def start(yaml_text: str, files: dict[str, str] | None = None,
                    env: dict[str, str] | None = None, dev: bool = False) -> Served:
        write_files(tmp_path, {"gateway.yaml": yaml_text, **(files or {})})
        gateway = Gateway.build(load_config(tmp_path / "gateway.yaml", env=env), dev=dev)
        app = create_app(gateway)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = await app.create_server(sock=sock, return_asyncio_server=True)
        assert server is not None
        await server.startup()
        await server.before_start()
        await server.after_start()
        url = f"http://127.0.0.1:{port}"
        client = httpx.AsyncClient(base_url=url, timeout=10)
        running.append((server, client))
        return Served(url, client, gateway, app)

    yield start
    for server, client in reversed(running):
        await client.aclose()
        await server.before_stop()
        server.close()
        await server.wait_closed()
        await server.after_stop()
    Sanic._app_registry.clear()
