"""Hooks cannot exhaust memory, and pipelining clients cannot hold the loop (issue 7, item 1).

The flood runs bench/pipeline_flood.py's attack against `sanic-gateway run` of the example:
200 connections pipelining `GET /_publicApi` 50 per write and never reading.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import sys
import weakref
from pathlib import Path

from sanic_gateway import hook_runner
from sanic_gateway.hook_runner import HookRunner
from sanic_gateway.loop_share import LoopShare

ROOT = Path(__file__).resolve().parent.parent


def _flood_module():
    spec = importlib.util.spec_from_file_location("pipeline_flood",
                                                  ROOT / "bench" / "pipeline_flood.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pipeline_flood", module)
    spec.loader.exec_module(module)
    return module


async def test_pipelined_flood_keeps_memory_bounded_and_a_fresh_client_served(tmp_path):
    flood = _flood_module()
    port = flood.free_port()
    proc = await asyncio.to_thread(flood.start_example, tmp_path, port)
    try:
        report = await flood.run_attack(f"http://127.0.0.1:{port}", proc.pid, duration=8,
                                        probe_timeout=3.0)
    finally:
        proc.kill()
        await asyncio.to_thread(proc.wait)
    start = report.rss[0][1]
    assert report.connections == 200, report.summary()
    # before: the hook queue grew without end (+400 MB to +1.4 GB in 10 s), the loop starved
    assert report.peak_rss - start < 150, report.summary()
    assert len(report.probes) >= 8, report.summary()  # one every half second or so
    # before: no answer at all (every probe timed out). Alone on the machine the worst probe
    # takes 0.3-0.65 s; the bounds leave room for the other tests sharing its two cores
    latencies = sorted(lat for _, lat in report.probes)
    assert latencies[len(latencies) // 2] < 1.0, report.summary()
    assert latencies[-1] < 2.0, report.summary()


# -- the hook buffer -----------------------------------------------------------------------------

async def test_the_hook_buffer_is_bounded_and_drops_are_counted_and_logged_at_a_limited_rate(
        monkeypatch, caplog):
    monkeypatch.setattr(hook_runner, "REPORT_EVERY", 0.2)
    runner = HookRunner(max_pending=3)
    release = asyncio.Event()
    ran: list[int] = []

    async def slow(n: int) -> None:
        await release.wait()
        ran.append(n)

    with caplog.at_level(logging.WARNING, "sanic_gateway.hooks"):
        for n in range(10):
            runner.submit(slow, n)
        await asyncio.sleep(0.05)
        assert runner.pending == 3 and runner.dropped == 7
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "1 hook call(s) dropped" in warnings[0]
        assert "limits.hooks_buffer_size: 3" in warnings[0]
        await asyncio.sleep(0.3)  # the other six are told in the next report, at once
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2 and "6 hook call(s) dropped (7 since start)" in warnings[1]
        release.set()
        assert await runner.drain(1)
        assert sorted(ran) == [0, 1, 2]
        runner.submit(slow, 10)  # room again
        assert await runner.drain(1)
        assert ran[-1] == 10
        await asyncio.sleep(0.5)
        assert len(caplog.records) == 2  # nothing dropped since: nothing more said
    runner.close()


async def test_a_hook_call_keeps_its_payload_only_until_it_has_run():
    runner = HookRunner()

    class Payload:
        pass

    async def hook(payload: Payload) -> None:
        await asyncio.sleep(0)

    payload = Payload()
    alive = weakref.ref(payload)
    runner.submit(hook, payload)
    del payload
    assert await runner.drain(1)
    await asyncio.sleep(0)
    gc.collect()
    assert alive() is None  # an idle worker keeps nothing of its last call
    runner.close()


async def test_hook_workers_let_requests_run_between_batches():
    runner = HookRunner()
    done = 0

    async def hook() -> None:
        nonlocal done
        done += 1

    for _ in range(hook_runner.BATCH * 3):
        runner.submit(hook)
    seen: list[int] = []
    for _ in range(6):
        await asyncio.sleep(0)
        seen.append(done)
    assert seen[0] < hook_runner.BATCH * 3  # not all in one turn of the loop
    assert await runner.drain(1) and done == hook_runner.BATCH * 3
    runner.close()


async def test_loop_share_asks_to_yield_beyond_its_limit_within_one_loop_turn():
    share = LoopShare(limit=3)
    assert [share.due() for _ in range(5)] == [False, False, False, True, True]
    await asyncio.sleep(0)
    assert share.due() is False  # a new turn of the loop


HOOKED = """
limits:
  hooks_buffer_size: 5
plugins:
  slow:
    module: hardening_slow_hooks:Slow
    hooks:
      "request:onSuccess": record
    controllers:
      api: {ping: ping}
    routes:
      - {verb: get, url: /ping, controller: api, action: ping}
"""

SLOW = """
import asyncio

class Slow:
    def init(self, config, context):
        self.release = asyncio.Event()
        self.seen = []

    async def record(self, request, event):
        await self.release.wait()
        self.seen.append(request.id)

    async def ping(self, request):
        return "pong"
"""


async def test_over_http_slow_hooks_never_hold_more_than_the_buffer(serve, caplog):
    size = 5
    served = await serve(HOOKED, files={"hardening_slow_hooks.py": SLOW})
    client = served.client
    with caplog.at_level(logging.WARNING, "sanic_gateway.hooks"):
        answers = await asyncio.gather(*(client.get("/_/slow/ping") for _ in range(20)))
        assert [r.status_code for r in answers] == [200] * 20  # every request is served
        runner = served.gateway.bus._hooks
        assert runner.pending == size and runner.dropped == 20 - size
        assert any("hooks_buffer_size: 5" in r.getMessage() for r in caplog.records)
    served.plugin("slow").release.set()
    assert await runner.drain(2)
    assert len(served.plugin("slow").seen) == size
