"""Security across members: what one member changes, the others apply at once.

Storage stays the truth; the bus only drops the caches that would otherwise keep an old answer
for up to a second (a revoked token, a user's former rights). After a Redis outage, messages
sent meanwhile are lost: every cache is dropped then, and storage is asked again.
"""

from __future__ import annotations

from typing import Any

from ..security.service import Security
from ..security.store import SECURITY_CHANGED
from ..security.tokens import TOKEN_REVOKED, USER_TOKENS_REVOKED
from .bus import Cluster
from .counters import SharedCounters


def share_security(security: Security, cluster: Cluster) -> None:
    """Wire `security`'s caches and counters to `cluster`."""
    tokens, store = security.tokens, security.store
    tokens.peers = store.peers = cluster.send
    security.shared = SharedCounters(cluster)

    def token_revoked(_sender: str, payload: dict[str, Any]) -> None:
        jti, exp = payload.get("jti"), payload.get("exp")
        if isinstance(jti, str):
            tokens.revoked_elsewhere(jti, exp if isinstance(exp, int | float) else None)

    def user_tokens_revoked(_sender: str, payload: dict[str, Any]) -> None:
        kuid = payload.get("kuid")
        if isinstance(kuid, str):
            tokens.revoked_all_elsewhere(kuid)
        else:
            tokens.clear()

    def changed(_sender: str, _payload: dict[str, Any]) -> None:
        store.forget()

    def resync() -> None:
        tokens.clear()
        store.forget()

    cluster.on(TOKEN_REVOKED, token_revoked)
    cluster.on(USER_TOKENS_REVOKED, user_tokens_revoked)
    cluster.on(SECURITY_CHANGED, changed)
    cluster.on_reconnect.append(resync)
