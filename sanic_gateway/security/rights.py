"""Roles and profiles turned into rights, checked for every request.

A role is `{controllers: {<controller>|"*": {actions: {<action>|"*": bool}}}}`; a profile lists
policies `{roleId, restrictedTo?: [{index, collections?}]}`; a user's rights are the union of
its profiles' policies. The most specific rule of a role wins: (controller, action), then
(controller, *), then (*, action), then (*, *); a user may do what any of its roles allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import errors

OPEN_ROLE = {"controllers": {"*": {"actions": {"*": True}}}}


def located(exc: errors.GatewayError, *at: Any) -> errors.GatewayError:
    """`exc` carrying `at`, the key path inside the checked body where the problem is, so
    that gateway.yaml's checks can point at its line (see `where`)."""
    exc.at = at  # type: ignore[attr-defined]
    return exc


def where(exc: BaseException) -> tuple[Any, ...]:
    """The key path `located` gave `exc`, () if none."""
    return tuple(getattr(exc, "at", ()))


def check_role(role_id: str, body: Any) -> dict[str, Any]:
    """The role's body if well formed, else 400 security.role.invalid_rights naming the path."""
    def bad(why: str, *at: Any) -> errors.GatewayError:
        path = ".".join(map(str, at)) or "controllers"
        return located(errors.get("security.role.invalid_rights", role_id, path, why), *at)

    if not isinstance(body, dict) or not isinstance(body.get("controllers"), dict):
        at = ("controllers",) if isinstance(body, dict) and "controllers" in body else ()
        raise bad("expected {controllers: {<name>: {actions: {<name>: true|false}}}}", *at)
    for controller, entry in body["controllers"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("actions"), dict):
            raise bad("expected {actions: {<action>: true|false}}", "controllers", controller)
        extra = set(entry) - {"actions"}
        if extra:
            raise bad(f"unexpected key(s) {', '.join(sorted(extra))}", "controllers",
                      controller, sorted(extra)[0])
        for action, value in entry["actions"].items():
            if not isinstance(value, bool):
                raise bad("expected true or false", "controllers", controller, "actions", action)
    return body


def grants_everything(body: Any) -> bool:
    """True for a role that allows every action of every controller, security included."""
    controllers = body.get("controllers") if isinstance(body, dict) else None
    return isinstance(controllers, dict) and role_allows(controllers, "security",
                                                         "createUser") is True


def grants_controller(body: Any, controller: str) -> bool:
    """True if the role allows at least one action of `controller` (by name or by `*`)."""
    controllers = body.get("controllers") if isinstance(body, dict) else None
    if not isinstance(controllers, dict):
        return False
    return any(isinstance(entry, dict) and isinstance(entry.get("actions"), dict)
               and any(v is True for v in entry["actions"].values())
               for name, entry in controllers.items() if name in (controller, "*"))


def role_allows(controllers: dict[str, Any], controller: str, action: str) -> bool | None:
    """True/False from the most specific matching rule of one role, None if none matches."""
    for ctrl in (controller, "*"):
        entry = controllers.get(ctrl)
        if entry is None:
            continue
        actions = entry["actions"]
        for act in (action, "*"):
            value = actions.get(act)
            if value is not None:
                return value
    return None


@dataclass(frozen=True)
class Policy:
    role_id: str
    controllers: dict[str, Any]
    restricted_to: tuple[tuple[str, frozenset[str] | None], ...] | None  # (index, collections)

    def applies(self, index: str | None, collection: str | None) -> bool:
        """Kuzzle's rule: a request naming no index is not restricted; one naming an index
        needs that index listed, and, if the index lists collections, one of them."""
        if self.restricted_to is None or index is None:
            return True
        for allowed_index, collections in self.restricted_to:
            if allowed_index == index and (collections is None or collection in collections):
                return True
        return False


class Rights:
    """What one user may do, compiled from its policies, with a per-action memo."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = tuple(policies)
        self._memo: dict[tuple[str, str], bool] = {}
        self._restricted = any(p.restricted_to is not None for p in self.policies)

    def allows(self, controller: str, action: str, index: str | None = None,
               collection: str | None = None) -> bool:
        if not self._restricted:
            key = (controller, action)
            found = self._memo.get(key)
            if found is None:
                found = self._memo[key] = any(
                    role_allows(p.controllers, controller, action) for p in self.policies)
            return found
        return any(role_allows(p.controllers, controller, action)
                   for p in self.policies if p.applies(index, collection))

    def describe(self) -> list[dict[str, Any]]:
        """Kuzzle's getMyRights hits: one per rule of each role, identical ones once (a rule
        allowed by one role and denied by another appears twice, as in Kuzzle)."""
        hits: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str, str, bool]] = set()
        for policy in self.policies:
            scopes = [("*", "*")]
            if policy.restricted_to is not None:
                scopes = [(index, c) for index, cols in policy.restricted_to
                          for c in (sorted(cols) if cols else ["*"])]
            for controller, entry in policy.controllers.items():
                for action, value in entry["actions"].items():
                    for index, collection in scopes:
                        key = (controller, action, index, collection, value)
                        if key in seen:
                            continue
                        seen.add(key)
                        hits.append({"controller": controller, "action": action, "index": index,
                                     "collection": collection,
                                     "value": "allowed" if value else "denied"})
        return hits


def policy_from(role_id: str, role: dict[str, Any], restricted_to: Any) -> Policy:
    restrictions = None
    if restricted_to is not None:
        restrictions = tuple(
            (r["index"], frozenset(r["collections"]) if r.get("collections") else None)
            for r in restricted_to
        )
    return Policy(role_id, role["controllers"], restrictions)


def check_profile(profile_id: str, body: Any) -> dict[str, Any]:
    """The profile's body if well formed, else 400 security.profile.invalid."""
    def bad(why: str, *at: Any) -> errors.GatewayError:
        return located(errors.get("security.profile.invalid", profile_id, why), *at)

    if not isinstance(body, dict):
        raise bad("expected {policies: [{roleId: ...}], rateLimit?: int}")
    extra = set(body) - {"policies", "rateLimit"}
    if extra:
        raise bad(f"unexpected key(s) {', '.join(sorted(map(str, extra)))}",
                  sorted(extra, key=str)[0])
    policies = body.get("policies")
    if not isinstance(policies, list) or not policies:
        raise bad("'policies' must be a non-empty list of {roleId, restrictedTo?}",
                  *(("policies",) if "policies" in body else ()))
    for i, policy in enumerate(policies):
        if not isinstance(policy, dict) or not isinstance(policy.get("roleId"), str):
            raise bad(f"policies[{i}] needs a 'roleId'", "policies", i)
        if set(policy) - {"roleId", "restrictedTo"}:
            raise bad(f"policies[{i}]: only 'roleId' and 'restrictedTo' are allowed",
                      "policies", i)
        restricted = policy.get("restrictedTo")
        if restricted is not None and (
            not isinstance(restricted, list)
            or not all(isinstance(r, dict) and isinstance(r.get("index"), str)
                       and isinstance(r.get("collections", []), list) for r in restricted)):
            raise bad(f"policies[{i}].restrictedTo must be [{{index, collections?: [...]}}]",
                      "policies", i, "restrictedTo")
    rate = body.get("rateLimit", 0)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 0:
        raise bad("'rateLimit' must be an integer >= 0 (0: unlimited)", "rateLimit")
    return body
