"""Adding an entry to a gateway.yaml a person wrote: spliced in as text (comments, quotes and
layout kept), at the mapping's own indentation, or refused when it cannot be done safely."""

from __future__ import annotations

import pytest
import yaml

from sanic_gateway.yaml_insert import InsertError, insert_entry

BLOCK = "hello:\n  module: hello:Hello  # new\n  config: {a: 1}\n"
ENTRY = {"module": "hello:Hello", "config": {"a": 1}}


def plugins_of(text: str) -> dict:
    return yaml.safe_load(text)["plugins"]


def test_into_a_section_followed_by_others_with_its_comments_and_indentation():
    text = ("# mine\nplugins:\n    notes:\n        module: n:N  # keep\n"
            "        hooks:\n            \"request:onSuccess\": count\n\n"
            "# storage comes next\nstorage: x\n")
    result = insert_entry(text, ("plugins",), "hello", BLOCK)
    assert result == ("# mine\nplugins:\n    notes:\n        module: n:N  # keep\n"
                      "        hooks:\n            \"request:onSuccess\": count\n"
                      "    hello:\n      module: hello:Hello  # new\n      config: {a: 1}\n"
                      "\n# storage comes next\nstorage: x\n")
    assert plugins_of(result)["hello"] == ENTRY


@pytest.mark.parametrize("text", [
    "plugins:\nstorage: x\n", "plugins: ~\nstorage: x\n", "plugins: null\nstorage: x\n",
    "plugins: {}\nstorage: x\n",
])
def test_into_an_empty_section(text):
    result = insert_entry(text, ("plugins",), "hello", BLOCK)
    assert result.startswith("plugins:\n  hello:\n") and result.endswith("storage: x\n")
    assert plugins_of(result) == {"hello": ENTRY}


def test_an_empty_section_keeps_its_comment():
    result = insert_entry("plugins: {}  # none yet\n", ("plugins",), "hello", BLOCK)
    assert result.startswith("plugins:   # none yet\n  hello:\n")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "server:\n  port: 1\n"])
def test_the_section_is_created_when_missing(text):
    result = insert_entry(text, ("plugins",), "hello", BLOCK)
    assert result.startswith(text) and plugins_of(result) == {"hello": ENTRY}


def test_nested_levels_are_created_or_joined():
    block = "lines:\n  module: m:C\n  port: 7600\n"
    made = insert_entry("server:\n  port: 1\n", ("server", "protocols"), "lines", block)
    assert made == "server:\n  port: 1\n  protocols:\n    lines:\n      module: m:C\n" \
                   "      port: 7600\n"
    joined = insert_entry("server:\n  protocols:\n    ndjson: {module: a}\n  port: 3\n",
                          ("server", "protocols"), "lines", block)
    assert yaml.safe_load(joined)["server"] == {
        "protocols": {"ndjson": {"module": "a"}, "lines": {"module": "m:C", "port": 7600}},
        "port": 3}


def test_after_a_literal_block_and_without_a_final_newline():
    text = "plugins:\n  a:\n    config:\n      text: |\n        one\n        two\n\nx: 1\n"
    result = insert_entry(text, ("plugins",), "hello", BLOCK)
    loaded = yaml.safe_load(result)
    assert loaded["plugins"]["a"]["config"]["text"] == "one\ntwo\n" and loaded["x"] == 1
    assert loaded["plugins"]["hello"] == ENTRY
    no_newline = insert_entry("plugins:\n  a:\n    module: a", ("plugins",), "hello", BLOCK)
    assert plugins_of(no_newline) == {"a": {"module": "a"}, "hello": ENTRY}


@pytest.mark.parametrize(("text", "message"), [
    ("plugins: {a: {module: a}}\n", "plugins is written in flow style"),
    ("plugins:\n  hello: {module: x}\n", "plugins.hello already exists"),
    ("plugins: []\n", "plugins is not a mapping"),
    ("- a\n", "the top level is not a mapping"),
    ("plugins: [oops\n", "not valid YAML"),
])
def test_what_cannot_be_done_safely_is_refused(text, message):
    with pytest.raises(InsertError, match=message):
        insert_entry(text, ("plugins",), "hello", BLOCK)
