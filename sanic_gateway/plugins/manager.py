"""One pluggy PluginManager per gateway (never a global one: tests and workers stay isolated)."""

from __future__ import annotations

import inspect
from typing import Any

import pluggy

from plugin_specs import PROJECT, GatewaySpecs

_SPEC_NAMES = frozenset(
    name for name, _ in inspect.getmembers(GatewaySpecs, inspect.isfunction)
)


def _uses_spec_names(function: Any, name: str) -> bool:
    """Whether an unmarked method's parameters are named as in the hookspec. Kuzzle-style
    `init(self, customConfig, context)` is not: the gateway calls such an `init` by position
    instead (pluggy passes arguments by name)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    spec = inspect.signature(getattr(GatewaySpecs, name)).parameters
    return set(params) <= set(spec) - {"self"}


class GatewayPluginManager(pluggy.PluginManager):
    """A PluginManager that knows the gateway's hookspecs and accepts unmarked implementations.

    A plugin written from the README defines `init(self, config, context)` without importing
    pluggy; like pytest with `pytest_*` names, a method named after a hookspec is taken as its
    implementation.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(GatewaySpecs)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name in _SPEC_NAMES:
            member = getattr(plugin, name, None)
            if (callable(member) and not inspect.isclass(member)
                    and _uses_spec_names(member, name)):
                return {}
        return opts

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of `hook_name`, in registration order, returning
        (plugin name, raw result) pairs: results may be awaitables, which pluggy does not await.
        """
        out = []
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            args = {name: kwargs[name] for name in impl.argnames}
            out.append((impl.plugin_name, impl.function(**args)))
        return out

    def impl_for(self, hook_name: str, plugin_name: str) -> Any:
        """The implementation of `hook_name` by one plugin, or None."""
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            if impl.plugin_name == plugin_name:
                return impl
        return None
