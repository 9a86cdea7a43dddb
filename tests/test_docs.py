"""The README is the manual: what users can use is documented there (Datasette's habit)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from plugin_specs import GatewaySpecs
from sanic_gateway.config.schema import SCHEMA

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
HOOKSPECS = [name for name, _ in inspect.getmembers(GatewaySpecs, inspect.isfunction)]


@pytest.mark.parametrize("name", HOOKSPECS)
def test_every_hookspec_has_a_docstring_and_is_in_the_readme(name):
    assert inspect.getdoc(getattr(GatewaySpecs, name)), f"hookspec {name} has no docstring"
    assert re.search(rf"`{name}\b", README), f"hookspec {name} is not documented in README.md"


@pytest.mark.parametrize("key", sorted(SCHEMA))
def test_every_top_level_key_is_in_the_readme(key):
    assert re.search(rf"`{key}[`:]", README) or f"### {key}" in README, key
