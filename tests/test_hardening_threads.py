"""A blocking plugin cannot starve logins (issue 7, item 6).

Plain plugin functions run in the plugins' own bounded threads (`limits.plugin_threads`);
password hashing in threads of its own. When the plugin threads are all busy, a pipe or action
gets 503 `plugin.runtime.too_many_threads` and nobody else waits.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from sanic_gateway import errors
from sanic_gateway.plugin_threads import PluginThreads
from tests.security_helpers import closed_yaml, login

# as many blocked pipes as the loop's default executor has threads: before, they took all of
# them, and every login (Argon2 in the same pool) waited for them
BLOCKERS = min(32, (os.cpu_count() or 1) + 4)

BLOCKER = """
import threading

class Blocker:
    def init(self, config, context):
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def hold(self, request):
        self.started.release()
        self.release.wait(30)

    async def ping(self, request):
        return "pong"

    def plain(self, request):
        return "plain"
"""

PLUGIN = """
  blocker:
    module: hardening_blocker:Blocker
    pipes:
      "blocker/api:beforePing": hold
    controllers:
      api: {ping: ping, plain: plain}
    routes:
      - {verb: get, url: /ping, controller: api, action: ping}
      - {verb: get, url: /plain, controller: api, action: plain}
"""

async def _all_started(started: threading.Semaphore, count: int) -> None:
    """Wait on the loop (not in a thread: the default executor may be the one blocked)."""
    deadline = time.monotonic() + 10
    while count and time.monotonic() < deadline:
        if started.acquire(blocking=False):
            count -= 1
        else:
            await asyncio.sleep(0.01)
    assert count == 0


async def test_blocking_plain_pipes_get_503_and_never_delay_a_login(serve):
    yaml = closed_yaml(plugins=PLUGIN).replace(
        "  login_attempts_per_second: 100",
        f"  login_attempts_per_second: 100\n  plugin_threads: {BLOCKERS}\n  pipe_timeout: 60s")
    yaml = yaml.replace("anonymous: {controllers: {auth:",
                        'anonymous: {controllers: {"blocker/api": {actions: {"*": true}}, auth:')
    served = await serve(yaml, files={"hardening_blocker.py": BLOCKER})
    client, blocker = served.client, served.plugin("blocker")
    held = [asyncio.create_task(client.get("/_/blocker/ping")) for _ in range(BLOCKERS)]
    try:
        await _all_started(blocker.started, BLOCKERS)  # every plugin thread is blocked now
        started = time.monotonic()
        assert await login(client, "alice", "alice-password")
        assert time.monotonic() - started < 5  # before: until the blocked pipes ended
        r = await client.get("/_/blocker/ping")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["id"] == "plugin.runtime.too_many_threads"
        assert f"all {BLOCKERS} threads" in r.json()["error"]["message"]
        r = await client.get("/_/blocker/plain")  # a plain action too
        assert r.status_code == 503 and r.json()["error"]["id"] == "plugin.runtime.too_many_threads"
        assert not any(task.done() for task in held)
    finally:
        blocker.release.set()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200] * BLOCKERS
    # the threads are free again
    assert (await client.get("/_/blocker/ping")).status_code == 200
    assert (await client.get("/_/blocker/plain")).json()["result"] == "plain"


# -- units ---------------------------------------------------------------------------------------

async def test_a_full_pool_refuses_pipes_and_makes_hooks_wait():
    threads = PluginThreads(1)
    gate = threading.Event()
    first = asyncio.create_task(threads.run(gate.wait, 5))
    await asyncio.sleep(0.05)
    with pytest.raises(errors.ServiceUnavailableError):
        await threads.run(lambda: None)
    waiting = asyncio.create_task(threads.run_waiting(lambda: "hook ran"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gate.set()
    assert await first is True
    assert await waiting == "hook ran"
    assert threads.busy == 0
    threads.close()


async def test_a_thread_is_busy_until_its_function_ends_even_if_nobody_waits():
    threads = PluginThreads(1)
    gate = threading.Event()
    call = asyncio.create_task(threads.run(gate.wait, 5))
    await asyncio.sleep(0.05)
    call.cancel()  # a pipe timeout: the caller stops waiting, the thread runs on
    with pytest.raises(asyncio.CancelledError):
        await call
    assert threads.busy == 1
    with pytest.raises(errors.ServiceUnavailableError):
        await threads.run(lambda: None)
    gate.set()
    for _ in range(100):
        if not threads.busy:
            break
        await asyncio.sleep(0.01)
    assert await threads.run(lambda: 42) == 42
    threads.close()


async def test_errors_raised_in_a_plugin_thread_reach_the_caller():
    threads = PluginThreads(2)

    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await threads.run(boom)
    assert threads.busy == 0
    threads.close()


async def test_password_hashing_does_not_wait_for_the_default_executor():
    """Whatever blocks the loop's default executor (a plain strategy method, a library) leaves
    logins alone: Argon2 runs in threads of its own."""
    from sanic_gateway.security.passwords import hash_password, verify_password

    gate = threading.Event()
    loop = asyncio.get_running_loop()
    blocked = [loop.run_in_executor(None, gate.wait, 10) for _ in range(40)]
    try:
        started = time.monotonic()
        hashed = await asyncio.wait_for(hash_password("pw"), 5)
        assert await asyncio.wait_for(verify_password(hashed, "pw"), 5)
        assert time.monotonic() - started < 5
    finally:
        gate.set()
    await asyncio.gather(*blocked)
