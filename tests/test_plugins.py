"""Plugins: the three ways to find one, their context, and the errors users meet."""

from __future__ import annotations

import json

import pytest

from sanic_gateway import __version__
from sanic_gateway.config import ConfigError, load_config
from sanic_gateway.gateway import Gateway
from tests.conftest import write_files

PLUGIN = """
    import asyncio

    class Greeter:
        async def init(self, config, context):
            await asyncio.sleep(0)
            self.greeting = config.get("greeting", "hello")
            self.context = context

        async def hello(self, request):
            ctx = self.context
            return {
                "greeting": f"{self.greeting} {request.input.args['name']}",
                "log": ctx.log.name,
                "has_execute": callable(ctx.accessors.execute),
                "config_port": ctx.config["server"]["port"],
                "error_class": ctx.errors.BadRequestError.__name__,
            }
"""

ROUTES = """
    controllers:
      greet: {hello: hello}
    routes:
      - {verb: get, url: /hello/:name, controller: greet, action: hello}
"""


async def test_module_plugin_with_async_init_and_context(serve):
    served = await serve(f"""
plugins:
  greeter:
    module: greeter:Greeter
    config: {{greeting: hi}}
{ROUTES}""", files={"greeter.py": PLUGIN})
    r = await served.client.get("/_plugin/greeter/hello/ann")
    assert r.json()["result"] == {
        "greeting": "hi ann", "log": "sanic_gateway.plugin.greeter", "has_execute": True,
        "config_port": 7512, "error_class": "BadRequestError",
    }
    # registered in the app's pluggy PluginManager under its gateway.yaml name
    assert served.gateway.pm.get_plugin("greeter") is served.plugin("greeter")


async def test_context_config_is_read_only(serve):
    served = await serve(f"""
plugins:
  greeter:
    module: greeter:Greeter
{ROUTES}""", files={"greeter.py": PLUGIN})
    with pytest.raises(TypeError):
        served.plugin("greeter").context.config["server"]["port"] = 1


async def test_module_as_plugin_and_sync_init(serve):
    served = await serve("""
plugins:
  mod:
    module: modplugin
    controllers:
      m: {ping: ping}
    routes:
      - {verb: get, url: /ping, controller: m, action: ping}
""", files={"modplugin.py": """
    state = {}
    def init(config, context):
        state["ready"] = True
    def ping(request):
        return {"ready": state.get("ready", False)}
"""})
    assert (await served.client.get("/_/mod/ping")).json()["result"] == {"ready": True}


def manifest(name: str = "folder-plugin", version: str | None = ">=0.1,<1") -> str:
    data = {"name": name}
    if version is not None:
        data["gatewayVersion"] = version
    return json.dumps(data)


async def test_path_plugin_with_manifest(serve):
    served = await serve(f"""
plugins:
  folder-plugin:
    path: plugins/greeter
{ROUTES}""", files={"plugins/greeter/manifest.json": manifest(),
                    "plugins/greeter/__init__.py": PLUGIN.replace("class Greeter",
                                                                  "class Plugin")})
    r = await served.client.get("/_/folder-plugin/hello/bo")
    assert r.json()["result"]["greeting"] == "hello bo"


def build(tmp_path, yaml_text: str, files: dict[str, str] | None = None) -> Gateway:
    write_files(tmp_path, {"gateway.yaml": yaml_text, **(files or {})})
    return Gateway.build(load_config(tmp_path / "gateway.yaml"))


def errors_of(tmp_path, yaml_text: str, files: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        build(tmp_path, yaml_text, files)
    return str(info.value)


def test_manifest_version_unsatisfied_refuses_to_start(tmp_path):
    text = errors_of(tmp_path, "plugins:\n  p:\n    path: plugins/p\n", {
        "plugins/p/manifest.json": manifest("p", ">=2"), "plugins/p/__init__.py": ""})
    assert "requires sanic-gateway >=2" in text and __version__ in text
    assert "gateway.yaml:3: plugins.p.path:" in text


def test_manifest_without_version_warns(tmp_path, caplog):
    build(tmp_path, "plugins:\n  p:\n    path: plugins/p\n", {
        "plugins/p/manifest.json": manifest("p", None), "plugins/p/__init__.py": ""})
    assert any("gatewayVersion" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("manifest_text", "message"), [
    ('{"gatewayVersion": ">=0"}', "a 'name' is required"),
    ('{"name": "bad name!"}', "invalid name 'bad name!'"),
    ("{nope", "cannot read"),
])
def test_bad_manifests(tmp_path, manifest_text, message):
    text = errors_of(tmp_path, "plugins:\n  p:\n    path: plugins/p\n", {
        "plugins/p/manifest.json": manifest_text, "plugins/p/__init__.py": ""})
    assert message in text


def test_missing_function_suggests_the_close_one(tmp_path):
    text = errors_of(tmp_path, """
plugins:
  greeter:
    module: greeter:Greeter
    pipes:
      "greet:beforeHello": helo
""", {"greeter.py": PLUGIN})
    assert ("gateway.yaml:6: plugins.greeter.pipes.greet:beforeHello: no function 'helo' in "
            "greeter:Greeter (did you mean 'hello'?)") in text


def test_wrong_arguments_and_several_errors_at_once(tmp_path):
    text = errors_of(tmp_path, """
plugins:
  p:
    module: wrong:P
    hooks:
      "request:onSuccess": three_args
    controllers:
      c: {a: no_args, b: missing}
""", {"wrong.py": """
    class P:
        def three_args(self, a, b, c): ...
        def no_args(self): ...
"""})
    assert "three_args(a, b, c) in wrong:P cannot be called as a hook" in text
    assert "no_args() in wrong:P cannot be called as a action" in text or \
        "no_args() in wrong:P cannot be called as an action" in text
    assert "no function 'missing'" in text


def test_unimportable_module_and_missing_class(tmp_path):
    text = errors_of(tmp_path, """
plugins:
  a:
    module: does_not_exist:X
  b:
    module: greeter:Greter
""", {"greeter.py": PLUGIN})
    assert "gateway.yaml:4: plugins.a.module: cannot import 'does_not_exist'" in text
    assert "no 'Greter' in greeter (did you mean 'Greeter'?)" in text


async def test_a_kuzzle_style_init_is_called_by_position(tmp_path):
    gateway = build(tmp_path, "plugins:\n  p:\n    module: kuzzle_style:P\n    config: {a: 1}\n",
                    {"kuzzle_style.py": """
    class P:
        def init(self, customConfig, context):
            self.seen = (customConfig, context.log.name)
"""})
    await gateway.start()
    try:
        assert gateway.plugins["p"].obj.seen == ({"a": 1}, "sanic_gateway.plugin.p")
    finally:
        await gateway.stop()


def test_an_init_that_cannot_take_config_and_context_is_refused(tmp_path):
    text = errors_of(tmp_path, "plugins:\n  p:\n    module: three_args:P\n",
                     {"three_args.py": """
    class P:
        def init(self, a, b, c): ...
"""})
    assert ("gateway.yaml:2: plugins.p: init(a, b, c) in three_args:P cannot be called as an "
            "init") in text


async def test_init_failure_stops_the_start(tmp_path):
    gateway = build(tmp_path, "plugins:\n  p:\n    module: bad:P\n", {"bad.py": """
    class P:
        def init(self, config, context):
            raise RuntimeError("no database")
"""})
    from sanic_gateway.gateway import PluginStartError
    message = "plugin 'p': init failed: RuntimeError: no database"
    with pytest.raises(PluginStartError, match=message):
        await gateway.start()


def test_unknown_entry_point(tmp_path):
    text = errors_of(tmp_path, "plugins:\n  p:\n    entry_point: not-installed\n")
    assert "no entry point 'not-installed' in group 'sanic_gateway'" in text
