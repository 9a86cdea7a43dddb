"""Login latency: what the project's Argon2id parameters cost, alone and through the gateway.

(a) In process: one Argon2id hash and one verify with the project's parameters
    (sanic_gateway.security.passwords.HASHER), against, in the same run, argon2-cffi's library
    defaults (RFC 9106 low-memory: 3 passes, 64 MiB, 4 lanes) and a cheaper setting (1 pass,
    8 MiB, 1 lane). The runs interleave the three settings; median and p95 of each, and the
    ratios to the project's setting.
(b) Through a real gateway subprocess (one worker, temp dir and SQLite storage, one user with
    local credentials, `limits.login_attempts_per_second: 0` so the limiter stays out of the
    way): sequential `POST /_login/local` with httpx, median and p95, against `GET /_now` on the
    same server as the baseline (batches alternate now/login for --rounds rounds); then the
    throughput of concurrent logins with `wrk` (a Lua script POSTs the JSON body) and, as the
    baseline, of `GET /_now` with the same wrk command.

    python bench/login.py [--runs 50] [--requests 50] [--rounds 2] [--duration 5] \
        [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from argon2 import PasswordHasher, Type

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common
from common import PASSWORD, USERNAME

sys.path.insert(0, str(common.ROOT))  # the project, even when not installed

from sanic_gateway.security.passwords import HASHER

GATEWAY_YAML = textwrap.dedent(f'''
    storage: sqlite:///./data/gateway.db
    limits:
      login_attempts_per_second: 0
    security:
      roles:
        anonymous:
          controllers:
            auth: {{actions: {{login: true}}}}
            server: {{actions: {{now: true}}}}
        bencher:
          controllers:
            auth: {{actions: {{"*": true}}}}
      profiles:
        benchers: {{policies: [{{roleId: bencher}}]}}
      users:
        {USERNAME}:
          profileIds: [benchers]
          credentials:
            local: {{username: {USERNAME}, password: "{PASSWORD}"}}
''')

LOGIN_LUA = textwrap.dedent(f'''
    wrk.method = "POST"
    wrk.body = '{{"username": "{USERNAME}", "password": "{PASSWORD}"}}'
    wrk.headers["Content-Type"] = "application/json"
''')

SETTINGS: dict[str, PasswordHasher] = {
    "project": HASHER,
    "argon2-cffi defaults": PasswordHasher(),
    "cheap (t=1, 8 MiB, p=1)": PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1,
                                              hash_len=32, salt_len=16, type=Type.ID),
}


# -- statistics ------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- (a) in process --------------------------------------------------------------------------

def bench_argon2(runs: int) -> dict[str, dict[str, list[float]]]:
    times = {name: {"hash": [], "verify": []} for name in SETTINGS}
    hashes = {name: hasher.hash(PASSWORD) for name, hasher in SETTINGS.items()}  # warm-up
    for _ in range(runs):
        for name, hasher in SETTINGS.items():
            times[name]["hash"].append(timed(lambda h=hasher: h.hash(PASSWORD)))
            times[name]["verify"].append(
                timed(lambda h=hasher, n=name: h.verify(hashes[n], PASSWORD)))
    return times


# -- (b) through the gateway -----------------------------------------------------------------

def wrk(url: str, duration: int, connections: int,
        script: Path | None = None) -> tuple[float, float, float]:
    """Requests/s, latency p50 and p99 in seconds."""
    options = ["--latency", "--timeout", "10s"]
    if script is not None:
        options += ["-s", str(script)]
    out = common.wrk(url, duration, connections, *options)
    return common.wrk_rate(out), common.wrk_latency(out, "50%"), common.wrk_latency(out, "99%")


def bench_gateway(args: argparse.Namespace) -> tuple[dict[str, list[float]],
                                                     dict[str, tuple[float, float, float]]]:
    latencies: dict[str, list[float]] = {"now": [], "login": []}
    rates: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gateway.yaml").write_text(GATEWAY_YAML)
        (work / "login.lua").write_text(LOGIN_LUA)
        port = common.free_port()
        base = f"http://127.0.0.1:{port}"
        proc = common.serve(common.gateway_cmd(port, "--config", "gateway.yaml"), work, port,
                            work / "gateway.log", url=f"{base}/_now")
        try:
            body = {"username": USERNAME, "password": PASSWORD}
            with httpx.Client(base_url=base, timeout=30) as client:
                def now() -> None:
                    client.get("/_now").raise_for_status()

                def login() -> None:
                    response = client.post("/_login/local", json=body)
                    response.raise_for_status()
                    assert response.json()["result"]["jwt"]

                for fn in (now, login) * 3:  # warm-up: connection, caches, executor threads
                    fn()
                for _ in range(args.rounds):
                    for name, fn in (("now", now), ("login", login)):
                        latencies[name] += [timed(fn) for _ in range(args.requests)]
            # concurrent: the same wrk command for both, login last (it heats the CPU most)
            wrk(f"{base}/_now", 1, args.connections)
            rates["now"] = wrk(f"{base}/_now", args.duration, args.connections)
            wrk(f"{base}/_login/local", 1, args.connections, work / "login.lua")
            rates["login"] = wrk(f"{base}/_login/local", args.duration, args.connections,
                                 work / "login.lua")
        finally:
            common.stop(proc)
    return latencies, rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="in-process hashes per setting")
    parser.add_argument("--requests", type=int, default=50,
                        help="sequential requests per batch and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=8,
                        help="concurrent wrk connections")
    args = parser.parse_args()
    if not common.require_wrk():
        return 2

    print(f"CPUs: {os.cpu_count()}   project Argon2id: time_cost={HASHER.time_cost}, "
          f"memory={HASHER.memory_cost // 1024} MiB, parallelism={HASHER.parallelism}")
    print(f"\n(a) Argon2id in process, {args.runs} runs each (ms)")
    times = bench_argon2(args.runs)
    ref = median(times["project"]["verify"])
    print(f"    {'setting':30s} {'params':18s} {'hash p50':>9s} {'hash p95':>9s} "
          f"{'verify p50':>10s} {'verify p95':>10s} {'verify/project':>14s}")
    for name, hasher in SETTINGS.items():
        t = times[name]
        params = f"t={hasher.time_cost} m={hasher.memory_cost // 1024}M p={hasher.parallelism}"
        print(f"    {name:30s} {params:18s} {ms(median(t['hash'])):>9s} {ms(p95(t['hash'])):>9s} "
              f"{ms(median(t['verify'])):>10s} {ms(p95(t['verify'])):>10s} "
              f"{median(t['verify']) / ref:14.2f}")

    latencies, rates = bench_gateway(args)
    n = len(latencies["now"])
    print(f"\n(b) through the gateway, sequential httpx, {n} requests each (ms)")
    print(f"    {'request':30s} {'p50':>9s} {'p95':>9s}")
    for name, label in (("now", "GET /_now (baseline)"), ("login", "POST /_login/local")):
        print(f"    {label:30s} {ms(median(latencies[name])):>9s} "
              f"{ms(p95(latencies[name])):>9s}")
    overhead = median(latencies["login"]) - median(latencies["now"])
    print(f"    login - now (p50): {overhead * 1000:.2f} ms; "
          f"login / in-process verify (p50): {median(latencies['login']) / ref:.2f}")
    print(f"\n    concurrent, wrk -t1 -c{args.connections} -d{args.duration}s")
    print(f"    {'request':30s} {'req/s':>9s} {'p50 ms':>9s} {'p99 ms':>9s}")
    for name, label in (("now", "GET /_now (baseline)"), ("login", "POST /_login/local")):
        rate, p50, p99 = rates[name]
        print(f"    {label:30s} {rate:9.1f} {ms(p50):>9s} {ms(p99):>9s}")
    print(f"    login/now throughput ratio = {rates['login'][0] / rates['now'][0]:.4f}; "
          f"login req/s x project verify p50 = {rates['login'][0] * ref:.2f} "
          f"(cores kept busy hashing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
