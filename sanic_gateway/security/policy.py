"""The interface between the funnel and security, the User, and the policy used before
security has started."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..api import Action
from ..request import Request


@dataclass
class User:
    """A user as plugins see it: `_id` (the kuid), `profileIds`, `content`."""

    _id: str
    profileIds: list[str] = field(default_factory=list)
    content: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"_id": self._id, "_source": {**self.content, "profileIds": self.profileIds}}


ANONYMOUS = User("-1", ["anonymous"])


class SecurityPolicy(Protocol):
    def authorize(self, request: Request, action: Action,
                  check_rights: bool = True) -> Awaitable[None] | None:
        """Set `request.context.user` (and `token`) and check the request may run `action`.

        Raises 401 (no or bad credentials, anonymous denied), 403 (a user denied) or 429.
        Returns None if decided without waiting, else an awaitable to await.
        """


class OpenPolicy:
    """Everyone is the anonymous user and may do everything (before security has started)."""

    def authorize(self, request: Request, action: Action,
                  check_rights: bool = True) -> Awaitable[None] | None:
        request.context.user = ANONYMOUS
        return None
