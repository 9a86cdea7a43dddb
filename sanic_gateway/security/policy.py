"""The interface between the funnel and security, and the policy used until users exist."""

from __future__ import annotations

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

    @property
    def is_anonymous(self) -> bool:
        return self._id == "-1"

    def to_dict(self) -> dict[str, Any]:
        return {"_id": self._id, "_source": {**self.content, "profileIds": self.profileIds}}


ANONYMOUS = User("-1", ["anonymous"])


class SecurityPolicy(Protocol):
    async def authenticate(self, request: Request) -> None:
        """Set `request.context.user` (and `token`) from `request.input.jwt`, or raise 401."""

    async def is_allowed(self, request: Request, action: Action) -> bool:
        """Whether the authenticated user may run `action`."""


class OpenPolicy:
    """Everyone is the anonymous user and may do everything (no security model configured)."""

    async def authenticate(self, request: Request) -> None:
        request.context.user = ANONYMOUS

    async def is_allowed(self, request: Request, action: Action) -> bool:
        return True
