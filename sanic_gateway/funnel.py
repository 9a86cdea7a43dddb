"""execute(request): the one request lifecycle every protocol goes through (SPEC 5.2).

beforeExecution → authentication → onAuthorized | onUnauthorized → <ctrl>:before<Action> →
action → <ctrl>:after<Action> → onSuccess, or <ctrl>:error<Action> → onError; then
afterExecution. The funnel never knows which protocol a request came by, and never raises:
the outcome is on the Request (`result` or `error`).
"""

from __future__ import annotations

import logging

from . import errors
from .api import Action, ApiTable
from .events import EventBus
from .request import Request
from .security import SecurityPolicy

log = logging.getLogger("sanic_gateway.funnel")


class Funnel:
    def __init__(self, api: ApiTable, bus: EventBus, security: SecurityPolicy) -> None:
        self.api = api
        self.bus = bus
        self.security = security

    async def execute(self, request: Request) -> Request:
        """Run `request` through events, security and its action; return it with its outcome."""
        trigger = self.bus.trigger
        action: Action | None = None
        try:
            request = await trigger("request:beforeExecution", request)
            action = self.api.get(request.input.controller, request.input.action)
            await self.security.authenticate(request)
            if not await self.security.is_allowed(request, action):
                request = await trigger("request:onUnauthorized", request)
                raise self._denied(request, action)
            request = await trigger("request:onAuthorized", request)
            request = await trigger(action.before, request)
            result = await action.call(request)
            status = request.response.status
            request.set_result(result, 200 if status == 102 else status)
            request = await trigger(action.after, request)
            request = await trigger("request:onSuccess", request)
        except Exception as exc:
            request = await self._fail(request, action, exc)
        try:
            await trigger("request:afterExecution", {
                "request": request, "result": request.result, "error": request.error,
                "success": request.error is None,
            })
        except Exception as exc:
            request.set_error(self._as_gateway_error(exc, None))
        return request

    async def _fail(self, request: Request, action: Action | None, exc: Exception) -> Request:
        request.set_error(self._as_gateway_error(exc, action))
        trigger = self.bus.trigger
        if action is not None:
            try:
                request = await trigger(action.error, request)
            except Exception as pipe_exc:
                request.set_error(self._as_gateway_error(pipe_exc, None))
            if request.error is None:  # an error pipe recovered
                return request
        try:
            request = await trigger("request:onError", request)
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

    @staticmethod
    def _denied(request: Request, action: Action) -> errors.GatewayError:
        user = request.context.user
        if user is None or getattr(user, "is_anonymous", True):
            return errors.get("security.rights.unauthorized", action.controller, action.name)
        return errors.get("security.rights.forbidden", action.controller, action.name, user._id)
