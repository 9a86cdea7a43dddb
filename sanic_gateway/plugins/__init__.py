"""Plugins: found (module:, path:, entry_point:), registered in the app's pluggy PluginManager,
their gateway.yaml functions resolved and checked, and given a PluginContext."""

from .context import PluginContext
from .loader import LoadedPlugin, load_plugins
from .manager import GatewayPluginManager

__all__ = ["GatewayPluginManager", "LoadedPlugin", "PluginContext", "load_plugins"]
