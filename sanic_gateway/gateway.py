"""Gateway: gateway.yaml compiled into objects, once: plugins, API table, event chains, funnel.

Nothing here runs per request. `Gateway.build(config)` reports every problem at once as a
ConfigError (so `check` and `run` share it); `start()` and `stop()` bracket the server's life.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pluggy

from . import __version__, errors, logs, vault
from .api import Action, ApiTable, Controller, HttpRoute
from .api.auth import AuthController
from .api.realtime import RealtimeController
from .api.security import SecurityController
from .api.server import ServerController
from .cluster import Cluster, ClusterStartError
from .config import Config, ConfigError, ConfigIssue
from .events import EventBus, Listener, as_async
from .funnel import Funnel
from .hook_workers import HookWorkerPool
from .metrics import Exporter, Stats
from .plugins import GatewayPluginManager, LoadedPlugin, PluginContext, load_plugins
from .plugins.functions import FunctionError, resolve
from .protocols.entrypoint import Hub, ProtocolStartError
from .protocols.loader import load_protocols
from .realtime.service import Realtime
from .security import OpenPolicy
from .security.declared import check_declared_api, closed_warnings
from .security.rights import role_api
from .security.service import Security
from .security.strategies import check_signature, strategy_from_callables
from .storage import Storage, open_storage

log = logging.getLogger("sanic_gateway")

# Every event the core fires besides each action's before/after/error (`known_events()`) and
# plugins' own `plugin-<name>:<event>`: the single list. Firing an event that is not here fails
# the tests, and so does an event here that docs/reference/events.md does not document.
CORE_EVENTS = (
    "request:beforeExecution", "request:onAuthorized", "request:onUnauthorized",
    "request:onSuccess", "request:onError", "request:afterExecution",
    "connection:new", "connection:remove", "core:gatewayStart", "core:shutdown",
    "hook:onError", "auth:strategyAuthenticated",
    "core:realtime:user:subscribe:after", "core:realtime:user:unsubscribe:after", "room:new",
    "room:remove", "notify:document", "notify:user",
)


# Kuzzle's events that nothing fires yet (no document controller, server notifications sent
# without an event): listening to them is no typo. Documented as reserved.
FIRED_LATER = (
    "notify:server", *(f"generic:document:{when}{what}" for when in ("before", "after")
                       for what in ("Write", "Update", "Delete", "Get")),
)


class Gateway:
    def __init__(self, config: Config, *, dev: bool = False) -> None:
        self.config = config
        self.dev = dev
        self.pm = GatewayPluginManager()
        self.api = ApiTable()
        self.plugins: dict[str, LoadedPlugin] = {}
        self.contexts: dict[str, PluginContext] = {}
        self.pipes: list[Listener] = []
        self.hooks: list[Listener] = []
        self.hook_pools: dict[str, HookWorkerPool] = {}  # plugins with `threads: N > 0`
        limits = config.data["limits"]
        self.bus = EventBus(
            pipe_timeout=limits["pipe_timeout"],
            pipe_warn_time=limits["pipe_warn_time"],
            max_concurrent_pipes=limits["max_concurrent_pipes"],
            pipes_buffer_size=limits["pipes_buffer_size"],
            hooks_buffer_size=limits["hooks_buffer_size"],
            plugin_threads=limits["plugin_threads"],
        )
        self.funnel = Funnel(self.api, self.bus, OpenPolicy())
        # server.metrics: what is counted while serving (metrics.py); the exporter that shows
        # it is made by start(), in the worker process
        self.stats: Stats | None = Stats() if config.data["server"].get("metrics", True) else None
        self.funnel.stats = self.bus.stats = self.stats
        self.exporter: Exporter | None = None
        # a line per request (access_log.py): server.access_log, --access-log or --dev
        self.access_log = dev or bool(config.data["server"].get("access_log", False))
        self.version = __version__
        self.started = False
        # (plugin, strategy name, fields, {method: function}) resolved at build, registered at start
        self.plugin_strategies: list[tuple[str, str, list[str], dict[str, Any]]] = []
        self.storage: Storage | None = None  # opened by start()
        self.security: Security | None = None
        self.cluster: Cluster | None = None  # cluster mode (`cluster.redis`): started by start()
        self.hub = Hub(self)  # protocols other than HTTP, their connections and channels
        self.realtime = Realtime(self.hub, self.bus)  # rooms, subscriptions, notifications
        self.warnings: list[ConfigIssue] = []  # what `check` prints besides its summary
        # the vault's decrypted secrets (`context.secrets`): never in config.data, so neither
        # in server:getConfig nor in what is logged of the configuration
        self.secrets: dict[str, Any] = {}
        self.secrets_file: Any = None  # the Path they were read from, if any

    # -- build -------------------------------------------------------------------------------

    @classmethod
    def build(cls, config: Config, *, dev: bool = False) -> Gateway:
        """Load and check every plugin; raise ConfigError listing all problems found.

        A config loaded with `keep_going` may carry the file's own problems (`issues`): the
        plugins are still loaded from the rest of the file, so one run reports both."""
        if config.issues:
            raise cls._second_pass(config, dev)
        return cls._build(config, dev=dev)

    @classmethod
    def _second_pass(cls, config: Config, dev: bool) -> ConfigError:
        issues, warnings = list(config.issues), []
        rest = config.checkable()
        try:
            if rest is not None:
                warnings = cls._build(rest, dev=dev).warnings
        except ConfigError as exc:
            # what sits under a reported path is a consequence of it, not news; so is the
            # vault read with defaults in place of a wrong `vault` key
            vault_wrong = any(r.path[:1] == ("vault",) for r in config.issues)
            issues += [i for i in exc.issues
                       if not any(i.path[:len(r.path)] == r.path for r in config.issues)
                       and not (vault_wrong and i.path[:1] == ("vault",))]
            warnings = exc.warnings
        except Exception:  # a value only the first pass could judge: its report stands
            log.debug("second pass of the checks stopped", exc_info=True)
        return ConfigError(issues, warnings)

    @classmethod
    def _build(cls, config: Config, *, dev: bool = False) -> Gateway:
        gateway = cls(config, dev=dev)
        issues: list[ConfigIssue] = []
        gateway.pm.register(ServerController(gateway), name="core:server")
        gateway.pm.register(AuthController(gateway), name="core:auth")
        gateway.pm.register(SecurityController(gateway), name="core:security")
        gateway.pm.register(RealtimeController(gateway), name="core:realtime")
        for _name, controllers in gateway.pm.call_each("api_controllers"):
            for controller in controllers or ():
                gateway.api.add(controller)
        gateway._open_vault(issues)
        for plugin in load_plugins(config, issues):
            gateway._add_plugin(plugin, issues)
        for protocol in load_protocols(config, issues):
            gateway.hub.add(protocol)
        if not issues:  # roles name existing controllers and actions, plugins' included
            issues += check_declared_api(config.data, role_api(gateway.api), config.issue)
        gateway.warnings = closed_warnings(config.data, gateway.plugin_controllers(),
                                           config.issue)
        gateway.warnings += gateway.unheard_listeners()
        if issues:
            raise ConfigError(issues, gateway.warnings)
        gateway.bus.set_listeners(gateway.pipes, gateway.hooks)
        gateway.bus.compile(gateway.known_events())
        gateway.funnel.prepare()
        gateway.realtime.prepare()
        return gateway

    def _open_vault(self, issues: list[ConfigIssue]) -> None:
        """Decrypt the secrets at build, so that `check` refuses what `run` would; every
        decrypted string (and the key) is masked in logs from now on."""
        spec = self.config.data.get("vault") or {}
        try:
            self.secrets = vault.load(spec, self.config.base_dir)
        except vault.VaultError as exc:
            issues.append(self.config.issue(("vault", "file") if exc.file_named else ("vault",),
                                            exc.message))
            return
        where = vault.source(spec, self.config.base_dir)
        logs.register_secret(where.key)
        if where.key:
            self.secrets_file = where.file
        for value in vault.leaves(self.secrets):
            logs.register_secret(value)

    def _add_plugin(self, plugin: LoadedPlugin, issues: list[ConfigIssue]) -> None:
        name, spec, where = plugin.name, plugin.spec, ("plugins", plugin.name)
        count = len(issues)
        try:
            self.pm.register(plugin.obj, name=name)
        except pluggy.PluginValidationError as exc:
            issues.append(self.config.issue(where, f"{plugin.source}: {exc}"))
        except ValueError as exc:  # the same object registered twice
            issues.append(self.config.issue(where, str(exc)))

        init = getattr(plugin.obj, "init", None)
        if callable(init) and self.pm.impl_for("init", name) is None:
            try:  # an init named otherwise than init(config, context): called by position
                resolve(plugin.obj, plugin.source, "init", "init")
            except FunctionError as exc:
                issues.append(self.config.issue(where, exc.message))

        def function(path: tuple[Any, ...], fname: str, kind: str) -> tuple[Any, int] | None:
            try:
                return resolve(plugin.obj, plugin.source, fname, kind)
            except FunctionError as exc:
                issues.append(self.config.issue((*where, *path), exc.message, exc.suggestion))
                return None

        pool = self._hook_pool(plugin) if spec.get("threads") else None
        for kind, target in (("hook", self.hooks), ("pipe", self.pipes)):
            for pattern, names in spec.get(f"{kind}s", {}).items():
                for index, fname in enumerate(names):
                    # a list names each item; `event: name` became a one-item list
                    at = (f"{kind}s", pattern, *((index,) if len(names) > 1 else ()))
                    found = function(at, fname, kind)
                    if found and kind == "hook" and pool is not None:
                        if index == len(names) - 1:  # one event, one worker, all its hooks
                            self.hooks.append(pool.listener(pattern, tuple(names)))
                    elif found:
                        fn, nargs = found
                        target.append(Listener(name, pattern, fname,
                                               as_async(fn, self.bus.threads,
                                                        wait=kind == "hook"),
                                               nargs >= 2))

        routes: dict[tuple[str, str], list[HttpRoute]] = {}
        for route in spec.get("routes", []):
            for prefix in (f"/_plugin/{name}", f"/_/{name}"):
                routes.setdefault((route["controller"], route["action"]), []).append(
                    HttpRoute(route["verb"], prefix + route["url"]))
        for ctrl_name, actions in spec.get("controllers", {}).items():
            full_name = f"{name}/{ctrl_name}"
            compiled = {}
            for action_name, fname in actions.items():
                found = function(("controllers", ctrl_name, action_name), fname, "action")
                if found:
                    compiled[action_name] = Action(
                        full_name, action_name, as_async(found[0], self.bus.threads),
                        tuple(routes.get((ctrl_name, action_name), ())), plugin=name)
            if len(issues) == count:
                self.api.add(Controller(full_name, compiled))
        for strategy_name, strategy in spec.get("strategies", {}).items():
            methods = {}
            for method, fname in (strategy.get("methods") or {}).items():
                path = ("strategies", strategy_name, "methods", method)
                found = function(path, fname, "strategy method")
                if not found:
                    continue
                fn = found[0]
                problem = check_signature(method, fn)
                if problem:
                    issues.append(self.config.issue((*where, *path),
                                                    f"{fname}: {problem}"))
                    continue
                methods[method] = fn
            self.plugin_strategies.append(
                (name, strategy_name, list(strategy.get("fields") or []), methods))
        self.plugins[name] = plugin

    def _hook_pool(self, plugin: LoadedPlugin) -> HookWorkerPool:
        """The worker processes of a plugin with `threads: N` (started by start())."""
        limits = self.config.data["limits"]
        pool = self.hook_pools[plugin.name] = HookWorkerPool(
            plugin.name, plugin.spec, base_dir=self.config.base_dir, config_data=self.config.data,
            secrets=self.secrets,
            buffer_size=limits["hook_workers_buffer_size"], timeout=limits["hook_workers_timeout"],
            dev=self.dev)

        def failed(event: str, error: BaseException) -> None:
            if self.stats is not None:
                self.stats.hook_error(plugin.name, event)
            self.bus.hook("hook:onError", {"error": error, "event": event, "plugin": plugin.name})

        pool.on_error = failed
        return pool

    def plugin_controllers(self) -> list[str]:
        return [c.name for c in self.api.controllers.values()
                if any(a.plugin for a in c.actions.values())]

    def unheard_listeners(self) -> list[ConfigIssue]:
        """Pipes and hooks on an event the gateway never fires: most often a typo
        (`beforeHelo`, `request:onSucess`), which would otherwise fail silently. Plugins' own
        events (`plugin-<name>:...`) and wildcards are not judged."""
        known = set(self.known_events()) | set(FIRED_LATER)
        prefixes = {event.partition(":")[0] for event in known}
        found = []
        for kind, listeners in (("pipes", self.pipes), ("hooks", self.hooks)):
            for listener in listeners:
                event = listener.pattern
                if "*" in event or event in known or event.startswith("plugin-"):
                    continue
                if event.partition(":")[0] not in prefixes:
                    continue  # an event of the plugin's own making
                close = difflib.get_close_matches(event, known, n=1)
                found.append(self.config.issue(
                    ("plugins", listener.plugin, kind, event),
                    f"{listener.name!r} listens to an event the gateway never fires",
                    close[0] if close else None))
        return found

    def known_events(self) -> Iterator[str]:
        yield from CORE_EVENTS
        for action in self.api.actions():
            yield from action.events

    # -- life --------------------------------------------------------------------------------

    def storage_url(self) -> str:
        """`storage:` with a relative SQLite path taken from gateway.yaml's folder."""
        url = self.config.data["storage"]
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            path, sep, query = url[len(prefix):].partition("?")
            if path and path != ":memory:":
                url = prefix + str((self.config.base_dir / path).resolve()) + sep + query
        return url

    async def start(self) -> None:
        """Reach Redis (cluster mode), open storage, join the cluster, start security
        (built-in roles, strategies), call each plugin's init in file order (awaiting async
        ones), create or update the declared roles, profiles and users (their credentials may
        be of a plugin strategy), then fire core:gatewayStart. Raises StartError
        (PluginStartError naming a plugin that failed); nothing stays open then. Redis comes
        first: opening storage creates its schema, which a start refused for Redis would
        leave behind."""
        cluster = self._cluster()
        if cluster is not None:
            try:
                await cluster.reach()
            except ClusterStartError as exc:
                raise StartError(str(exc)) from exc
        try:
            self.storage = await open_storage(self.storage_url())
        except Exception as exc:
            if cluster is not None:
                await cluster.stop()
            raise StorageStartError(self.config.data["storage"], exc) from exc
        try:
            await self._join_cluster(cluster)
            if self.cluster is not None:
                await self.realtime.join_cluster(self.cluster)
            auth = self.pm.get_plugin("core:auth")
            self.security = Security(self.storage, self.config.data, issue=auth.issue_for)
            self.security.tokens.on_revoked.append(self.hub.token_revoked)
            if self.cluster is not None:
                from .cluster.security import share_security

                share_security(self.security, self.cluster)
            await self.security.start()
            self.funnel.security = self.security
            for plugin_name, strategy_name, fields, methods in self.plugin_strategies:
                try:
                    await self.security.strategies.register(strategy_from_callables(
                        strategy_name, methods, fields, owner=plugin_name,
                        threads=self.bus.threads))
                except Exception as exc:
                    raise PluginStartError(plugin_name, exc) from exc
            await self._init_plugins()
            for name, pool in self.hook_pools.items():
                try:
                    await pool.start()
                except Exception as exc:
                    raise PluginStartError(name, exc) from exc
            for warning in self.unheard_listeners():
                log.warning("%s", warning)
            try:
                await self.security.apply_declared()
            except errors.GatewayError as exc:
                issue = self.config.issue(getattr(exc, "declared", ("security",)), exc.message)
                raise StartError(str(issue)) from exc
            await self.security.warn_if_open(self.plugin_controllers())
            try:
                await self.hub.start()
            except ProtocolStartError as exc:
                raise StartError(str(exc)) from exc.__cause__
        except BaseException:
            await self.hub.stop()
            for pool in self.hook_pools.values():
                await pool.close(grace=1.0)
            await self.realtime.leave_cluster()
            if self.cluster is not None:
                await self.cluster.stop()
                self.cluster = None
            await self.storage.close()
            self.storage = None
            raise
        if self.stats is not None:
            self.stats.login_action = self.api.get("auth", "login")
            self.stats.strategies = self.security.strategies
            self.exporter = Exporter(self)
            self.exporter.start()
        self.started = True
        await self.bus.trigger("core:gatewayStart", None)

    def _cluster(self) -> Cluster | None:
        """Cluster mode (`cluster.redis`): this member, not joined yet."""
        spec = self.config.data.get("cluster") or {}
        if not spec.get("redis"):
            return None
        cluster = Cluster(spec["redis"], prefix=spec["prefix"], heartbeat=spec["heartbeat"],
                          node_timeout=spec["node_timeout"])
        cluster.describers.append(self._describe_member)
        return cluster

    async def _join_cluster(self, cluster: Cluster | None) -> None:
        """Join the other members through Redis (StartError if unreachable)."""
        if cluster is None:
            return
        try:
            await cluster.start()
        except ClusterStartError as exc:
            raise StartError(str(exc)) from exc
        self.cluster = cluster

    def _describe_member(self) -> dict[str, Any]:
        """What other members (and server:info) show of this one."""
        http = getattr(self, "http", None)
        protocols = {"http": len(http.open_connections)} if http is not None else {}
        for name in self.hub.protocols:
            protocols[name] = 0
        for owner in self.hub.owners.values():
            protocols[owner] = protocols.get(owner, 0) + 1
        return {"protocols": protocols, "connections": sum(protocols.values())}

    async def _init_plugins(self) -> None:
        for name, plugin in self.plugins.items():
            context = self.contexts[name] = PluginContext(self, name, self.secrets)
            args = {"config": dict(plugin.spec.get("config") or {}), "context": context}
            impl = self.pm.impl_for("init", name)
            init = getattr(plugin.obj, "init", None)
            if impl is None and not callable(init):
                continue
            try:
                if impl is not None:
                    out = impl.function(**{a: args[a] for a in impl.argnames})
                else:
                    _, count = resolve(plugin.obj, plugin.source, "init", "init")
                    out = init(*(args["config"], args["context"])[:count])
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:
                raise PluginStartError(name, exc) from exc

    async def stop_protocols(self) -> None:
        """Protocols stop first (answering requests in flight), when the server starts
        stopping; idempotent, so stop() calls it too."""
        await self.hub.stop()

    async def stop(self) -> None:
        await self.stop_protocols()
        if self.started:
            try:
                await self.bus.trigger("core:shutdown", None)
            except Exception:
                log.exception("core:shutdown")
        for name, out in self.pm.call_each("shutdown"):
            try:
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("plugin %r: shutdown failed", name)
        for pool in self.hook_pools.values():  # after core:shutdown: they get it too
            await pool.close()
        await self.bus.close()
        await self.realtime.leave_cluster()
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
        if self.exporter is not None:
            await self.exporter.stop()
            self.exporter = None
        if self.storage is not None:
            await self.storage.close()
            self.storage = None
        self.started = False

    # -- description -------------------------------------------------------------------------

    def summary(self) -> str:
        """What `check` prints: plugins with their events, controllers and routes."""
        lines = [f"{self.config.path.name}: OK"]
        lines.append(f"plugins ({len(self.plugins)}):")
        for name, plugin in self.plugins.items():
            lines.append(f"  {name}  [{plugin.source}]")
            for kind in ("pipes", "hooks"):
                for event, names in plugin.spec.get(kind, {}).items():
                    lines.append(f"    {kind[:-1]} {event} -> {', '.join(names)}")
        events = sorted({lst.pattern for lst in (*self.pipes, *self.hooks)})
        lines.append(f"events listened ({len(events)}): {', '.join(events) or '-'}")
        plugin_ctrls = [c for c in self.api.controllers.values()
                        if any(a.plugin for a in c.actions.values())]
        lines.append(f"controllers ({len(plugin_ctrls)}):")
        for ctrl in plugin_ctrls:
            lines.append(f"  {ctrl.name}: {', '.join(ctrl.actions)}")
        strategies = [f"{name} ({'oauth2' if spec.get('oauth2') else 'built in'})"
                      for name, spec in self.config.data["auth"]["strategies"].items()]
        strategies += [f"{name} (plugin {plugin})"
                       for plugin, name, _, _ in self.plugin_strategies]
        protocols = ["http"] if self.config.data["server"]["protocols"]["http"]["enabled"] else []
        protocols += [f"{name} [{p.source}]" for name, p in self.hub.protocols.items()]
        lines.append(f"protocols ({len(protocols)}): {', '.join(protocols) or '-'}")
        lines.append(f"strategies ({len(strategies)}): {', '.join(strategies) or '-'}")
        if self.secrets_file is not None:  # names only: the values are secret
            lines.append(f"secrets: {len(vault.leaves(self.secrets))} value(s) decrypted from "
                         f"{self.secrets_file}")
        routes = [(r, a) for a in self.api.actions() if a.plugin for r in a.http]
        lines.append(f"routes ({len(routes)}):")
        for route, action in routes:
            lines.append(f"  {route.verb.upper():6} {route.path} -> "
                         f"{action.controller}:{action.name}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


class StartError(Exception):
    """The gateway cannot start; the message says what to fix, in one line."""


class PluginStartError(StartError):
    def __init__(self, plugin: str, cause: BaseException) -> None:
        super().__init__(f"plugin {plugin!r}: init failed: {type(cause).__name__}: {cause}")
        self.plugin = plugin


class StorageStartError(StartError):
    """`storage:` cannot be opened (a missing folder, a database that refuses us)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        reason = getattr(cause, "message", None) or f"{type(cause).__name__}: {cause}"
        super().__init__(f"storage {_without_password(url)}: cannot open it: {reason}")


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}"
    return url
