"""Validate and normalize a gateway.yaml document: Cerberus for shape, then semantic checks.

Cerberus reports nested problems as a tree and words them for programmers ("unknown field",
"must be of integer type"). We walk that tree down to its leaves so each problem becomes one
issue at its exact path, worded for the person editing the file, with "did you mean" where a
close name exists.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import cerberus
from cerberus import errors as cerberus_errors

from . import checks
from .issues import ConfigIssue, KeyPath, did_you_mean
from .schema import SCHEMA, Rules
from .units import parse_duration, parse_size

MakeIssue = Callable[..., ConfigIssue]

_STORAGE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
_REDIS_SCHEMES = ("redis://", "rediss://")
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "number": "a number",
    "boolean": "true or false",
    "dict": "a mapping",
    "list": "a list",
}


class _Validator(cerberus.Validator):
    """Cerberus with the gateway's units and URL checks (referred to by name in schema.py)."""

    def _normalize_coerce_duration(self, value: Any) -> float:
        return parse_duration(value)

    def _normalize_coerce_duration_or_unlimited(self, value: Any) -> float:
        return parse_duration(value, allow_unlimited=True)

    def _normalize_coerce_size(self, value: Any) -> int:
        return parse_size(value)

    def _normalize_coerce_listify(self, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def _normalize_coerce_lower(self, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def _normalize_coerce_empty_to_none(self, value: Any) -> Any:
        return None if value == "" else value

    def _check_with_storage_url(self, field: str, value: Any) -> None:
        if isinstance(value, str) and not value.startswith(_STORAGE_SCHEMES):
            self._error(field, f"unsupported storage URL {value!r} (use sqlite:///path/to/db "
                               "or postgresql://user@host/db)")

    def _check_with_http_url(self, field: str, value: Any) -> None:
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
                self._error(field, f"malformed URL {value!r} (expected http(s)://host/path)")

    def _check_with_redis_url(self, field: str, value: Any) -> None:
        if isinstance(value, str) and not value.startswith(_REDIS_SCHEMES):
            self._error(field, f"unsupported Redis URL {value!r} "
                               "(use redis://host:6379/0 or rediss://...)")


def validate(data: Any, issue: MakeIssue) -> tuple[dict[str, Any], list[ConfigIssue]]:
    """Normalize `data` (defaults filled, units converted) and list every problem in it.

    `issue(path, message, suggestion)` builds an issue. The normalized document is returned even
    when there are issues (as far as it could be normalized), so that callers may go on checking.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, [issue((), f"expected a mapping of sections ({', '.join(SCHEMA)}), "
                              f"got {show(data)}")]
    validator = _Validator(SCHEMA, allow_unknown=False)
    validator.validate(data)
    document = copy.deepcopy(validator.document)
    leaves = list(_leaves(validator._errors))
    # A value that failed to convert ('5 parsecs') then fails its type check too: say it once.
    coercion = cerberus_errors.COERCION_FAILED.code
    unconverted = {e.document_path for e in leaves if e.code == coercion}
    leaves = [e for e in leaves if e.document_path not in unconverted or e.code == coercion]
    found = _missing_keys(leaves, issue)
    found += [_translate(e, issue) for e in leaves
              if e.code != cerberus_errors.REQUIRED_FIELD.code]
    found += checks.check(document, issue)
    return document, _unique(found)


def _leaves(errors: list[cerberus_errors.ValidationError]) -> Iterator[Any]:
    for error in errors:
        if error.is_group_error:
            yield from _leaves(error.child_errors)
        else:
            yield error


def _translate(error: Any, issue: MakeIssue) -> ConfigIssue:
    path: KeyPath = tuple(error.document_path)
    code = error.code
    if path and _SECRET_KEY.search(str(path[-1])):  # never echo what may be a secret
        error.value = _Hidden()
    if code == cerberus_errors.UNKNOWN_FIELD.code:
        key, allowed = path[-1], _allowed_keys(path[:-1])
        suggestion = did_you_mean(key, allowed)
        message = f"unknown key {key!r}"
        if suggestion is None and allowed:
            message += f" (allowed here: {', '.join(allowed)})"
        return issue(path, message, suggestion)
    if code in (cerberus_errors.BAD_TYPE.code, cerberus_errors.NOT_NULLABLE.code):
        return issue(path, f"expected {_expects(path, error)}, got {show(error.value)}")
    if code == cerberus_errors.MIN_VALUE.code:
        return issue(path, f"must be at least {error.constraint}, got {show(error.value)}")
    if code == cerberus_errors.MAX_VALUE.code:
        return issue(path, f"must be at most {error.constraint}, got {show(error.value)}")
    if code == cerberus_errors.UNALLOWED_VALUE.code:
        allowed = ", ".join(str(a) for a in error.constraint)
        return issue(path, f"must be one of {allowed}, got {show(error.value)}",
                     did_you_mean(error.value, error.constraint))
    if code in (cerberus_errors.COERCION_FAILED.code, cerberus_errors.CUSTOM.code) and error.info:
        # Our coercers and checks word their messages for the user already.
        return issue(path, str(error.info[0]))
    handler = cerberus_errors.BasicErrorHandler()
    return issue(path, handler._format_message(error.field, error))


def _missing_keys(leaves: list[Any], issue: MakeIssue) -> list[ConfigIssue]:
    """One issue per mapping that lacks required keys, naming them in the schema's order."""
    missing: dict[KeyPath, list[Any]] = {}
    for error in leaves:
        if error.code == cerberus_errors.REQUIRED_FIELD.code:
            missing.setdefault(tuple(error.document_path[:-1]), []).append(error.field)
    found = []
    for path, keys in missing.items():
        order = _allowed_keys(path)
        keys.sort(key=lambda k: order.index(k) if k in order else len(order))
        names = [repr(k) for k in keys]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        found.append(issue(path, f"missing required key{'s' if len(keys) > 1 else ''} {listed}"))
    return found


def _unique(found: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for i in found:
        key = (i.path, i.message)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def rules_at(path: KeyPath) -> Rules | None:
    """The schema rules that apply at a document path (None where anything goes)."""
    rules: Rules | None = {"type": "dict", "schema": SCHEMA, "allow_unknown": False}
    for key in path:
        if rules is None:
            return None
        if rules.get("type") == "list":
            rules = rules.get("schema") if isinstance(key, int) else None
        elif isinstance(rules.get("schema"), dict) and key in rules["schema"]:
            rules = rules["schema"][key]
        elif "valuesrules" in rules:
            rules = rules["valuesrules"]
        elif isinstance(rules.get("allow_unknown"), dict):
            rules = rules["allow_unknown"]
        else:
            return None
    return rules


def _allowed_keys(path: KeyPath) -> list[str]:
    rules = rules_at(path)
    if rules and rules.get("type") == "dict" and isinstance(rules.get("schema"), dict):
        return list(rules["schema"])
    return []


def _expects(path: KeyPath, error: Any) -> str:
    rules = rules_at(path) or {}
    expects = rules.get("meta", {}).get("expects")
    if expects:
        return expects
    kind = rules.get("type") or error.constraint
    if isinstance(kind, list | tuple):
        return " or ".join(_TYPE_WORDS.get(k, k) for k in kind)
    return _TYPE_WORDS.get(kind, str(kind))


_SECRET_KEY = re.compile(r"secret|password|token|key$", re.IGNORECASE)


class _Hidden:
    """Stands for a value a message must not repeat."""

    def __str__(self) -> str:
        return "a value not shown (it may be a secret)"


def show(value: Any) -> str:
    """A value as the user wrote it, for "got ..." in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)
