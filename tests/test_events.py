"""Pipes, hooks and the request lifecycle, seen through HTTP as a user sees them."""

from __future__ import annotations

import asyncio
import time

REC = "tests.plugins.recorder:Recorder"


def rec_yaml(pipes: str = "", hooks: str = "", limits: str = "") -> str:
    return f"""
limits:
{limits or "  pipe_timeout: 5s"}
plugins:
  rec:
    module: {REC}
    pipes:
{pipes or '      {}'}
    hooks:
{hooks or '      {}'}
    controllers:
      api:
        echo: echo
        echoSync: echo_sync
        fail: fail
        seen: seen_events
        inner: run_inner
        header: with_header
        unserializable: unserializable
    routes:
      - {{verb: post, url: /echo, controller: api, action: echo}}
      - {{verb: get, url: /echo/:name, controller: api, action: echo}}
      - {{verb: put, url: /echo/:name, controller: api, action: echo}}
      - {{verb: patch, url: /echo/:name, controller: api, action: echo}}
      - {{verb: delete, url: /echo/:name, controller: api, action: echo}}
      - {{verb: get, url: /sync, controller: api, action: echoSync}}
      - {{verb: get, url: /fail, controller: api, action: fail}}
      - {{verb: get, url: /seen, controller: api, action: seen}}
      - {{verb: get, url: /inner, controller: api, action: inner}}
      - {{verb: get, url: /header, controller: api, action: header}}
      - {{verb: get, url: /unserializable, controller: api, action: unserializable}}
"""


async def test_pipes_run_in_declared_order_and_changes_reach_the_action(serve):
    served = await serve(rec_yaml(pipes="""
      "rec/api:beforeEcho": [add_b, add_a, add_sync]
      "request:beforeExecution": add_a
"""))
    r = await served.client.post("/_/rec/echo", json={})
    assert r.status_code == 200, r.text
    # beforeExecution first, then the action's before-pipes in list order; sync ran in a thread
    assert r.json()["result"]["body"]["trail"] == ["a", "b", "a", "sync-thread"]


async def test_order_across_plugins_is_file_order(serve):
    served = await serve(rec_yaml(pipes="""
      "rec/api:beforeEcho": add_b
""").replace("plugins:\n", f"""plugins:
  first:
    module: {REC}
    pipes:
      "rec/api:beforeEcho": add_a
"""))
    r = await served.client.post("/_/rec/echo", json={})
    assert r.json()["result"]["body"]["trail"] == ["a", "b"]


async def test_a_pipe_returning_none_leaves_the_payload_as_changed(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": returns_none'))
    r = await served.client.post("/_/rec/echo", json={"x": 1})
    assert r.json()["result"]["body"] == {"x": 1, "touched": True}


async def test_lifecycle_events_in_order_with_wildcards(serve):
    served = await serve(rec_yaml(pipes="""
      "request:*": trace
      "rec/api:*": trace
"""))
    await served.client.post("/_/rec/echo", json={})
    r = await served.client.get("/_/rec/seen")
    seen = r.json()["result"]
    first = seen[: seen.index("request:afterExecution") + 1]
    assert first == [
        "request:beforeExecution", "request:onAuthorized", "rec/api:beforeEcho",
        "rec/api:afterEcho", "request:onSuccess", "request:afterExecution",
    ]


async def test_before_wildcard_hears_only_before_events(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:before*": trace'))
    await served.client.post("/_/rec/echo", json={})
    await served.client.get("/_/rec/fail")
    r = await served.client.get("/_/rec/seen")
    assert r.json()["result"] == ["rec/api:beforeEcho", "rec/api:beforeFail", "rec/api:beforeSeen"]


async def test_failed_action_fires_error_events(serve):
    served = await serve(rec_yaml(pipes="""
      "rec/api:errorFail": trace
      "request:onError": trace
      "request:onSuccess": trace
"""))
    r = await served.client.get("/_/rec/fail")
    assert r.status_code == 500
    assert r.json()["error"]["id"] == "plugin.runtime.unexpected_error"
    assert "action failed" in r.json()["error"]["message"]
    seen = (await served.client.get("/_/rec/seen")).json()["result"]
    assert seen[:2] == ["rec/api:errorFail", "request:onError"]


async def test_an_error_pipe_may_recover(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:errorFail": recover'))
    r = await served.client.get("/_/rec/fail")
    assert r.status_code == 200
    body = r.json()
    assert body["error"] is None
    assert body["result"] == {"recovered": True, "was": "plugin.runtime.unexpected_error"}


async def test_a_pipe_gateway_error_reaches_the_client_as_is(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": deny'))
    r = await served.client.post("/_/rec/echo", json={})
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["id"] == "plugin.test.denied"
    assert error["message"] == "denied by a pipe"
    assert error["status"] == 403
    assert "stack" not in error


async def test_a_pipe_raising_anything_else_is_a_500_plugin_error(serve, caplog):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": explode'))
    r = await served.client.post("/_/rec/echo", json={})
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["id"] == "plugin.runtime.unexpected_error"
    assert "boom" in error["message"] and "rec" in error["message"]
    assert "stack" not in error and "Traceback" not in r.text
    assert any("rec" in rec.getMessage() and "explode" in rec.getMessage()
               for rec in caplog.records)


async def test_a_pipe_returning_something_else_than_the_request_is_reported(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": returns_dict'))
    r = await served.client.post("/_/rec/echo", json={})
    assert r.status_code == 500
    assert r.json()["error"]["id"] == "plugin.runtime.invalid_pipe_result"


async def test_dev_mode_shows_the_stack(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": explode'), dev=True)
    r = await served.client.post("/_/rec/echo", json={})
    assert "ValueError: boom" in r.json()["error"]["stack"]


async def test_pipe_timeout_cancels_the_pipe_and_answers_504_in_time(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": slow',
                                  limits="  pipe_timeout: 300ms"))
    started = time.monotonic()
    slow = asyncio.create_task(served.client.post("/_/rec/echo", json={}))
    # meanwhile, others are served
    await asyncio.sleep(0.05)
    other = await served.client.get("/_now")
    assert other.status_code == 200
    assert not slow.done()
    r = await slow
    elapsed = time.monotonic() - started
    assert r.status_code == 504
    assert r.json()["error"]["id"] == "plugin.runtime.pipe_timeout"
    assert elapsed < 0.3 + 0.1 + 0.15  # timeout + 100 ms, plus the client's own overhead
    rec = served.plugin("rec")
    assert rec.cancelled
    assert rec.finally_ran.is_set()
    # the server is healthy afterwards
    assert (await served.client.get("/_/rec/sync")).status_code == 200


async def test_blocking_plain_pipes_do_not_stall_the_loop(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": blocking'))
    slow = asyncio.create_task(served.client.post("/_/rec/echo", json={}))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    r = await served.client.get("/_now")
    assert r.status_code == 200
    assert time.monotonic() - started < 0.2
    assert (await slow).status_code == 200


async def test_plain_actions_run_in_a_thread(serve):
    served = await serve(rec_yaml())
    r = await served.client.get("/_/rec/sync")
    assert r.json()["result"] == {"thread": True}


async def test_beyond_max_concurrent_pipes_requests_wait_then_503(serve):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": slow',
                                  limits="  pipe_timeout: 1s\n  max_concurrent_pipes: 1\n"
                                         "  pipes_buffer_size: 1"))
    first = asyncio.create_task(served.client.post("/_/rec/echo", json={}))
    await asyncio.sleep(0.1)
    buffered = asyncio.create_task(served.client.post("/_/rec/echo", json={}))
    await asyncio.sleep(0.1)
    rejected = await served.client.post("/_/rec/echo", json={})
    assert rejected.status_code == 503
    assert rejected.json()["error"]["id"] == "plugin.runtime.too_many_pipes"
    assert (await first).status_code == 504
    assert (await buffered).status_code == 504  # it ran once the first chain ended
    # requests without pipes never wait
    assert (await served.client.get("/_/rec/sync")).status_code == 200


async def test_a_slow_hook_does_not_delay_the_response(serve):
    served = await serve(rec_yaml(hooks='      "request:onSuccess": slow_hook'))
    started = time.monotonic()
    r = await served.client.post("/_/rec/echo", json={})
    assert r.status_code == 200
    assert time.monotonic() - started < 1.0
    assert not served.plugin("rec").slow_hook_done
    await asyncio.sleep(1.7)
    assert served.plugin("rec").slow_hook_done


async def test_hooks_hear_events_and_wildcards(serve):
    served = await serve(rec_yaml(hooks='      "rec/api:after*": hook_trace'))
    await served.client.post("/_/rec/echo", json={})
    await asyncio.sleep(0.2)
    seen = (await served.client.get("/_/rec/seen")).json()["result"]
    assert "hook rec/api:afterEcho" in seen


async def test_a_failing_hook_fires_hook_on_error_without_looping(serve):
    served = await serve(rec_yaml(hooks="""
      "request:onSuccess": failing_hook
      "hook:onError": on_hook_error
"""))
    r = await served.client.post("/_/rec/echo", json={})
    assert r.status_code == 200
    await asyncio.sleep(0.3)
    errors = served.plugin("rec").hook_errors
    # one per failing hook call (echo), and none for the failing hook:onError hook itself
    assert len(errors) == 1
    assert errors[0]["event"] == "request:onSuccess"
    assert errors[0]["plugin"] == "rec"
    assert isinstance(errors[0]["error"], RuntimeError)


async def test_execute_from_a_plugin_runs_the_whole_funnel_with_events(serve):
    served = await serve(rec_yaml(pipes="""
      "rec/api:beforeEcho": add_a
      "plugin-rec:custom": trace
"""))
    r = await served.client.get("/_/rec/inner")
    result = r.json()["result"]
    assert result["inner"]["body"] == {"from": "inside", "trail": ["a"]}
    assert result["inner"]["protocol"] == "internal"
    assert result["fired"] == {"n": 1}
    seen = (await served.client.get("/_/rec/seen")).json()["result"]
    assert "plugin-rec:custom" in seen


async def test_a_slow_hook_does_not_delay_other_hooks(serve):
    served = await serve(rec_yaml(hooks='      "request:onSuccess": [slow_hook, hook_trace]'))
    for _ in range(3):
        assert (await served.client.post("/_/rec/echo", json={})).status_code == 200
    await asyncio.sleep(0.2)
    rec = served.plugin("rec")
    assert rec.seen.count("hook request:onSuccess") == 3
    assert not rec.slow_hook_done


async def test_a_pipe_slower_than_the_warn_time_is_logged(serve, caplog):
    served = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": blocking',
                                  limits="  pipe_timeout: 5s\n  pipe_warn_time: 100ms"))
    assert (await served.client.post("/_/rec/echo", json={})).status_code == 200
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
              and "took" in r.getMessage()]
    assert any("'rec'" in m and "'blocking'" in m and "rec/api:beforeEcho" in m for m in warned)
    caplog.clear()
    served2 = await serve(rec_yaml(pipes='      "rec/api:beforeEcho": add_a'))
    await served2.client.post("/_/rec/echo", json={})
    assert not [r for r in caplog.records if "took" in r.getMessage()]


async def test_gateway_start_and_shutdown_events(serve):
    served = await serve(rec_yaml(hooks="""
      "core:gatewayStart": hook_trace
      "core:shutdown": hook_trace
"""))
    await asyncio.sleep(0.1)
    rec = served.plugin("rec")
    assert "hook core:gatewayStart" in rec.seen
    await served.gateway.stop()
    assert "hook core:shutdown" in rec.seen
