"""The plugin contract of sanic-gateway, as pluggy hook specifications.

Nothing else lives here. A plugin is any object (a class instance or a module); the gateway
registers every plugin in the app's `pluggy.PluginManager` under its name from gateway.yaml.
Methods named like a hookspec below are implementations even without the `@hookimpl` marker,
the way pytest treats its `pytest_*` functions. The functions gateway.yaml names (hooks, pipes,
actions, strategy methods) are looked up by name and need no marker.
"""

import pluggy

PROJECT = "sanic_gateway"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

from .specs import GatewaySpecs  # noqa: E402

__all__ = ["PROJECT", "GatewaySpecs", "hookimpl", "hookspec"]
