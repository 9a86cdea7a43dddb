"""Add an entry to a YAML mapping in a file a person wrote, without re-dumping it.

Dumping a parsed gateway.yaml would drop its comments, quotes and layout; instead the new text
is spliced in after the last line of the target mapping, at its indentation, and the result
is parsed again to prove it holds the same document plus the new entry.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


class InsertError(Exception):
    """The entry cannot be added safely; the message says why and what to do instead."""


def insert_entry(text: str, path: Sequence[str], name: str, block: str) -> str:
    """`text` with `block` (the YAML of `name: ...`, indented from column 0) added under the
    mapping at `path` (e.g. `("plugins",)`), creating the missing levels of `path`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        before = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InsertError(f"not valid YAML, so nothing was added: {exc}") from None
    node: Node | None = root
    depth = 0
    parent_key: Node | None = None
    while depth < len(path) and isinstance(node, MappingNode) and not _is_empty(node):
        _require_block(node, path[:depth])
        found = _value_of(node, path[depth])
        if found is None:
            break
        parent_key, node = found
        depth += 1
    where = ".".join(path[:depth]) or "the top level"
    if node is not None and not isinstance(node, MappingNode) and not _is_empty(node):
        raise InsertError(f"{where} is not a mapping: add the entry by hand")
    if isinstance(node, MappingNode) and not _is_empty(node) and depth == len(path):
        _require_block(node, path)
        if _value_of(node, name) is not None:
            raise InsertError(f"{'.'.join((*path, name))} already exists")
    missing = list(path[depth:])
    if node is None or (depth == 0 and _is_empty(node)):
        indent, at = 0, len(text)  # an empty file
    elif _is_empty(node) and parent_key is not None:
        # `plugins:`, `plugins: ~` or `plugins: {}`: the value goes, the entry comes under
        indent = parent_key.start_mark.column + 2
        start, end = node.start_mark.index, node.end_mark.index
        if end > start:
            head = text[:start]
            text = (head.rstrip(" ") if text[end:end + 1] in ("\n", "") else head) + text[end:]
        at = _after_line(text, parent_key.end_mark)
    elif isinstance(node, MappingNode):
        indent = node.value[0][0].start_mark.column
        at = _after_line(text, _last_mark(node))
    else:
        raise InsertError(f"cannot find where to add under {where}: add the entry by hand")
    lines = []
    for level, key in enumerate(missing):
        lines.append(" " * (indent + 2 * level) + f"{key}:")
    inner = indent + 2 * len(missing)
    lines += [(" " * inner + line) if line.strip() else "" for line in block.splitlines()]
    addition = "\n".join(lines) + "\n"
    head = text[:at]
    if head and not head.endswith("\n"):
        head += "\n"
    result = head + addition + text[at:]
    _check(before, result, path, name, block)
    return result


def _require_block(node: MappingNode, path: Sequence[str]) -> None:
    if node.flow_style:
        where = ".".join(path) or "the document"
        raise InsertError(f"{where} is written in flow style ({{...}}): add the entry by hand")


def _value_of(node: MappingNode, key: str) -> tuple[Node, Node] | None:
    for key_node, value in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value
    return None


def _is_empty(node: Node) -> bool:
    """Nothing under the key yet: null (`key:`, `key: ~`) or an empty `{}`."""
    if isinstance(node, MappingNode):
        return not node.value
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _last_mark(node: Node) -> Any:
    """Where the text of `node` really ends: block collections end where the next token
    starts (past comments that belong to what follows), so descend to their last scalar."""
    while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    return node.end_mark


def _after_line(text: str, mark: Any) -> int:
    """The index just past the line `mark` is on (or `mark` itself at a line's start)."""
    if mark.column == 0:
        return int(mark.index)
    end = text.find("\n", mark.index)
    return len(text) if end < 0 else end + 1


def _check(before: Any, text: str, path: Sequence[str], name: str, block: str) -> None:
    try:
        after = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InsertError(f"adding the entry would break the file ({exc}): add it by hand"
                          ) from None
    expected = yaml.safe_load(block)
    target = after
    for key in path:
        target = target.get(key) if isinstance(target, dict) else None
    if not isinstance(target, dict) or target.get(name) != expected.get(name):
        raise InsertError("the entry would not land where it belongs: add it by hand")
    if _without(after, path, name) != _without(before, path, None):
        raise InsertError("adding the entry would change the rest of the file: add it by hand")


def _without(data: Any, path: Sequence[str], name: str | None) -> Any:
    """`data` minus `name` under `path`, with the levels of `path` left empty pruned."""
    data = copy.deepcopy(data) if isinstance(data, dict) else ({} if data is None else data)
    chain = [data]
    for key in path:
        current = chain[-1]
        if not isinstance(current, dict) or key not in current:
            break
        if current[key] is None:
            current[key] = {}
        chain.append(current[key])
    else:
        if name is not None and isinstance(chain[-1], dict):
            chain[-1].pop(name, None)
    for key, parent in zip(reversed(path[:len(chain) - 1]), reversed(chain[:-1]), strict=False):
        if parent.get(key) == {}:
            del parent[key]
    return data
