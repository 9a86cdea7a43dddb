"""Controllers and actions as the funnel and the protocols see them, built once at start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import errors
from ..request import Request

ActionCall = Callable[[Request], Awaitable[Any]]
HTTP_VERBS = ("get", "post", "put", "patch", "delete", "head")


@dataclass(frozen=True)
class HttpRoute:
    """`verb` in lower case; `path` Kuzzle-style, `:name` segments becoming `args.name`."""

    verb: str
    path: str


@dataclass(eq=False, slots=True)
class Action:
    """One API action. Its event names are computed once; the funnel attaches their compiled
    chains (`on_before`, `on_after`, `on_error`) at start."""

    controller: str
    name: str
    call: ActionCall = field(repr=False)
    http: tuple[HttpRoute, ...] = ()
    plugin: str | None = None  # None: a core action
    before: str = field(init=False, repr=False)
    after: str = field(init=False, repr=False)
    error: str = field(init=False, repr=False)
    on_before: Any = field(init=False, repr=False, default=None)
    on_after: Any = field(init=False, repr=False, default=None)
    on_error: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        suffix = self.name[:1].upper() + self.name[1:]
        self.before = f"{self.controller}:before{suffix}"
        self.after = f"{self.controller}:after{suffix}"
        self.error = f"{self.controller}:error{suffix}"

    @property
    def events(self) -> tuple[str, str, str]:
        return (self.before, self.after, self.error)


class Shared(dict[str, Any]):
    """A result computed once and returned to every caller (`server:publicApi`). Serializers
    read it as the dict it is; whatever else could see a result, and change it, gets a copy of
    its own (`thawed`): the funnel gives one to pipes and hooks listening after the action and
    to a plugin's `execute`, the entry point to custom protocols."""

    __slots__ = ()

    def thawed(self) -> dict[str, Any]:
        """A deep copy made of plain dicts and lists (one JSON round trip: ~10x faster than
        copy.deepcopy, about what building the answer again costs)."""
        out: dict[str, Any] = orjson.loads(orjson.dumps(self))
        return out


def thawed(value: Any) -> Any:
    """`value`, or a copy of its own when it is `Shared`."""
    return value.thawed() if isinstance(value, Shared) else value


@dataclass
class Controller:
    name: str
    actions: dict[str, Action]


class ApiTable:
    """Every controller of the running gateway: core ones first, then plugins' in file order."""

    def __init__(self) -> None:
        self.controllers: dict[str, Controller] = {}
        self._public_api: Shared | None = None

    def add(self, controller: Controller) -> None:
        if controller.name in self.controllers:
            raise ValueError(f"controller {controller.name!r} is declared twice")
        self.controllers[controller.name] = controller
        self._public_api = None

    def get(self, controller: str | None, action: str | None) -> Action:
        """The action named by a request, or the catalogued 404 a client should see."""
        ctrl = self.controllers.get(controller or "")
        if ctrl is None:
            raise errors.get("api.process.controller_not_found", controller)
        found = ctrl.actions.get(action or "")
        if found is None:
            raise errors.get("api.process.action_not_found", controller, action)
        return found

    def actions(self) -> Iterator[Action]:
        for ctrl in self.controllers.values():
            yield from ctrl.actions.values()

    def public_api(self) -> Shared:
        """Kuzzle's `server:publicApi` shape, which Kuzzle's SDK reads to build its HTTP URLs:
        built on the first call after the last controller was added (the table does not change
        while the gateway runs: a reload builds another), then the same object every time.
        Never change it: `thawed()` gives a copy to change."""
        if self._public_api is None:
            self._public_api = self._build_public_api()
        return self._public_api

    def _build_public_api(self) -> Shared:
        out = Shared()
        for name, ctrl in self.controllers.items():
            actions: dict[str, Any] = {}
            for action in ctrl.actions.values():
                entry: dict[str, Any] = {"action": action.name, "controller": name}
                if action.http:
                    entry["http"] = [
                        {"path": r.path, "url": r.path, "verb": r.verb.upper()} for r in action.http
                    ]
                actions[action.name] = entry
            out[name] = actions
        return out


class CoreController:
    """A core controller: a default plugin that registers through `api_controllers`, the way
    any plugin could, and reaches the running gateway's parts through it."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    @property
    def security(self) -> Any:
        return self.gateway.security


def controller(name: str, actions: dict[str, tuple[ActionCall, list[tuple[str, str]]]],
               ) -> Controller:
    """A core controller from `{action: (coroutine function, [(verb, path), ...])}`."""
    return Controller(name, {
        action: Action(name, action, call, tuple(HttpRoute(v, p) for v, p in routes))
        for action, (call, routes) in actions.items()
    })
