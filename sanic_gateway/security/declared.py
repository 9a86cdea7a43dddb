"""gateway.yaml's `security:` section, checked before anything starts.

`run` applies the declared roles, profiles and users at start (`Security.apply_declared`);
whatever would stop it there is found here first, by the same functions the store and the
strategies use (`check_role`, `check_profile`, `check_user`, `check_local_credentials`), so
that `check` and `run` refuse the same file with the same message, at its line.

Declared entries refer to declared or built-in ones only: a declared profile names a role
declared in the file or a built-in one (anonymous, default, admin), a declared user names such
profiles, and declared credentials name a strategy declared in the file. Roles created at run
time through the API are not known before the start, and Kuzzle also refuses a profile naming
a role that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import errors
from ..config.issues import ConfigIssue, KeyPath, did_you_mean
from ..storage.base import encode_body
from .rights import check_profile, check_role, grants_controller, grants_everything, where
from .store import PROTECTED, check_id, check_user

MakeIssue = Callable[..., ConfigIssue]
USER_KEYS = ("profileIds", "content", "credentials")
LOCAL = "local"


def user_entry(kuid: Any, body: Any) -> tuple[Any, Any]:
    """A declared user's content (its `profileIds` in it, `[default]` if none) and its
    credentials by strategy (as written: `check` says what is wrong with them): how
    `apply_declared` and `check` both read an entry."""
    body = body if isinstance(body, dict) else {}
    content = body.get("content")
    content = dict(content) if isinstance(content, dict) else content
    if isinstance(content, dict) or content is None:
        content = {**(content or {}), "profileIds": body.get("profileIds") or ["default"]}
    credentials = body.get("credentials") or {}
    return content, credentials


def check_declared(document: dict[str, Any], issue: MakeIssue) -> list[ConfigIssue]:
    """Every problem `apply_declared` would meet at start, as issues at their lines."""
    security = document.get("security")
    if not isinstance(security, dict):
        return []
    sections = {name: security.get(name) if isinstance(security.get(name), dict) else {}
                for name in ("roles", "profiles", "users")}
    checker = _Checker(issue, sections, _strategies(document))
    found = list(checker.roles())
    found += checker.profiles()
    found += checker.users()
    found += checker.oauth_profiles(document)
    return found


def is_closed(document: dict[str, Any]) -> bool:
    """True when gateway.yaml declares an `anonymous` role that keeps visitors out of the
    security controller: the gateway is then closed from its first start."""
    anonymous = ((document.get("security") or {}).get("roles") or {}).get("anonymous")
    return _valid_role(anonymous) and not grants_everything(anonymous)


def ungranted(roles: Iterable[Any], controllers: Iterable[str]) -> list[str]:
    """The controllers that none of `roles` grants, roles that allow everything (admins)
    aside: on a closed gateway, only admins may call them."""
    granting = [r for r in roles if not grants_everything(r)]
    return [name for name in controllers if not any(grants_controller(r, name)
                                                     for r in granting)]


def closed_warnings(document: dict[str, Any], controllers: Iterable[str],
                    issue: MakeIssue) -> list[ConfigIssue]:
    """`check`'s warnings: on a gateway closed by its file, the plugin controllers that no
    declared role grants."""
    if not is_closed(document):
        return []
    roles = [body for body in ((document.get("security") or {}).get("roles") or {}).values()
             if _valid_role(body)]
    found = []
    for name in ungranted(roles, controllers):
        plugin, _, controller = name.partition("/")
        found.append(issue(("plugins", plugin, "controllers", controller),
                           f"no declared role grants {name!r} and the gateway is closed "
                           "(security.roles.anonymous is declared): only admins may call it; "
                           "grant it in a role under security.roles"))
    return found


def _valid_role(body: Any) -> bool:
    try:
        check_role("role", body)
    except errors.GatewayError:
        return False
    return True


def _strategies(document: dict[str, Any]) -> dict[str, str]:
    """Strategy name -> "local", "oauth2" or "plugin", for those gateway.yaml declares."""
    known: dict[str, str] = {}
    auth = document.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("strategies"), dict):
        for name in auth["strategies"]:
            known[str(name)] = LOCAL if name == LOCAL else "oauth2"
    plugins = document.get("plugins")
    for spec in (plugins.values() if isinstance(plugins, dict) else ()):
        strategies = spec.get("strategies") if isinstance(spec, dict) else None
        for name in (strategies if isinstance(strategies, dict) else ()):
            known.setdefault(str(name), "plugin")
    return known


class _Checker:
    def __init__(self, issue: MakeIssue, sections: dict[str, dict[Any, Any]],
                 strategies: dict[str, str]) -> None:
        self.issue = issue
        self.sections = sections
        self.strategies = strategies
        self.role_ids = [*PROTECTED, *(r for r in sections["roles"] if r not in PROTECTED)]
        self.profile_ids = [*PROTECTED,
                            *(p for p in sections["profiles"] if p not in PROTECTED)]

    def _error(self, path: KeyPath, exc: errors.GatewayError,
               suggestion: str | None = None) -> ConfigIssue:
        return self.issue((*path, *where(exc)), exc.message, suggestion)

    def _unknown(self, path: KeyPath, exc: errors.GatewayError, name: Any,
                 candidates: list[str], kind: str) -> ConfigIssue:
        close = did_you_mean(name, candidates)
        message = exc.message
        if close is None:
            message += f" (a declared or built-in {kind}: {', '.join(candidates)})"
        return self.issue(path, message, close)

    def roles(self) -> Iterator[ConfigIssue]:
        for role_id, body in self.sections["roles"].items():
            path = ("security", "roles", role_id)
            try:
                check_id(role_id, "role")
                check_role(role_id, body)
            except errors.GatewayError as exc:
                yield self._error(path, exc)

    def profiles(self) -> Iterator[ConfigIssue]:
        for profile_id, body in self.sections["profiles"].items():
            path = ("security", "profiles", profile_id)
            try:
                check_id(profile_id, "profile")
                check_profile(profile_id, body)
            except errors.GatewayError as exc:
                yield self._error(path, exc)
            policies = body.get("policies") if isinstance(body, dict) else None
            for i, policy in enumerate(policies if isinstance(policies, list) else ()):
                role_id = policy.get("roleId") if isinstance(policy, dict) else None
                if isinstance(role_id, str) and role_id not in self.role_ids:
                    yield self._unknown((*path, "policies", i, "roleId"),
                                        errors.get("security.role.not_found", role_id),
                                        role_id, self.role_ids, "role")

    def users(self) -> Iterator[ConfigIssue]:
        usernames: dict[str, Any] = {}
        for kuid, body in self.sections["users"].items():
            path = ("security", "users", kuid)
            if body is not None and not isinstance(body, dict):
                continue  # the schema said so
            for key in (body or {}):
                if key not in USER_KEYS:
                    close = did_you_mean(key, USER_KEYS)
                    yield self.issue((*path, key), f"unknown key {key!r}" + (
                        "" if close else f" (allowed here: {', '.join(USER_KEYS)})"), close)
            content, credentials = user_entry(kuid, body)
            yield from self._user(path, kuid, content)
            if not isinstance(credentials, dict):
                yield self.issue((*path, "credentials"),
                                 "expected a mapping of strategy names to credentials")
                continue
            for name, values in credentials.items():
                yield from self._credentials((*path, "credentials", name), name, values,
                                             usernames)

    def _user(self, path: KeyPath, kuid: Any, content: Any) -> Iterator[ConfigIssue]:
        try:
            check_user(kuid, content)
        except errors.GatewayError as exc:
            at = ("profileIds",) if exc.id == "security.user.no_profile" else ()
            at = ("content",) if exc.id == "api.assert.invalid_type" else at
            yield self.issue((*path, *at), exc.message)
            return
        try:
            encode_body(content, "content")
        except errors.GatewayError as exc:
            yield self.issue((*path, "content"), exc.message)
        for i, profile_id in enumerate(content["profileIds"]):
            if profile_id not in self.profile_ids:
                yield self._unknown((*path, "profileIds", i),
                                    errors.get("security.profile.not_found", profile_id),
                                    profile_id, self.profile_ids, "profile")

    def _credentials(self, path: KeyPath, name: Any, values: Any,
                     usernames: dict[str, Any]) -> Iterator[ConfigIssue]:
        from .oauth import provider_only
        from .strategies import check_local_credentials, username_taken
        from .usernames import username_key

        kind = self.strategies.get(str(name))
        if kind is None:
            known = list(self.strategies)
            close = did_you_mean(name, known)
            message = errors.get("security.credentials.unknown_strategy", name).message
            if close is None:
                message += f" (declared: {', '.join(known) or 'none'})"
            yield self.issue(path, message, close)
        elif kind == "oauth2":
            yield self.issue(path, provider_only(str(name)).message)
        elif kind == LOCAL:
            try:
                check_local_credentials(values, is_update=False)
            except errors.GatewayError as exc:
                yield self._error(path, exc)
                return
            username = username_key(values["username"])  # Bob and bob are one account
            if username in usernames:
                yield self._error(path, username_taken(values["username"]))
            usernames.setdefault(username, path)
        # a plugin's strategy validates at start, once the plugin's init has run

    def oauth_profiles(self, document: dict[str, Any]) -> Iterator[ConfigIssue]:
        """The profiles a provider gives its new users: unknown ones would fail every first
        login."""
        strategies = (document.get("auth") or {}).get("strategies")
        for name, spec in (strategies.items() if isinstance(strategies, dict) else ()):
            oauth2 = spec.get("oauth2") if isinstance(spec, dict) else None
            profiles = oauth2.get("profiles") if isinstance(oauth2, dict) else None
            for i, profile_id in enumerate(profiles if isinstance(profiles, list) else ()):
                if isinstance(profile_id, str) and profile_id not in self.profile_ids:
                    yield self._unknown(("auth", "strategies", name, "oauth2", "profiles", i),
                                        errors.get("security.profile.not_found", profile_id),
                                        profile_id, self.profile_ids, "profile")
