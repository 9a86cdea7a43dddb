"""execute(request): the one request lifecycle every protocol goes through (SPEC 5.2).

beforeExecution → authentication → onAuthorized | onUnauthorized → <ctrl>:before<Action> →
action → <ctrl>:after<Action> → onSuccess, or <ctrl>:error<Action> → onError; then
afterExecution. The funnel never knows which protocol a request came by, and never raises:
the outcome is on the Request (`result` or `error`). Event chains are compiled in `prepare()`;
an event nobody listens to costs one attribute read here.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

from . import errors
from .api import Action, ApiTable
from .api.base import Shared
from .events import EventBus
from .loop_share import LoopShare
from .metrics import Stats
from .request import Request
from .security import SecurityPolicy

log = logging.getLogger("sanic_gateway.funnel")


class Funnel:
    def __init__(self, api: ApiTable, bus: EventBus, security: SecurityPolicy) -> None:
        self.api = api
        self.bus = bus
        self.security = security
        self.share = LoopShare()  # pipelining clients cannot hold the loop (loop_share.py)
        self.stats: Stats | None = None  # server.metrics: counts each request (metrics.py)
        self.prepare()

    def prepare(self) -> None:
        """Compile the chains of every event the funnel fires (call again if listeners change)."""
        event = self.bus.event
        self.on_before_execution = event("request:beforeExecution")
        self.on_authorized = event("request:onAuthorized")
        self.on_unauthorized = event("request:onUnauthorized")
        self.on_success = event("request:onSuccess")
        self.on_error = event("request:onError")
        self.on_after_execution = event("request:afterExecution")
        for action in self.api.actions():
            action.on_before = event(action.before)
            action.on_after = event(action.after)
            action.on_error = event(action.error)

    async def execute(self, request: Request, *, check_rights: bool = True) -> Request:
        """Run `request` through events, security and its action; return it with its outcome.

        `check_rights=False` is for requests a plugin makes (`accessors.execute`): as in Kuzzle,
        they are authenticated if they carry a token, but not checked against rights.
        """
        action: Action | None = None
        stats = self.stats
        started = perf_counter() if stats is not None else 0.0
        if self.share.due():
            await asyncio.sleep(0)
        try:
            if self.on_before_execution.active:
                request = await self.on_before_execution.fire(request)
            action = self.api.get(request.input.controller, request.input.action)
            try:
                pending = self.security.authorize(request, action, check_rights)
                if pending is not None:
                    await pending
            except (errors.UnauthorizedError, errors.ForbiddenError):
                if self.on_unauthorized.active:
                    request = await self.on_unauthorized.fire(request)
                raise
            if self.on_authorized.active:
                request = await self.on_authorized.fire(request)
            if action.on_before.active:
                request = await action.on_before.fire(request)
            result = await action.call(request)
            if isinstance(result, Shared) and (
                    not check_rights or action.on_after.active or self.on_success.active
                    or self.on_after_execution.active):
                result = result.thawed()  # theirs to change, not the next caller's
            status = request.response.status
            partial = request.error  # Kuzzle's 206 PartialError, sent beside the result
            request.set_result(result, 200 if status == 102 else status)
            if partial is not None and partial.status == 206:
                request.error = partial
            if action.on_after.active:
                request = await action.on_after.fire(request)
            if self.on_success.active:
                request = await self.on_success.fire(request)
        except Exception as exc:
            request = await self._fail(request, action, exc)
        if self.on_after_execution.active:
            try:
                await self.on_after_execution.fire({
                    "request": request, "result": request.result, "error": request.error,
                    "success": request.error is None,
                })
            except Exception as exc:
                request.set_error(self._as_gateway_error(exc, None))
        if stats is not None:
            stats.request(action, request,
                          request.context.connection.protocol if check_rights else "internal",
                          perf_counter() - started)
        return request

    async def _fail(self, request: Request, action: Action | None, exc: Exception) -> Request:
        request.set_error(self._as_gateway_error(exc, action))
        if action is not None and action.on_error.active:
            try:
                request = await action.on_error.fire(request)
            except Exception as pipe_exc:
                request.set_error(self._as_gateway_error(pipe_exc, None))
            if request.error is None:  # an error pipe recovered
                return request
        if self.on_error.active:
            try:
                request = await self.on_error.fire(request)
            except Exception as pipe_exc:
                request.set_error(self._as_gateway_error(pipe_exc, None))
        return request

    @staticmethod
    def _as_gateway_error(exc: Exception, action: Action | None) -> errors.GatewayError:
        if isinstance(exc, errors.GatewayError):
            return exc
        if action is not None and action.plugin is not None:
            log.error("plugin %r: action %s:%s raised", action.plugin, action.controller,
                      action.name, exc_info=exc)
            error = errors.get("plugin.runtime.unexpected_error", f"{type(exc).__name__}: {exc}")
        else:
            log.error("unexpected error", exc_info=exc)
            error = errors.get("core.fatal.unexpected_error", f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
