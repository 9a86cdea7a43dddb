"""The pytest plugin sanic-gateway installs (entry point `pytest11`): the `start_gateway`
fixture, for the test suites of plugins and of gateway.yaml files.

    def test_now(start_gateway):
        gateway = start_gateway('''
            plugins:
              hello: {module: hello:Hello, controllers: {hello: {greet: greet}}}
        ''')
        assert gateway.http_sync.get("/_now").status_code == 200

Importing this module costs nothing: the gateway is imported when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import GatewayStarter


@pytest.fixture
def start_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayStarter]:
    """`start_gateway(yaml_text_or_path, env=None, storage="fresh")` starts a gateway in this
    process on a free port and returns it (see sanic_gateway.testing.RunningGateway); every
    gateway started is stopped when the test ends. A YAML text takes plugins from the test
    file's folder; storage is a new SQLite file in `tmp_path`."""
    from .testing import GatewayStarter

    starter = GatewayStarter(tmp_path, request.path.parent)
    yield starter
    starter.stop_all()
