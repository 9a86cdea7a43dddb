"""Hook specifications: what a plugin may implement (every hook is optional)."""

from __future__ import annotations

from typing import Any

from . import hookspec


class GatewaySpecs:
    """The hooks the gateway calls on plugins, besides the functions gateway.yaml names."""

    @hookspec
    def init(self, config: dict[str, Any], context: Any) -> Any:
        """Set the plugin up before the server accepts connections; may be async.

        `config` is the plugin's `config:` section from gateway.yaml, `context` its PluginContext
        (log, errors, accessors, constructors). Raising here stops the gateway from starting.
        """

    @hookspec
    def shutdown(self) -> Any:
        """Release what `init` acquired; called once when the gateway stops; may be async."""

    @hookspec
    def api_controllers(self) -> Any:
        """Return controllers to add to the API without a plugin prefix: a list of Controller.

        The core controllers (`server`, ...) are default plugins built this way, so the core and
        plugins go through one registration path. Plugins normally declare their controllers in
        gateway.yaml instead, where they are prefixed with the plugin name.
        """
