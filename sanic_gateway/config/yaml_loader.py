"""Read gateway.yaml safely, keeping the line of every key and substituting `${VAR}`.

PyYAML's `safe_load` forgets where things came from, keeps the last of two duplicate keys without
a word, and resolves types before we could substitute variables. So we compose the node tree
ourselves with a SafeLoader subclass: substitution happens on each scalar *before* its type is
resolved (`port: ${PORT:-7512}` is an int), and a walk of the tree records lines and duplicates.

`{` and `}` end a plain scalar inside a flow mapping, so `jwt: {secret: ${SECRET}}` (as SPEC
section 3 writes it) would not even parse. Before parsing, each reference is therefore swapped for
an inert token of letters and digits on the same line, and swapped back in each scalar.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .issues import ConfigIssue, KeyPath

MakeIssue = Callable[..., ConfigIssue]

# `$${X}` is an escaped literal `${X}`; `${NAME}`, `${NAME:-default}` (default also when empty) and
# `${NAME-default}` (default only when unset) follow the shell.
_REFERENCE = re.compile(r"\$(\$)?\{([^}\n]*)\}")
_UNCLOSED = re.compile(r"(?<!\$)\$\{[^}\n]*")
_NAME_AND_DEFAULT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?", re.DOTALL)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Substitute every `${...}` in `text`; returns the new text and one message per problem."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        reference = _NAME_AND_DEFAULT.fullmatch(match.group(2))
        if reference is None:
            problems.append(
                f"invalid variable reference {match.group(0)!r} "
                "(write ${NAME} or ${NAME:-default}; $${ for a literal ${)"
            )
            return match.group(0)
        name, operator, default = reference.groups()
        value = env.get(name)
        if (operator == ":-" and not value) or (operator == "-" and value is None):
            return default
        if value is None:
            problems.append(
                f"environment variable {name} is not set; set it or write ${{{name}:-default}}"
            )
            return ""
        return str(value)

    expanded = _REFERENCE.sub(replace, text)
    unclosed = _UNCLOSED.search(_REFERENCE.sub("", text))
    if unclosed:
        problems.append(f"unclosed variable reference {unclosed.group(0)!r}: missing '}}' "
                        "(write ${NAME} or ${NAME:-default}; $${ for a literal ${)")
    return expanded, problems


class _References:
    """Hides `${...}` from the YAML parser behind tokens, and brings it back."""

    def __init__(self) -> None:
        self.originals: list[str] = []
        self.nonce = secrets.token_hex(6)
        self._token = re.compile(rf"ENV{self.nonce}R(\d+)R")

    def hide(self, text: str) -> str:
        def token(match: re.Match[str]) -> str:
            self.originals.append(match.group(0))
            return f"ENV{self.nonce}R{len(self.originals) - 1}R"

        return _REFERENCE.sub(token, text)

    def restore(self, text: str) -> str:
        if not self.originals:
            return text
        return self._token.sub(lambda m: self.originals[int(m.group(1))], text)


class _Loader(yaml.SafeLoader):
    """A SafeLoader that substitutes variables in scalar values (not keys) before typing them."""

    def __init__(self, stream: str, env: Mapping[str, str]) -> None:
        self.references = _References()
        super().__init__(self.references.hide(stream))
        self.env = env
        self.env_problems: dict[int, list[str]] = {}  # id(scalar node) -> messages
        self._composing_key = False

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # The composer passes index=None exactly when it composes a mapping's key.
        self._composing_key = isinstance(parent, MappingNode) and index is None
        return super().compose_node(parent, index)

    def compose_scalar_node(self, anchor: str | None) -> ScalarNode:
        event = self.get_event()
        written = self.references.restore(event.value)
        value, problems = (written, []) if self._composing_key else expand_env(written, self.env)
        tag = event.tag
        if tag is None or tag == "!":
            if value == "" and written != "":
                # `${X:-}` is an empty string the user wrote, not a YAML null.
                tag = _STR_TAG
            else:
                tag = self.resolve(ScalarNode, value, event.implicit)
        node = ScalarNode(tag, value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        if problems:
            self.env_problems[id(node)] = problems
        return node


@dataclass
class LoadedYaml:
    """What a file holds, where each key sits, and what went wrong while reading it."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    fatal: bool = False  # True when data could not be read at all


def load_yaml(text: str, env: Mapping[str, str], issue: MakeIssue) -> LoadedYaml:
    """Parse `text`; `issue(path, message, line=...)` builds each reported problem."""
    try:
        loader = _Loader(text, env)  # the reader refuses control characters right away
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        message = f"invalid YAML: character {char!r} is not allowed in a YAML file"
        return LoadedYaml(None, issues=[issue((), message, line=line)], fatal=True)
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(None)
        walker = _Walker(loader, issue)
        walker.walk(node, ())  # first: constructing flattens `<<` merges into the nodes
        data = loader.construct_document(node)
        return LoadedYaml(data, walker.lines, walker.issues)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = loader.references.restore(exc.problem or exc.context or "cannot be parsed")
        if exc.context and exc.problem and exc.context_mark is not None:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return LoadedYaml(None, issues=[issue((), f"invalid YAML: {problem}", line=line)],
                          fatal=True)
    except RecursionError:
        return LoadedYaml(None, issues=[issue((), "invalid YAML: nested too deeply (or a "
                                                  "recursive alias)", line=None)], fatal=True)
    except yaml.YAMLError as exc:
        return LoadedYaml(None, issues=[issue((), f"invalid YAML: {exc}", line=None)], fatal=True)
    finally:
        loader.dispose()


class _Walker:
    """Maps each key path to its line, and reports duplicate keys and unset variables."""

    def __init__(self, loader: _Loader, issue: MakeIssue) -> None:
        self.loader = loader
        self.issue = issue
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[ConfigIssue] = []
        self._visited: set[int] = set()  # aliased collections are walked once (no alias bombs)
        self._merging: set[int] = set()  # `&a {<<: *a}` must not recurse forever

    def walk(self, node: Node, path: KeyPath) -> None:
        if isinstance(node, ScalarNode):
            for message in self.loader.env_problems.pop(id(node), []):
                self.issues.append(self.issue(path, message, line=node.start_mark.line + 1))
            return
        if id(node) in self._visited:
            return
        self._visited.add(id(node))
        if isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.lines.setdefault((*path, index), item.start_mark.line + 1)
                self.walk(item, (*path, index))
        elif isinstance(node, MappingNode):
            self._walk_mapping(node, path)

    def _walk_mapping(self, node: MappingNode, path: KeyPath, merged: bool = False) -> None:
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # `<<: *defaults`: the merged keys belong here unless written explicitly.
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if isinstance(source, MappingNode) and id(source) not in self._merging:
                        self._merging.add(id(source))
                        self._walk_mapping(source, path, merged=True)
                        self._merging.discard(id(source))
                continue
            key = self.loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue
            line = key_node.start_mark.line + 1
            key_path = (*path, key)
            if key in first_line and not merged:
                self.issues.append(self.issue(
                    key_path,
                    f"duplicate key {key!r} (first at line {first_line[key]}); "
                    "YAML would silently keep only the last one",
                    line=line,
                ))
            first_line.setdefault(key, line)
            if merged and key_path in self.lines:
                continue
            self.lines[key_path] = line  # a duplicate's lines follow the value YAML keeps
            self.walk(value_node, key_path)
