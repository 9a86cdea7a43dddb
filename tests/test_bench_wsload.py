"""bench/wsload.c, the C WebSocket load client of the realtime benchmarks: it subscribes, publishes
and counts what a real gateway delivers, in both modes, and says why when the gateway refuses."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_YAML = """
    storage: "sqlite:///:memory:"
    server:
      protocols:
        websocket: {send_queue: 10000, max_in_flight: 100}
"""

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed")


@pytest.fixture(scope="module")
def wsload() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wsload", ROOT / "bench" / "wsload.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("wsload", module)
    spec.loader.exec_module(module)
    module.build()
    return module


def port_of(gateway) -> str:
    return gateway.url.rsplit(":", 1)[1]


def test_rate_mode_delivers_every_notification_with_latencies(start_gateway, wsload) -> None:
    gateway = start_gateway(GATEWAY_YAML)
    result = wsload.run(["--ports", port_of(gateway), "--subscribers", "50", "--rate", "500",
                         "--duration", "1", "--settle", "0.1"], timeout=60)
    assert result["mode"] == "rate"
    assert result["sent"] == 10  # one publish every 50/500 s for 1 s
    assert result["delivered"] == result["sent"] * 50 == sum(result["delivered_by_port"])
    assert result["lost"] == 0
    latency = result["latency_ms"]
    assert set(latency) == {"p50", "p90", "p99", "p999", "max"}
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 5000
    assert len(result["latency_p99_by_port_ms"]) == 1
    assert result["samples"] == result["delivered"]
    assert result["cpu_s"] > 0


def test_saturation_mode_counts_until_silence(start_gateway, wsload) -> None:
    gateway = start_gateway(GATEWAY_YAML)
    port = port_of(gateway)
    result = wsload.run(["--ports", f"{port},{port}", "--subscribers", "50", "--in-flight", "4",
                         "--warmup", "0.2", "--duration", "0.5", "--settle", "0.1",
                         "--batch-us", "1000"], timeout=60)
    assert result["mode"] == "saturation"
    assert result["latency_ms"] is None and result["latency_p99_by_port_ms"] is None
    assert result["sent"] > 0 and result["publish_answers"] == result["sent"]
    assert result["lost"] == 0  # the warm-up's and the drain's notifications arrived too
    assert 0 < result["delivered"] <= result["sent"] * 50
    by_port = result["delivered_by_port"]
    assert len(by_port) == 2 and sum(by_port) == result["delivered"]
    # 25 subscribers on each: the same notifications, but the counting starts amid deliveries
    # (and --batch-us lets answered publishes get ahead of the frames read): a loose bound
    assert min(by_port) > 0 and abs(by_port[0] - by_port[1]) <= max(100, result["delivered"] / 4)
    assert result["rate"] == pytest.approx(result["delivered"] / result["elapsed"], rel=1e-3)


def test_refused_subscription_is_an_error_with_the_answer(start_gateway, wsload) -> None:
    gateway = start_gateway(GATEWAY_YAML)
    bad = '{"controller":"realtime","action":"subscribe","index":"bench"}'
    with pytest.raises(RuntimeError, match=r"wsload failed \(1\).*error answer.*\"status\":400"):
        wsload.run(["--ports", port_of(gateway), "--subscribers", "2", "--rate", "10",
                    "--subscribe", bad], timeout=60)


def test_nothing_listening_is_an_error(wsload) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(RuntimeError, match="connect: Connection refused"):
            wsload.run(["--ports", str(port), "--subscribers", "3", "--rate", "10"])
    with pytest.raises(RuntimeError, match="give one of --rate R or --in-flight K"):
        wsload.run(["--ports", "1"])
