"""MkDocs hooks: the build fails (under --strict) when a generated page is out of date."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.sanic_gateway")

_spec = importlib.util.spec_from_file_location(
    "config_reference", Path(__file__).with_name("config_reference.py"))
assert _spec is not None and _spec.loader is not None
config_reference = importlib.util.module_from_spec(_spec)
sys.modules["config_reference"] = config_reference  # dataclasses look their module up
_spec.loader.exec_module(config_reference)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Serve the reference as the schema says today, and warn when the committed page differs."""
    if page.file.src_uri != "reference/gateway-yaml.md":
        return markdown
    if not config_reference.up_to_date(markdown):
        log.warning("docs/reference/gateway-yaml.md is out of date with the schema: "
                    "run python tools/config_reference.py")
    return markdown.replace(config_reference.generated_part(markdown), config_reference.render())
